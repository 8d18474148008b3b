//! Run outputs: `metrics.jsonl` (one line per epoch), `summary.json`, and the plots of the
//! accuracy and loss curves and per-layer density ([`crate::plots`]).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
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
    /// Mask updates (update steps and epoch-start rebuilds) this epoch.
    #[serde(default)]
    pub updates: usize,
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

/// Appends one epoch to `metrics.jsonl`: the record and its newline in one write, synced.
pub fn append_metrics(dir: &Path, m: &EpochMetrics) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let mut line = serde_json::to_string(m)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .with_context(|| {
            format!(
                "{}: cannot append an epoch record (disk full?)",
                path.display()
            )
        })
}

/// The records of `metrics.jsonl` and whether its last line is torn (no newline, or not a
/// record: a write cut short); any other bad line is an error naming it.
fn parse_history(path: &Path) -> Result<(Vec<EpochMetrics>, bool)> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut torn = complete < text.len();
    let lines: Vec<&[u8]> = text[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_slice(l) {
            Ok(m) => out.push(m),
            Err(_) if i + 1 == lines.len() && !torn => torn = true,
            Err(e) => bail!(
                "{}: line {} is not an epoch record ({e}); remove or fix it",
                path.display(),
                i + 1
            ),
        }
    }
    Ok((out, torn))
}

/// Reads `metrics.jsonl` (empty when absent), ignoring a torn last line.
pub fn read_history(dir: &Path) -> Result<Vec<EpochMetrics>> {
    Ok(parse_history(&dir.join("metrics.jsonl"))?.0)
}

/// Brings `metrics.jsonl` in line with a checkpoint at `step` whose own epoch record is
/// `record`: drops records past it (epochs the resumed run will redo) and a torn last line,
/// and restores the checkpoint's record when the file lacks it. Rewrites the file
/// atomically when anything changed; returns the records.
pub fn reconcile_metrics(
    dir: &Path,
    step: u64,
    record: Option<EpochMetrics>,
) -> Result<Vec<EpochMetrics>> {
    let path = dir.join("metrics.jsonl");
    let (records, torn) = parse_history(&path)?;
    let mut kept: Vec<EpochMetrics> = match &record {
        Some(_) => records.iter().filter(|m| m.step < step).cloned().collect(),
        None => records.iter().filter(|m| m.step <= step).cloned().collect(),
    };
    kept.extend(record);
    if torn || kept != records {
        let mut text = String::new();
        for m in &kept {
            text += &serde_json::to_string(m)?;
            text.push('\n');
        }
        atomic_write(&path, text.as_bytes())?;
        eprintln!(
            "{}: {} records brought in line with the checkpoint at step {step} ({} before{})",
            path.display(),
            kept.len(),
            records.len(),
            if torn { ", torn last line removed" } else { "" }
        );
    }
    Ok(kept)
}

/// Writes `summary.json` atomically.
pub fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    atomic_write(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(s)?.as_bytes(),
    )
}

/// `accuracy.svg` (train and test accuracy, and loss, per epoch) and `density.svg` (final
/// per-layer density).
pub fn write_plots(dir: &Path, h: &[EpochMetrics]) -> Result<()> {
    use crate::plots::{curves, density, per_epoch, Curve};
    let curve = |label: &str, f: fn(&EpochMetrics) -> f64| Curve {
        label: label.into(),
        points: per_epoch(h, f),
    };
    curves(
        &dir.join("accuracy.svg"),
        "this run",
        &[
            curve("train", |m| 100.0 * m.train_accuracy),
            curve("test", |m| 100.0 * m.test_accuracy),
        ],
        &[
            curve("train", |m| m.train_loss),
            curve("test", |m| m.test_loss),
        ],
    )?;
    let layers = h.last().map(|m| m.layers.clone()).unwrap_or_default();
    density(&dir.join("density.svg"), &[("this run".into(), layers)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> EpochMetrics {
        EpochMetrics {
            epoch: step / 8,
            step,
            lr: 0.1,
            train_loss: 1.0 / step as f64,
            train_accuracy: 0.5,
            test_loss: 0.7,
            test_accuracy: 0.25 + step as f64 / 1000.0,
            val_accuracy: None,
            global_density: 0.1,
            layers: Vec::new(),
            dropped: 3,
            grown: 3,
            updates: 1,
            coverage: 0.2,
            epoch_seconds: 1.5,
            images_per_sec: 100.0,
        }
    }

    fn steps(dir: &Path) -> Vec<u64> {
        read_history(dir).unwrap().iter().map(|m| m.step).collect()
    }

    #[test]
    fn metrics_are_brought_in_line_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for s in [8, 16, 24] {
            append_metrics(d, &record(s)).unwrap();
        }
        // A kill mid-write leaves a torn last line; reading ignores it.
        let path = d.join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += r#"{"epoch":4,"st"#;
        std::fs::write(&path, &text).unwrap();
        assert_eq!(steps(d), vec![8, 16, 24]);
        // The checkpoint is at step 16: records past it go, and its own record wins.
        let mut r16 = record(16);
        r16.epoch_seconds = 9.0;
        let kept = reconcile_metrics(d, 16, Some(r16.clone())).unwrap();
        assert_eq!(kept, vec![record(8), r16.clone()]);
        assert_eq!(read_history(d).unwrap(), kept);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        // The checkpoint is ahead of the file (killed before the append): its record is added.
        let kept = reconcile_metrics(d, 24, Some(record(24))).unwrap();
        assert_eq!(
            kept.iter().map(|m| m.step).collect::<Vec<_>>(),
            vec![8, 16, 24]
        );
        // Nothing to change: the file is left as it is.
        let before = std::fs::read(&path).unwrap();
        reconcile_metrics(d, 24, Some(record(24))).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_bad_line_before_the_last_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append_metrics(d, &record(8)).unwrap();
        let path = d.join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += "not json\n";
        std::fs::write(&path, &text).unwrap();
        append_metrics(d, &record(16)).unwrap();
        let err = format!("{:#}", read_history(d).unwrap_err());
        assert!(err.contains("line 2 is not an epoch record"), "{err}");
        // A bad *last* complete line is a torn write (a record glued to a partial one).
        std::fs::write(&path, text).unwrap();
        assert_eq!(steps(d), vec![8]);
    }
}
