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
    /// Convolutions run sparse below this density.
    pub conv_sparse_below: f64,
    /// Linear layers run sparse below this density.
    pub linear_sparse_below: f64,
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
            conv_sparse_below: sparse_kernels::ExecPolicy::default().conv_sparse_below,
            linear_sparse_below: sparse_kernels::ExecPolicy::default().linear_sparse_below,
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

    /// Rejects out-of-range values with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.sparsity) {
            bail!("--sparsity {} is outside [0, 1)", self.sparsity);
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be >= 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be > 0, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!("label_smoothing {} is outside [0, 1)", self.label_smoothing);
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            bail!("nothing to train: --epochs and --steps are both 0");
        }
        if self.agc && self.method == "dense" {
            bail!("--agc wraps a sparse method; it is not defined for --method dense");
        }
        Ok(())
    }
}
