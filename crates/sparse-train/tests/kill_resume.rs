//! `kill -9` at random points, resuming after each: the checkpoint always loads, the
//! metrics hold exactly one record per completed epoch, and the final run equals an
//! uninterrupted one bit for bit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{bin, metric_lines, tiny_run, TINY};
use safetensors::tensor::SafeTensors;
use sparse_train::checkpoint::Checkpoint;
use sparse_train::report::{read_history, EpochMetrics};

const EPOCHS: u64 = 200;
const KILLS: usize = 20;

/// A record without its timings (which differ between any two runs).
fn untimed(mut m: EpochMetrics) -> EpochMetrics {
    m.epoch_seconds = 0.0;
    m.images_per_sec = 0.0;
    m
}

/// Every tensor of a checkpoint, by name.
fn tensors(p: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// What must hold after any kill: a checkpoint that loads (checksum and contents), and a
/// metrics file that lags it by at most the one record the next resume restores.
fn check_after_kill(dir: &Path) -> u64 {
    let history = read_history(dir).expect("metrics.jsonl must stay readable");
    let steps: Vec<u64> = history.iter().map(|m| m.step).collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "records repeat: {steps:?}"
    );
    let ck = dir.join("last.safetensors");
    if !ck.exists() {
        assert!(
            history.is_empty(),
            "records without a checkpoint: {steps:?}"
        );
        return 0;
    }
    let ck = Checkpoint::read(&ck).expect("the checkpoint must always load");
    let n = history.len() as u64;
    assert!(
        n == ck.epoch() || n + 1 == ck.epoch(),
        "{n} records for a checkpoint at epoch {}",
        ck.epoch()
    );
    ck.epoch()
}

#[test]
fn kill_9_at_random_points_never_corrupts_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, killed) = (tmp.path().join("straight"), tmp.path().join("killed"));
    let (ok, err) = tiny_run(&straight, EPOCHS as u32, &[]);
    assert!(ok, "{err}");

    let epochs = EPOCHS.to_string();
    let k = killed.to_str().unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut kills, mut progress) = (0, Vec::new());
    loop {
        let mut cmd = bin();
        if killed.join("last.safetensors").exists() {
            cmd.args(["train", "--resume", k]);
        } else {
            cmd.args(["train", "--epochs", &epochs, "--out", k, "--overwrite"])
                .args(TINY);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if kills == KILLS {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 900));
        if child.try_wait().unwrap().is_some() {
            // A fast machine may finish before every kill; half of them still test it.
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                kills >= KILLS / 2,
                "the run ended after {kills} kills (make it longer): {stderr}"
            );
            assert!(out.status.success(), "{stderr}");
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        progress.push(check_after_kill(&killed));
    }
    eprintln!("{kills} kills; checkpointed epochs after each: {progress:?}");

    let a: Vec<EpochMetrics> = read_history(&straight).unwrap();
    let b: Vec<EpochMetrics> = read_history(&killed).unwrap();
    assert_eq!(
        metric_lines(&killed).len() as u64,
        EPOCHS,
        "one line per epoch"
    );
    assert_eq!(
        a.into_iter().map(untimed).collect::<Vec<_>>(),
        b.into_iter().map(untimed).collect::<Vec<_>>(),
        "the killed run's records differ from the uninterrupted run's"
    );
    assert!(
        tensors(&straight.join("last.safetensors")) == tensors(&killed.join("last.safetensors")),
        "final weights, masks or state differ from the uninterrupted run's"
    );
    let left: Vec<String> = common::files(&killed)
        .into_iter()
        .filter(|f| f.starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
