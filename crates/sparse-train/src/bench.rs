//! `sparse-train bench-step`: times training steps or inference passes of one model on the
//! built-in synthetic CIFAR-shaped data and prints JSON, for `cargo xtask bench
//! --vs-pytorch` (which runs the same models in PyTorch, interleaved).

use anyhow::Result;
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::DataKind;
use crate::trainer::Trainer;

/// What to time (also the `bench-step` command's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchStep {
    /// Model.
    #[arg(long, default_value = "resnet20")]
    pub model: String,
    /// Method (`dense`, `rigl`, ...).
    #[arg(long, default_value = "dense")]
    pub method: String,
    /// Target sparsity.
    #[arg(long, default_value_t = 0.9)]
    pub sparsity: f64,
    /// Batch size.
    #[arg(long = "batch-size", default_value_t = 128)]
    pub batch: usize,
    /// Rayon threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed steps (after `warmup`).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Mask-update interval (so a short window contains update steps).
    #[arg(long, default_value_t = 5)]
    pub update_interval: u64,
    /// Time inference (evaluation-mode forward) instead of training steps.
    #[arg(long)]
    pub infer: bool,
    /// Device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The timings, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Per timed step.
    pub step_ms: Vec<f64>,
    /// Whether each timed step updated masks.
    pub update: Vec<bool>,
}

/// Runs the benchmark.
pub fn run(b: &BenchStep) -> Result<BenchResult> {
    let cfg = TrainConfig {
        model: b.model.clone(),
        data: DataKind::Synthetic,
        method: b.method.clone(),
        sparsity: b.sparsity,
        batch_size: b.batch,
        // A long nominal run, so that the schedule is mid-run while the window is timed.
        steps: Some(100_000),
        train_subset: Some(b.batch * (b.warmup + b.steps + 1)),
        eval_subset: Some(b.batch),
        update_interval: (b.method != "dense").then_some(b.update_interval),
        threads: Some(b.threads),
        device: b.device.clone(),
        ..TrainConfig::default()
    };
    Trainer::init_threads(Some(b.threads));
    let mut t = Trainer::new(cfg)?;
    if b.infer {
        t.timed_inference(b.warmup)?;
        let ms = t
            .timed_inference(b.steps)?
            .iter()
            .map(|s| 1e3 * s)
            .collect();
        return Ok(BenchResult {
            step_ms: ms,
            update: vec![false; b.steps],
        });
    }
    t.timed_steps(b.warmup)?;
    let v = t.timed_steps(b.steps)?;
    Ok(BenchResult {
        step_ms: v.iter().map(|s| 1e3 * s.0).collect(),
        update: v.iter().map(|s| s.1).collect(),
    })
}
