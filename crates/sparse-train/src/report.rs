//! Run outputs: `metrics.jsonl` (one line per epoch), `summary.json`, and SVG plots of the
//! accuracy curves and per-layer density.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fs::atomic_write;

/// One sparsifiable layer's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMetrics {
    /// Parameter name.
    pub name: String,
    /// Weights.
    pub numel: usize,
    /// Active weights.
    pub nnz: usize,
    /// `nnz / numel`.
    pub density: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epochs completed.
    pub epoch: u64,
    /// Steps completed.
    pub step: u64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy (fraction) over the epoch.
    pub train_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy (fraction).
    pub test_accuracy: f64,
    /// Validation accuracy when a split is held out.
    pub val_accuracy: Option<f64>,
    /// Global density of the sparsifiable layers.
    pub global_density: f64,
    /// Per layer.
    pub layers: Vec<LayerMetrics>,
    /// Positions dropped / pruned this epoch.
    pub dropped: usize,
    /// Positions grown this epoch.
    pub grown: usize,
    /// Fraction of sparsifiable weights ever active.
    pub coverage: f64,
    /// Wall time of the epoch (training + evaluation).
    pub epoch_seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}

/// `summary.json` (built by [`Trainer::summary`](crate::trainer::Trainer::summary)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Final test accuracy (fraction).
    pub test_accuracy: f64,
    /// Best test accuracy over epochs.
    pub best_test_accuracy: f64,
    /// Final global sparsity of the sparsifiable layers.
    pub global_sparsity: f64,
    /// Final nonzeros per layer.
    pub nnz_per_layer: std::collections::BTreeMap<String, usize>,
    /// Steps taken.
    pub steps: u64,
    /// Mean training throughput over epochs.
    pub train_images_per_sec: f64,
    /// Wall time of this invocation.
    pub wall_seconds: f64,
    /// Model, method and dataset.
    pub model: String,
    /// Method.
    pub method: String,
}

/// Appends one epoch to `metrics.jsonl`.
pub fn append_metrics(dir: &Path, m: &EpochMetrics) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(m)?)?;
    Ok(())
}

/// Reads `metrics.jsonl` (empty when absent).
pub fn read_history(dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad line", path.display())))
        .collect()
}

/// Writes `summary.json` atomically.
pub fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    atomic_write(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(s)?.as_bytes(),
    )
}

/// `accuracy.svg` (train and test accuracy per epoch) and `density.svg` (final per-layer density).
pub fn write_plots(dir: &Path, h: &[EpochMetrics]) -> Result<()> {
    let (w, ht, pad) = (640.0, 360.0, 48.0);
    let n = h.len().max(2) as f64 - 1.0;
    let pts = |f: &dyn Fn(&EpochMetrics) -> f64| -> String {
        h.iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "{:.1},{:.1}",
                    pad + (w - 2.0 * pad) * i as f64 / n,
                    ht - pad - (ht - 2.0 * pad) * f(m)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    for k in 0..=4 {
        let y = ht - pad - (ht - 2.0 * pad) * k as f64 / 4.0;
        svg += &format!(
            r##"<line x1="{pad}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="8" y="{}">{}%</text>"##,
            w - pad,
            y + 4.0,
            k * 25
        );
    }
    svg += &format!(
        r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>"#,
        pts(&|m| m.train_accuracy)
    );
    svg += &format!(
        r#"<polyline fill="none" stroke="crimson" stroke-width="2" points="{}"/>"#,
        pts(&|m| m.test_accuracy)
    );
    svg += &format!(
        r#"<text x="{pad}" y="20">accuracy per epoch: train (blue), test (red); {} epochs</text></svg>"#,
        h.len()
    );
    atomic_write(&dir.join("accuracy.svg"), svg.as_bytes())?;

    let layers = h.last().map(|m| m.layers.clone()).unwrap_or_default();
    let bh = 16.0;
    let height = pad + bh * layers.len() as f64 + 20.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="8" y="20">density per layer (final)</text>"#
    );
    for (i, l) in layers.iter().enumerate() {
        let y = pad + bh * i as f64;
        svg += &format!(
            r#"<text x="8" y="{}">{}</text><rect x="260" y="{y}" width="{:.1}" height="{}" fill="seagreen"/><text x="{:.1}" y="{}">{:.3}</text>"#,
            y + 11.0,
            l.name,
            300.0 * l.density,
            bh - 3.0,
            265.0 + 300.0 * l.density,
            y + 11.0,
            l.density
        );
    }
    svg += "</svg>";
    atomic_write(&dir.join("density.svg"), svg.as_bytes())
}
