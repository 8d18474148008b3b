//! `sparse-train selftest --device D`: the op suite of `sparse_kernels::selftest` on the
//! device against the CPU backend, then short training runs on both (MLP and convnet,
//! dense and RigL) whose per-step losses must agree. One line per check; an error when any
//! fails. This is how a user checks a new GPU.

use anyhow::{bail, Result};
use sparse_kernels::{selftest, Device, DeviceRequest};

use crate::config::TrainConfig;
use crate::data::DataKind;
use crate::trainer::Trainer;

/// Relative tolerance of the per-step training losses.
pub const LOSS_TOLERANCE: f64 = 1e-4;

/// Per-step losses of a short synthetic run of `model` / `method` (90% sparse, ΔT scaled
/// to the run; `method+agc` adds AGC) on `device`, and the number of mask updates it made.
pub fn step_losses(
    model: &str,
    method: &str,
    device: &str,
    steps: u64,
) -> Result<(Vec<f64>, usize)> {
    let (method, agc) = match method.strip_suffix("+agc") {
        Some(m) => (m, true),
        None => (method, false),
    };
    let cfg = TrainConfig {
        model: model.into(),
        width_mult: 0.25,
        data: DataKind::Synthetic,
        method: method.into(),
        agc,
        sparsity: 0.9,
        steps: Some(steps),
        batch_size: 16,
        train_subset: Some(160),
        eval_subset: Some(16),
        threads: Some(1),
        device: device.into(),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(cfg)?;
    let l = t.step_losses(steps as usize)?;
    Ok((l, t.mask_updates))
}

/// The largest relative difference between two loss curves.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
        .fold(
            0.0,
            |m: f64, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
        )
}

/// Runs the checks on `device` (`cuda`, `cuda-emulated`, ...) and prints the table.
pub fn run(device: &str) -> Result<()> {
    let req: DeviceRequest = device.parse()?;
    let (dev, _) = req.resolve()?;
    if dev == Device::Cpu {
        bail!("selftest compares a CUDA device with the CPU: pass --device cuda or cuda-emulated");
    }
    println!("device: {:?}, {}", dev, dev.describe());
    println!(
        "{:<48} {:>12} {:>10}  result",
        "op", "max rel err", "tolerance"
    );
    let mut failed = 0;
    for c in selftest::run(dev) {
        failed += usize::from(!c.passed);
        let verdict = if c.passed { "pass" } else { "FAIL" };
        println!(
            "{:<48} {:>12.3e} {:>10.0e}  {verdict}{}",
            c.op,
            c.max_rel_err,
            c.tolerance,
            c.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    for (model, method) in [
        ("mlp", "dense"),
        ("mlp", "rigl"),
        ("convnet", "dense"),
        ("convnet", "rigl"),
    ] {
        let sparsity = if method == "dense" { "" } else { " 90%" };
        let name = format!("train {model} x0.25 {method}{sparsity}, 20 steps (losses)");
        let res = step_losses(model, method, "cpu", 20).and_then(|(a, _)| {
            step_losses(model, method, device, 20).map(|(b, _)| max_rel_diff(&a, &b))
        });
        let (err, verdict, note) = match res {
            Ok(e) if e <= LOSS_TOLERANCE => (e, "pass", String::new()),
            Ok(e) => (e, "FAIL", String::new()),
            Err(e) => (f64::INFINITY, "FAIL", format!(" ({e:#})")),
        };
        failed += usize::from(verdict != "pass");
        println!("{name:<48} {err:>12.3e} {LOSS_TOLERANCE:>10.0e}  {verdict}{note}");
    }
    if failed > 0 {
        bail!("{failed} check(s) failed on {dev:?}");
    }
    println!("all checks passed on {dev:?}");
    Ok(())
}
