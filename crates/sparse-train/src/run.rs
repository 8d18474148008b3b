//! The run directory (`--out DIR`) and its rules, in one place: `config.toml` when a run
//! starts, `metrics.jsonl` (one line per epoch), `last.safetensors` / `best.safetensors`,
//! `accuracy.svg` / `density.svg` and `summary.json`; resuming reads `last.safetensors`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::fs::atomic_write;
use crate::report::{self, EpochMetrics, Summary};
use crate::trainer::Trainer;

/// A run's output directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// Starts a new run in `dir`: creates it, writes `config.toml` and starts a fresh
    /// `metrics.jsonl`.
    pub fn create(dir: &Path, cfg: &TrainConfig) -> Result<RunDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create output directory", dir.display()))?;
        let run = RunDir {
            dir: dir.to_path_buf(),
        };
        atomic_write(&run.path("config.toml"), cfg.to_toml()?.as_bytes())?;
        let _ = std::fs::remove_file(run.path("metrics.jsonl"));
        Ok(run)
    }

    /// Opens the run in `dir` and restores its trainer from `last.safetensors`; `data_dir`
    /// overrides the stored data directory. `threads` (or the stored setting) sizes the
    /// thread pool before anything runs.
    pub fn resume(
        dir: &Path,
        data_dir: Option<&Path>,
        threads: Option<usize>,
    ) -> Result<(RunDir, Trainer)> {
        let run = RunDir {
            dir: dir.to_path_buf(),
        };
        let ck = run.last_checkpoint();
        let cfg = checkpoint::Checkpoint::read(&ck)?.config()?;
        Trainer::init_threads(threads.or(cfg.threads));
        let t = checkpoint::load(&ck, data_dir)?;
        Ok((run, t))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the run.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `last.safetensors`.
    pub fn last_checkpoint(&self) -> PathBuf {
        self.path("last.safetensors")
    }

    /// `best.safetensors`.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.path("best.safetensors")
    }

    /// The epochs recorded so far.
    pub fn history(&self) -> Result<Vec<EpochMetrics>> {
        report::read_history(&self.dir)
    }

    /// Records a finished epoch: its metrics line, the checkpoints and the plots.
    pub fn record_epoch(
        &self,
        t: &mut Trainer,
        m: &EpochMetrics,
        is_best: bool,
        history: &[EpochMetrics],
    ) -> Result<()> {
        report::append_metrics(&self.dir, m)?;
        checkpoint::save(t, &self.last_checkpoint())?;
        if is_best {
            checkpoint::save(t, &self.best_checkpoint())?;
        }
        report::write_plots(&self.dir, history)
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, s: &Summary) -> Result<()> {
        report::write_summary(&self.dir, s)
    }
}

/// Trains `t` to the end, recording every epoch in `out` when given; returns the summary.
pub fn train(t: &mut Trainer, out: Option<&RunDir>) -> Result<Summary> {
    let start = Instant::now();
    let mut history = match out {
        Some(r) => r.history()?,
        None => Vec::new(),
    };
    if let Some(n) = &t.device_notice {
        eprintln!("{n}");
    }
    while !t.finished() {
        let m = t.run_epoch()?;
        eprintln!(
            "epoch {} (step {}): train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | density {:.4} | {:.1}s, {:.0} img/s",
            m.epoch,
            m.step,
            m.train_loss,
            100.0 * m.train_accuracy,
            m.test_loss,
            100.0 * m.test_accuracy,
            m.global_density,
            m.epoch_seconds,
            m.images_per_sec
        );
        let is_best = (m.test_accuracy - t.best_test_accuracy).abs() < f64::EPSILON;
        history.push(m.clone());
        if let Some(r) = out {
            r.record_epoch(t, &m, is_best, &history)?;
        }
    }
    let summary = t.summary(&history, start.elapsed().as_secs_f64());
    if let Some(r) = out {
        r.write_summary(&summary)?;
    }
    Ok(summary)
}
