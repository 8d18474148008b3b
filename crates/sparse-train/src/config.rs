//! The resolved configuration of a run (`config.toml`; every CLI flag overrides it).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::DataKind;

/// Learning-rate schedule shape (after the optional linear warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Half-cosine from `lr` to 0 over the run.
    Cosine,
    /// `lr · gamma^k` after each milestone (fractions of the run).
    Multistep,
    /// Constant `lr`.
    Constant,
}

/// The largest `--width-mult` (the memory estimate in `model::build` catches most
/// oversized models before this).
pub const MAX_WIDTH_MULT: f64 = 64.0;
/// The largest batch.
pub const MAX_BATCH: usize = 1 << 16;
/// The longest run in steps (about 30 years at 1,000 steps a second).
pub const MAX_STEPS: u64 = 1_000_000_000_000;
/// The longest run in epochs.
pub const MAX_EPOCHS: u64 = 1_000_000;

/// Weight initialisation (`--init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// PyTorch's default for `Conv2d` / `Linear`: `U(±1/√fan_in)` for weights and biases.
    #[default]
    PytorchDefault,
    /// Kaiming normal: `N(0, 2/fan_in)` weights (fan-in mode, ReLU gain), zero biases.
    KaimingNormal,
}

/// How mask-update intervals follow the run (`--schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// ΔT scaled to the run's length, giving the paper's number of updates.
    #[default]
    Scaled,
    /// The papers' ΔT in steps.
    Paper,
}

impl From<Schedule> for sparse_algos::ScheduleMode {
    fn from(s: Schedule) -> Self {
        match s {
            Schedule::Scaled => sparse_algos::ScheduleMode::Scaled,
            Schedule::Paper => sparse_algos::ScheduleMode::Paper,
        }
    }
}

/// Every setting of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name (`sparse-train list`).
    pub model: String,
    /// Channel width multiplier.
    pub width_mult: f64,
    /// Dataset.
    pub data: DataKind,
    /// Directory holding the dataset files.
    pub data_dir: Option<PathBuf>,
    /// Sparsity method / preset.
    pub method: String,
    /// Wrap the method with AGC gradient correction.
    pub agc: bool,
    /// Target global sparsity of the sparsifiable layers.
    pub sparsity: f64,
    /// Layer distribution (`uniform`, `er`, `erk`); the preset's when unset.
    pub distribution: Option<String>,
    /// Epochs (ignored when `steps` is set).
    pub epochs: u64,
    /// Total optimizer steps (overrides `epochs`).
    pub steps: Option<u64>,
    /// Batch size.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Coupled weight decay.
    pub weight_decay: f64,
    /// Weight decay also on biases and BatchNorm parameters (`--no-decay-bias-bn` clears it).
    pub decay_bias_bn: bool,
    /// Weight initialisation.
    pub init: Init,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// LR schedule.
    pub lr_schedule: LrSchedule,
    /// Linear warm-up epochs.
    pub warmup_epochs: f64,
    /// Multistep milestones as fractions of the run.
    pub milestones: Vec<f64>,
    /// Multistep factor.
    pub lr_gamma: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// Rayon threads (all cores when unset).
    pub threads: Option<usize>,
    /// Use only the first N training examples.
    pub train_subset: Option<usize>,
    /// Use only the first N test examples.
    pub eval_subset: Option<usize>,
    /// Hold out the last N training examples as a validation split.
    pub val_split: usize,
    /// Override the preset's mask-update interval ΔT.
    pub update_interval: Option<u64>,
    /// How the preset's ΔT follows the run (when `update_interval` is unset).
    pub schedule: Schedule,
    /// Convolutions run sparse below this density on the CPU (default by CPU:
    /// `sparse_kernels::ExecPolicy::cpu_default`, 0.32 or 0.5; the run's config.toml records
    /// the value used).
    pub conv_sparse_below: f64,
    /// Linear layers run sparse below this density.
    pub linear_sparse_below: f64,
    /// Convolutions run sparse below this density on a CUDA device.
    pub gpu_conv_sparse_below: f64,
    /// Linear layers run sparse below this density on a CUDA device.
    pub gpu_linear_sparse_below: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "convnet".into(),
            width_mult: 1.0,
            data: DataKind::Synthetic,
            data_dir: None,
            method: "rigl".into(),
            agc: false,
            sparsity: 0.9,
            distribution: None,
            epochs: 4,
            steps: None,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            decay_bias_bn: true,
            init: Init::PytorchDefault,
            label_smoothing: 0.0,
            lr_schedule: LrSchedule::Cosine,
            warmup_epochs: 0.0,
            milestones: vec![0.5, 0.75],
            lr_gamma: 0.1,
            seed: 0,
            device: "auto".into(),
            threads: None,
            train_subset: None,
            eval_subset: None,
            val_split: 0,
            update_interval: None,
            schedule: Schedule::Scaled,
            conv_sparse_below: sparse_kernels::ExecPolicy::default().conv_sparse_below,
            linear_sparse_below: sparse_kernels::ExecPolicy::default().linear_sparse_below,
            gpu_conv_sparse_below: sparse_kernels::ExecPolicy::gpu_default().conv_sparse_below,
            gpu_linear_sparse_below: sparse_kernels::ExecPolicy::gpu_default().linear_sparse_below,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file (unknown keys are errors).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid config", path.display()))
    }

    /// The TOML text.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Rejects out-of-range values with a message naming the setting, before anything is
    /// loaded or allocated.
    pub fn validate(&self) -> Result<()> {
        let unit = |v: f64| (0.0..1.0).contains(&v);
        if !unit(self.sparsity) {
            bail!("--sparsity {} is outside [0, 1)", self.sparsity);
        }
        if !(self.width_mult > 0.0 && self.width_mult <= MAX_WIDTH_MULT) {
            bail!(
                "--width-mult {} is outside (0, {MAX_WIDTH_MULT}]",
                self.width_mult
            );
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            bail!(
                "--batch-size {} is outside 1..={MAX_BATCH}",
                self.batch_size
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be > 0 and finite, got {}", self.lr);
        }
        if !unit(self.momentum) {
            bail!("--momentum {} is outside [0, 1)", self.momentum);
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            bail!("--weight-decay {} is outside [0, 1)", self.weight_decay);
        }
        if !unit(self.label_smoothing) {
            bail!(
                "--label-smoothing {} is outside [0, 1)",
                self.label_smoothing
            );
        }
        if !(self.lr_gamma > 0.0 && self.lr_gamma <= 1.0) {
            bail!("lr_gamma {} is outside (0, 1]", self.lr_gamma);
        }
        if let Some(m) = self.milestones.iter().find(|m| !(0.0..=1.0).contains(*m)) {
            bail!("milestone {m} is outside [0, 1] (milestones are fractions of the run)");
        }
        for (name, v) in [
            ("conv_sparse_below", self.conv_sparse_below),
            ("linear_sparse_below", self.linear_sparse_below),
            ("gpu_conv_sparse_below", self.gpu_conv_sparse_below),
            ("gpu_linear_sparse_below", self.gpu_linear_sparse_below),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} {v} is outside [0, 1]");
            }
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            bail!("nothing to train: --epochs and --steps are both 0");
        }
        if self.steps.is_some_and(|s| s > MAX_STEPS) {
            bail!("--steps is limited to {MAX_STEPS}");
        }
        if self.steps.is_none() && self.epochs > MAX_EPOCHS {
            bail!("--epochs is limited to {MAX_EPOCHS}");
        }
        let epochs = match self.steps {
            Some(_) => f64::INFINITY,
            None => self.epochs as f64,
        };
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs <= epochs.min(MAX_EPOCHS as f64)) {
            bail!(
                "--warmup-epochs {} must be finite and within [0, {}] (the run's epochs)",
                self.warmup_epochs,
                epochs.min(MAX_EPOCHS as f64)
            );
        }
        if self.update_interval == Some(0) {
            bail!("--update-interval must be >= 1");
        }
        if self.threads.is_some_and(|t| t == 0 || t > 1024) {
            bail!("--threads must be within 1..=1024");
        }
        for (flag, v) in [
            ("--train-subset", self.train_subset),
            ("--eval-subset", self.eval_subset),
        ] {
            if v == Some(0) {
                bail!("{flag} 0 leaves no examples; omit it to use the whole split");
            }
        }
        if self.agc && self.method == "dense" {
            bail!("--agc wraps a sparse method; it is not defined for --method dense");
        }
        self.device.parse::<sparse_kernels::DeviceRequest>()?;
        Ok(())
    }

    /// The settings two configurations must share for a checkpoint of one to continue a
    /// run of the other: everything but the run length (`epochs`, `steps`), which
    /// `--resume` may extend, and where the data and threads come from.
    pub fn same_run(&self, other: &TrainConfig) -> bool {
        let strip = |c: &TrainConfig| TrainConfig {
            epochs: 0,
            steps: None,
            data_dir: None,
            threads: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }

    /// The top-level settings that [`same_run`](Self::same_run) compares and that differ
    /// between the two, as `key a vs b` (their config-file values), for error messages.
    pub fn run_differences(&self, other: &TrainConfig) -> Vec<String> {
        // A configuration always serializes (plain fields); an empty table would only hide
        // the detail, not the error it explains.
        let table = |c: &TrainConfig| toml::Table::try_from(c).unwrap_or_default();
        let (ta, tb) = (table(self), table(other));
        let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
        keys.into_iter()
            .filter(|k| !["epochs", "steps", "data_dir", "threads"].contains(&k.as_str()))
            .filter(|k| ta.get(*k) != tb.get(*k))
            .map(|k| {
                let show = |t: &toml::Table| t.get(k).map_or("unset".into(), |v| v.to_string());
                format!("{k} {} vs {}", show(&ta), show(&tb))
            })
            .collect()
    }
}
