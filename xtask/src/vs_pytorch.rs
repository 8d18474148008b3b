//! `cargo xtask bench --vs-pytorch`: our training step and inference against PyTorch's on
//! the same models, batch and thread count, interleaved in rounds on one machine, with the
//! medians and same-run ratios in a table.
//!
//! Per round and model, in order: PyTorch train, ours dense, ours RigL (ERK, the sparsity
//! given), then the same three for inference. Each run reports per-step times after
//! warm-up; a round keeps their median, and the table shows the median over rounds. RigL's
//! steps are split into ordinary steps and mask-update steps (dense gradients plus the
//! update); "amortised" is `((ΔT-1)·ordinary + update) / ΔT` at the paper's ΔT = 100.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Options of the comparison.
pub struct Opts {
    pub python: Option<PathBuf>,
    pub models: Vec<String>,
    pub threads: usize,
    pub rounds: usize,
    pub steps: usize,
    pub sparsity: f64,
}

const PAPER_DT: f64 = 100.0;

fn find_python(given: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    let cands: Vec<PathBuf> = given
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os("SPARSE_TORCH_PYTHON").map(PathBuf::from))
        .chain(std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python")))
        .chain([
            super::root().join(".venv-torch/bin/python"),
            PathBuf::from("python3"),
        ])
        .collect();
    for c in cands {
        let ok = Command::new(&c)
            .args(["-c", "import torch"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    bail!(
        "no Python with PyTorch found (tried {}). Create one with\n  python3 -m venv .venv-torch && \
         .venv-torch/bin/pip install torch\nthen rerun (it is found in .venv-torch), or pass \
         --python PATH / set SPARSE_TORCH_PYTHON",
        tried.join(", ")
    )
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// (all step times, update flags) from a run's JSON line.
fn parse(out: &[u8], what: &str) -> Result<(Vec<f64>, Vec<bool>)> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("{what}: no JSON in {text:?}"))?;
    let ms = v["step_ms"]
        .as_array()
        .with_context(|| format!("{what}: no step_ms"))?
        .iter()
        .filter_map(|x| x.as_f64())
        .collect();
    let up = v["update"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_bool().unwrap_or(false)).collect())
        .unwrap_or_default();
    Ok((ms, up))
}

fn run(cmd: &mut Command, what: &str) -> Result<(Vec<f64>, Vec<bool>)> {
    let o = cmd.output().with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    parse(&o.stdout, what)
}

#[derive(Default, Clone)]
struct Rounds {
    torch_train: Vec<f64>,
    dense_train: Vec<f64>,
    rigl_plain: Vec<f64>,
    rigl_update: Vec<f64>,
    torch_infer: Vec<f64>,
    dense_infer: Vec<f64>,
    rigl_infer: Vec<f64>,
}

pub fn vs_pytorch(o: &Opts) -> Result<()> {
    let py = find_python(o.python.as_deref())?;
    super::cargo(&["build", "--release", "-p", "sparse-train"])?;
    let bin = super::root().join("target/release/sparse-train");
    let script = super::root().join("benches/pytorch/step.py");
    let (steps, threads) = (o.steps.to_string(), o.threads.to_string());
    let sparsity = o.sparsity.to_string();
    let mut res = vec![Rounds::default(); o.models.len()];
    for round in 0..o.rounds {
        for (mi, m) in o.models.iter().enumerate() {
            eprintln!("round {} / {}: {m}", round + 1, o.rounds);
            let r = &mut res[mi];
            for infer in [false, true] {
                let mode = if infer { "infer" } else { "train" };
                let mut t = run(
                    Command::new(&py).arg(&script).args([
                        "--model",
                        m,
                        "--mode",
                        mode,
                        "--threads",
                        &threads,
                        "--steps",
                        &steps,
                    ]),
                    &format!("PyTorch {m} {mode}"),
                )?;
                let ours = |method: &str| {
                    let mut c = Command::new(&bin);
                    c.args(["bench-step", "--model", m, "--method", method, "--threads"])
                        .args([&threads, "--steps", &steps, "--sparsity", &sparsity]);
                    if infer {
                        c.arg("--infer");
                    }
                    run(&mut c, &format!("sparse-train {m} {method} {mode}"))
                };
                let mut d = ours("dense")?;
                let (rt, ru) = ours("rigl")?;
                if infer {
                    r.torch_infer.push(median(&mut t.0));
                    r.dense_infer.push(median(&mut d.0));
                    r.rigl_infer.push(median(&mut rt.clone()));
                } else {
                    r.torch_train.push(median(&mut t.0));
                    r.dense_train.push(median(&mut d.0));
                    let mut plain: Vec<f64> =
                        rt.iter().zip(&ru).filter(|p| !p.1).map(|p| *p.0).collect();
                    let mut upd: Vec<f64> =
                        rt.iter().zip(&ru).filter(|p| *p.1).map(|p| *p.0).collect();
                    r.rigl_plain.push(median(&mut plain));
                    r.rigl_update.push(median(&mut upd));
                }
            }
        }
    }
    println!(
        "\nms per step, batch 128, {} threads, median of {} rounds × {} steps; ratio = PyTorch ms / ours (> 1: faster than PyTorch)\n",
        o.threads, o.rounds, o.steps
    );
    println!("| model | PyTorch train | ours dense | ratio | RigL {:.0}% step | update step | amortised ΔT 100 | ratio | PyTorch infer | ours dense | ratio | RigL infer | ratio |", 100.0 * o.sparsity);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut missing_update = false;
    for (m, r) in o.models.iter().zip(&mut res) {
        let tt = median(&mut r.torch_train);
        let dt = median(&mut r.dense_train);
        let rp = median(&mut r.rigl_plain);
        let ru = median(&mut r.rigl_update);
        let am = if ru.is_nan() {
            rp
        } else {
            ((PAPER_DT - 1.0) * rp + ru) / PAPER_DT
        };
        let ti = median(&mut r.torch_infer);
        let di = median(&mut r.dense_infer);
        let ri = median(&mut r.rigl_infer);
        // No update step in the timed window (too few --steps): say so instead of "NaN".
        let ru = if ru.is_nan() {
            missing_update = true;
            "—".to_string()
        } else {
            format!("{ru:.1}")
        };
        println!(
            "| {m} | {tt:.1} | {dt:.1} | {:.2}x | {rp:.1} | {ru} | {am:.1} | {:.2}x | {ti:.1} | {di:.1} | {:.2}x | {ri:.1} | {:.2}x |",
            tt / dt,
            tt / am,
            ti / di,
            ti / ri
        );
    }
    if missing_update {
        println!(
            "\n—: no mask-update step fell in the timed window, so \"amortised\" is the ordinary step alone; pass --steps 4 or more to time one."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_parsing() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let (ms, up) = parse(
            b"noise\n{\"step_ms\":[1.5,2.0],\"update\":[false,true]}\n",
            "t",
        )
        .unwrap();
        assert_eq!(ms, vec![1.5, 2.0]);
        assert_eq!(up, vec![false, true]);
        assert!(parse(b"oops", "t").is_err());
    }
}
