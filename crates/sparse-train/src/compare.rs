//! `sparse-train compare RUN...`: a table of runs and plots comparing them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::TrainConfig;
use crate::plots::{curves, density, per_epoch, Curve};
use crate::report::{read_history, EpochMetrics};

/// One run's row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The run's label (its directory name).
    pub label: String,
    /// Method (with `+agc`).
    pub method: String,
    /// Requested sparsity (0 for dense).
    pub target: f64,
    /// Global sparsity of the last epoch.
    pub reached: f64,
    /// Test accuracy of the last epoch.
    pub final_accuracy: f64,
    /// Best test accuracy over epochs.
    pub best_accuracy: f64,
    /// Mean training throughput over epochs.
    pub images_per_sec: f64,
    /// Wall time of all epochs (training and evaluation), seconds.
    pub wall_seconds: f64,
    /// Mask updates over the run.
    pub mask_updates: usize,
    /// Epochs recorded.
    pub epochs: usize,
    /// The records.
    pub history: Vec<EpochMetrics>,
}

/// Reads a run directory into a [`Row`].
pub fn read_run(dir: &Path) -> Result<Row> {
    let cfg = TrainConfig::from_file(&dir.join("config.toml"))
        .with_context(|| format!("{} is not a run directory", dir.display()))?;
    let history = read_history(dir)?;
    let Some(last) = history.last() else {
        bail!("{}: no finished epoch in metrics.jsonl", dir.display());
    };
    let label = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let method = if cfg.agc {
        format!("{}+agc", cfg.method)
    } else {
        cfg.method.clone()
    };
    Ok(Row {
        label,
        target: if cfg.method == "dense" {
            0.0
        } else {
            cfg.sparsity
        },
        method,
        reached: 1.0 - last.global_density,
        final_accuracy: last.test_accuracy,
        best_accuracy: history.iter().map(|m| m.test_accuracy).fold(0.0, f64::max),
        images_per_sec: history.iter().map(|m| m.images_per_sec).sum::<f64>()
            / history.len() as f64,
        wall_seconds: history.iter().map(|m| m.epoch_seconds).sum(),
        mask_updates: history.iter().map(|m| m.updates).sum(),
        epochs: history.len(),
        history,
    })
}

/// The table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| run | method | target sparsity | reached | final acc (%) | best acc (%) | img/s | wall (s) | mask updates | epochs |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t += &format!(
            "| {} | {} | {:.3} | {:.4} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {} |\n",
            r.label,
            r.method,
            r.target,
            r.reached,
            100.0 * r.final_accuracy,
            100.0 * r.best_accuracy,
            r.images_per_sec,
            r.wall_seconds,
            r.mask_updates,
            r.epochs
        );
    }
    t
}

/// Compares `runs`: writes `compare.md` (the table), `compare_curves.svg` (test accuracy
/// and loss per epoch) and `compare_density.svg` (final per-layer density) into `out`;
/// returns the table.
pub fn compare(runs: &[PathBuf], out: &Path) -> Result<String> {
    if runs.is_empty() {
        bail!("compare needs at least one run directory");
    }
    let rows = runs
        .iter()
        .map(|r| read_run(r))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let curve = |f: fn(&EpochMetrics) -> f64| -> Vec<Curve> {
        rows.iter()
            .map(|r| Curve {
                label: r.label.clone(),
                points: per_epoch(&r.history, f),
            })
            .collect()
    };
    curves(
        &out.join("compare_curves.svg"),
        "test",
        &curve(|m| 100.0 * m.test_accuracy),
        &curve(|m| m.test_loss),
    )?;
    let layers: Vec<(String, _)> = rows
        .iter()
        .map(|r| {
            (
                r.label.clone(),
                r.history
                    .last()
                    .map(|m| m.layers.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    density(&out.join("compare_density.svg"), &layers)?;
    let t = table(&rows);
    crate::fs::atomic_write(&out.join("compare.md"), t.as_bytes())?;
    Ok(t)
}
