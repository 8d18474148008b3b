//! Helpers shared by the CLI-level tests: a tiny run's flags and the binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A run of a few seconds at most: convnet x0.25 on 256 built-in images, batches of 32
/// (8 steps per epoch).
pub const TINY: &[&str] = &[
    "--width-mult",
    "0.25",
    "--train-subset",
    "256",
    "--eval-subset",
    "64",
    "--batch-size",
    "32",
    "--update-interval",
    "3",
    "--threads",
    "1",
];

/// The `sparse-train` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparse-train"))
}

/// Runs the CLI; returns (success, stderr).
pub fn cli(args: &[&str]) -> (bool, String) {
    let out: Output = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `train TINY --epochs N --out DIR` plus `extra`.
pub fn tiny_run(dir: &Path, epochs: u32, extra: &[&str]) -> (bool, String) {
    let epochs = epochs.to_string();
    let mut args = vec!["train", "--epochs", &epochs, "--out", dir.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    cli(&args)
}

/// The lines of `DIR/metrics.jsonl`.
pub fn metric_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}
