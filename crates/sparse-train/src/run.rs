//! The run directory (`--out DIR`) and its rules, in one place.
//!
//! A run writes `config.toml` when it starts, then per epoch `best.safetensors` (when the
//! epoch is the best so far), `last.safetensors`, one `metrics.jsonl` line and the plots
//! `accuracy.svg` / `density.svg`, and `summary.json` at the end. The guarantees
//! (docs/reliability.md):
//! - one writer: the directory is locked (`.lock`, an advisory lock the OS drops when the
//!   process dies, holding the owner's PID) for as long as a run uses it;
//! - nothing is destroyed unasked: a new run refuses a directory that holds a run unless
//!   `--overwrite`, and removes the old files only once its own setup has succeeded;
//! - every file is replaced atomically (unique temporary name, synced, renamed), and
//!   `metrics.jsonl` is appended one whole record per write, after the checkpoint;
//! - on resume, `metrics.jsonl` is brought back in line with `last.safetensors`: records
//!   past the checkpoint are dropped, a torn last line is removed and a record the
//!   checkpoint holds but the file lacks is restored; leftover temporary files are removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::fs::atomic_write;
use crate::report::{self, EpochMetrics, Summary};
use crate::trainer::Trainer;

/// The files a run writes (what `--overwrite` removes).
pub const RUN_FILES: &[&str] = &[
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    "last.safetensors",
    "best.safetensors",
    "accuracy.svg",
    "density.svg",
];

const LOCK: &str = ".lock";

/// What `--resume` may change: the run length (a longer run continues every schedule on
/// the new horizon) and where data and threads come from.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Dataset directory (overrides the stored one).
    pub data_dir: Option<PathBuf>,
    /// Rayon threads (overrides the stored setting).
    pub threads: Option<usize>,
    /// New total epochs.
    pub epochs: Option<u64>,
    /// New total steps.
    pub steps: Option<u64>,
}

/// A run's output directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    _lock: File,
    replace: bool,
}

/// Takes the directory's lock, or names the process holding it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}: cannot open the run lock", path.display()))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            f.sync_data()?;
            Ok(f)
        }
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = f.read_to_string(&mut owner);
            let owner = match owner.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            bail!(
                "{}: another sparse-train run ({owner}) is using this directory; wait for it to \
                 finish or choose another --out",
                dir.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
}

/// Removes temporary files a killed writer left behind (the caller holds the lock).
fn remove_leftovers(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let e = e?;
        if e.file_name()
            .to_string_lossy()
            .starts_with(crate::fs::TMP_PREFIX)
        {
            std::fs::remove_file(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

impl RunDir {
    /// Opens `dir` for a new run: creates and locks it. A directory that already holds a
    /// run is refused unless `overwrite`; nothing is written or removed until
    /// [`start`](Self::start).
    pub fn create(dir: &Path, overwrite: bool) -> Result<RunDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create output directory", dir.display()))?;
        let lock = lock(dir)?;
        let held: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| dir.join(f).exists())
            .collect();
        if !held.is_empty() && !overwrite {
            bail!(
                "{} already holds a run ({}); pass --resume {} to continue it, or --overwrite to \
                 replace it",
                dir.display(),
                held.join(", "),
                dir.display()
            );
        }
        Ok(RunDir {
            dir: dir.to_path_buf(),
            _lock: lock,
            replace: !held.is_empty(),
        })
    }

    /// Starts the run once its setup has succeeded: removes the previous run's files (when
    /// overwriting) and writes `config.toml`.
    pub fn start(&mut self, cfg: &TrainConfig) -> Result<()> {
        if self.replace {
            for f in RUN_FILES {
                let p = self.path(f);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("{}: cannot remove", p.display()))?;
                }
            }
            self.replace = false;
        }
        remove_leftovers(&self.dir)?;
        atomic_write(&self.path("config.toml"), cfg.to_toml()?.as_bytes())
    }

    /// Opens the run in `dir`, checks that `last.safetensors` belongs to its `config.toml`,
    /// restores the trainer (extended to `opts`' length) and brings `metrics.jsonl` in line
    /// with the checkpoint.
    pub fn resume(dir: &Path, opts: &ResumeOptions) -> Result<(RunDir, Trainer)> {
        if !dir.is_dir() {
            bail!("--resume {}: no such run directory", dir.display());
        }
        let run = RunDir {
            dir: dir.to_path_buf(),
            _lock: lock(dir)?,
            replace: false,
        };
        let ck_path = run.last_checkpoint();
        if !ck_path.exists() {
            bail!(
                "{}: no checkpoint, so no epoch of this run finished; start it again with --out {} --overwrite",
                ck_path.display(),
                dir.display()
            );
        }
        let ck = Checkpoint::read(&ck_path)?;
        let cfg_path = run.path("config.toml");
        if cfg_path.exists() {
            let dir_cfg = TrainConfig::from_file(&cfg_path)?;
            if !dir_cfg.same_run(ck.config()) {
                bail!(
                    "{} is a checkpoint of a different run than {} (they differ in: {}); \
                     refusing to resume",
                    ck_path.display(),
                    cfg_path.display(),
                    dir_cfg.run_differences(ck.config()).join(", ")
                );
            }
        }
        let mut cfg = ck.config().clone();
        if let Some(d) = &opts.data_dir {
            cfg.data_dir = Some(d.clone());
        }
        if opts.threads.is_some() {
            cfg.threads = opts.threads;
        }
        if let Some(s) = opts.steps {
            cfg.steps = Some(s);
        } else if let Some(e) = opts.epochs {
            cfg.steps = None;
            cfg.epochs = e;
        }
        cfg.validate()?;
        Trainer::init_threads(cfg.threads);
        let (step, record) = (ck.step(), ck.metrics().cloned());
        let t = ck
            .into_trainer(cfg)
            .with_context(|| format!("{}: cannot resume", ck_path.display()))?;
        if t.finished() {
            bail!(
                "{} already finished ({} of {} steps); pass a larger --epochs or --steps to extend it",
                dir.display(),
                t.step,
                t.total_steps()
            );
        }
        report::reconcile_metrics(&run.dir, step, record)?;
        remove_leftovers(&run.dir)?;
        atomic_write(&cfg_path, t.cfg.to_toml()?.as_bytes())?;
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

    /// Records a finished epoch: `best.safetensors` first (when best), then
    /// `last.safetensors`, then its `metrics.jsonl` line and the plots. A kill between
    /// any two leaves a directory that resumes to the same run.
    pub fn record_epoch(
        &self,
        t: &mut Trainer,
        m: &EpochMetrics,
        is_best: bool,
        history: &[EpochMetrics],
    ) -> Result<()> {
        if is_best {
            checkpoint::save(t, &self.best_checkpoint())?;
        }
        checkpoint::save(t, &self.last_checkpoint())?;
        report::append_metrics(&self.dir, m)?;
        report::write_plots(&self.dir, history)
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, s: &Summary) -> Result<()> {
        report::write_summary(&self.dir, s)
    }
}

/// Trains `t` to the end, recording every epoch in `out` when given; returns the summary.
/// An epoch whose losses, weights or statistics are not finite ends the run with an error
/// before anything of it is recorded.
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
        let best_before = t.best_test_accuracy;
        let m = t.run_epoch()?;
        t.check_finite(&m)?;
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
        let is_best = m.test_accuracy >= best_before;
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
