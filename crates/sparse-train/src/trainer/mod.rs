//! The training loop: data on the run's device, forward/backward through the model, the
//! step protocol of `sparse-algos` (method hooks, SGD through masks, mask updates), LR
//! schedules, evaluation, the exact-budget check and coverage. AGC's extra passes are in
//! [`agc`](self) and the epoch loop in `epoch.rs`; the run directory is [`crate::run`].

mod agc;
mod bench;
mod epoch;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sparse_algos::agc::{Agc, AgcConfig};
use sparse_algos::{
    apply_step, preset, Coverage, Decay, PresetContext, Properties, SparseMethod, StepInfo,
};
use sparse_core::{layer_budget, random_masks, Budget, Distribution, LayerShape};
use sparse_kernels::ops::loss::{softmax_cross_entropy, topk_correct};
use sparse_kernels::ops::optim::SgdConfig;
use sparse_kernels::profile::{self, Phase};
use sparse_kernels::{Device, DeviceRequest, ExecPolicy, IndexTensor, Tensor};

use crate::config::{LrSchedule, TrainConfig};
use crate::data::{self, Batch, Data, Dataset, Loader};
use crate::model::{self, ExecCtx, Model};
use crate::report::{EpochMetrics, LayerMetrics, Summary};

/// A training run in progress.
pub struct Trainer {
    /// The resolved configuration.
    pub cfg: TrainConfig,
    /// Where the model, the batches and every op live.
    pub device: Device,
    /// The model.
    pub model: Model,
    /// The sparsity method.
    pub method: Box<dyn SparseMethod>,
    /// What the method's preset declares (masks, constant budget, step schedule).
    pub props: Properties,
    /// AGC state when `--agc`.
    pub agc: Option<Agc>,
    /// The data.
    pub data: Data,
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Best test accuracy so far.
    pub best_test_accuracy: f64,
    /// Ever-active positions per masked layer.
    pub coverage: Coverage,
    /// The exact budget for constant-budget methods, checked after every update.
    pub budget: Option<Budget>,
    /// Dropped / grown counts since the last epoch report.
    pub dropped_grown: (usize, usize),
    /// Mask updates since the last epoch report.
    pub mask_updates: usize,
    /// Notice printed when the device request fell back to the CPU.
    pub device_notice: Option<String>,
    /// The metrics of the last finished epoch (checkpointed with it, so the run directory's
    /// `metrics.jsonl` can be brought back in line with the checkpoint on resume).
    pub last_epoch: Option<EpochMetrics>,
    train_loader: Loader,
    val: Option<Arc<Dataset>>,
    steps_per_epoch: u64,
    total_steps: u64,
}

fn distribution(name: &str) -> Result<Distribution> {
    Ok(match name {
        "uniform" => Distribution::Uniform {
            dense_layers: Vec::new(),
        },
        "er" => Distribution::Er,
        "erk" => Distribution::Erk { power: 1.0 },
        other => bail!("unknown distribution `{other}` (expected uniform, er or erk)"),
    })
}

impl Trainer {
    /// Sets up data, model, method and initial masks from a configuration.
    pub fn new(cfg: TrainConfig) -> Result<Trainer> {
        cfg.validate()?;
        let req: DeviceRequest = cfg.device.parse()?;
        let (device, device_notice) = req.resolve()?;
        let data_dir = cfg
            .data_dir
            .clone()
            .or_else(|| std::env::var_os(data::DATA_DIR_ENV).map(PathBuf::from));
        let mut data = data::load(cfg.data, data_dir.as_deref(), cfg.seed)?;
        if let Some(n) = cfg.train_subset {
            Arc::make_mut(&mut data.train).truncate(n);
        }
        if let Some(n) = cfg.eval_subset {
            Arc::make_mut(&mut data.test).truncate(n);
        }
        let val = (cfg.val_split > 0)
            .then(|| Arc::new(Arc::make_mut(&mut data.train).split_off(cfg.val_split)));
        if data.train.len() < cfg.batch_size {
            bail!(
                "the training split has {} examples, fewer than one batch of {}",
                data.train.len(),
                cfg.batch_size
            );
        }
        let train_loader = Loader::train(&data, cfg.batch_size, cfg.seed);
        let steps_per_epoch = train_loader.train_batches() as u64;
        let total_steps = match cfg.steps {
            Some(s) => s,
            None => cfg
                .epochs
                .checked_mul(steps_per_epoch)
                .filter(|&s| s <= crate::config::MAX_STEPS)
                .with_context(|| {
                    format!(
                        "--epochs {} x {steps_per_epoch} steps per epoch exceeds {} steps",
                        cfg.epochs,
                        crate::config::MAX_STEPS
                    )
                })?,
        };
        let warm = cfg.warmup_epochs * steps_per_epoch as f64;
        if warm > total_steps as f64 {
            bail!(
                "--warmup-epochs {} ({warm:.0} steps) is longer than the run ({total_steps} steps)",
                cfg.warmup_epochs
            );
        }
        let (c, h, w) = data.train.chw;
        let mut model = model::build(
            &cfg.model,
            [c, h, w],
            data.train.classes,
            cfg.width_mult,
            cfg.seed,
            cfg.init,
            device,
        )?;
        let layers: Vec<LayerShape> = model
            .sparsifiable_mut()
            .iter()
            .map(|p| LayerShape::new(p.name.clone(), p.value.shape()))
            .collect();
        let ctx = PresetContext {
            sparsity: cfg.sparsity,
            layers: layers.clone(),
            total_steps,
            steps_per_epoch,
            epochs: total_steps.div_ceil(steps_per_epoch),
            lr: cfg.lr,
            seed: cfg.seed,
            interval: cfg.update_interval,
            schedule: cfg.schedule.into(),
            distribution: cfg.distribution.as_deref().map(distribution).transpose()?,
        };
        let p = preset(&cfg.method, &ctx)?;
        let mut budget = None;
        if p.props.masked {
            let b = layer_budget(&layers, p.init.sparsity, &p.init.distribution, &[])?;
            let masks = random_masks(&b, cfg.seed);
            for (param, m) in model.sparsifiable_mut().into_iter().zip(masks) {
                param.set_mask(m)?;
                param.mask_value()?;
            }
            if p.props.constant_budget {
                budget = Some(b);
            }
        }
        // Scaled schedules give every run enough updates; an interval the user fixed (or the
        // paper's) may not. Probing every step of a very long run would stall start-up; such
        // a run has plenty of updates for any ΔT a preset uses.
        let fixed = cfg.update_interval.is_some() || cfg.schedule == crate::config::Schedule::Paper;
        if p.props.step_scheduled && fixed && total_steps <= 10_000_000 {
            let probe = |step| StepInfo {
                step,
                epoch: step / steps_per_epoch,
                steps_per_epoch,
                total_steps,
            };
            let updates = (0..total_steps)
                .filter(|&s| p.method.is_update_step(&probe(s)))
                .take(5)
                .count();
            if updates < 5 {
                eprintln!(
                    "warning: `{}` updates its masks only {updates} times in {total_steps} steps with the ΔT \
                     you chose; omit --update-interval / --schedule paper to scale ΔT to this run",
                    cfg.method
                );
            }
        }
        let agc = if cfg.agc {
            let initial = model.params().iter().map(|p| p.value.clone()).collect();
            Some(Agc::new(AgcConfig::default(), initial)?)
        } else {
            None
        };
        let coverage = Coverage::new(&model.params());
        Ok(Trainer {
            cfg,
            device,
            model,
            method: p.method,
            props: p.props,
            agc,
            data,
            step: 0,
            epoch: 0,
            best_test_accuracy: 0.0,
            coverage,
            budget,
            dropped_grown: (0, 0),
            mask_updates: 0,
            device_notice,
            last_epoch: None,
            train_loader,
            val,
            steps_per_epoch,
            total_steps,
        })
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.steps_per_epoch
    }

    fn info(&self) -> StepInfo {
        StepInfo {
            step: self.step,
            epoch: self.epoch,
            steps_per_epoch: self.steps_per_epoch,
            total_steps: self.total_steps,
        }
    }

    /// The learning rate at `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let c = &self.cfg;
        let warm = (c.warmup_epochs * self.steps_per_epoch as f64) as u64;
        if step < warm {
            return c.lr * (step + 1) as f64 / warm as f64;
        }
        let frac = (step - warm) as f64 / (self.total_steps - warm).max(1) as f64;
        match c.lr_schedule {
            LrSchedule::Constant => c.lr,
            LrSchedule::Cosine => 0.5 * c.lr * (1.0 + (std::f64::consts::PI * frac).cos()),
            LrSchedule::Multistep => {
                c.lr * c
                    .lr_gamma
                    .powi(c.milestones.iter().filter(|&&m| frac >= m).count() as i32)
            }
        }
    }

    fn exec(&self, train: bool, dense_grad: bool) -> ExecCtx {
        ExecCtx {
            train,
            dense_grad,
            keeps_dense_values: self.method.keeps_dense_values(),
            force_dense: false,
            freeze_running_stats: false,
            policy: if self.device.is_cuda() {
                ExecPolicy {
                    conv_sparse_below: self.cfg.gpu_conv_sparse_below,
                    linear_sparse_below: self.cfg.gpu_linear_sparse_below,
                }
            } else {
                ExecPolicy {
                    conv_sparse_below: self.cfg.conv_sparse_below,
                    linear_sparse_below: self.cfg.linear_sparse_below,
                }
            },
        }
    }

    /// Moves a batch to the run's device (no copy on the CPU).
    fn upload(&self, b: Batch) -> Result<(Tensor, IndexTensor)> {
        Ok((b.x.to_device(self.device)?, b.y.to_device(self.device)?))
    }

    /// Forward + backward on a batch; returns (loss, correct).
    fn forward_backward(
        &mut self,
        x: Tensor,
        y: &IndexTensor,
        ctx: &ExecCtx,
    ) -> Result<(f64, usize)> {
        let logits = self.model.forward(x, ctx)?;
        let (ce, correct) = {
            let _layer = profile::layer("(loss)");
            profile::time(Phase::Loss, || -> Result<_> {
                let ce = softmax_cross_entropy(&logits, y, self.cfg.label_smoothing as f32)?;
                Ok((ce, topk_correct(&logits, y, 1)?))
            })?
        };
        self.model.backward(ce.dlogits, ctx)?;
        Ok((ce.loss, correct))
    }

    /// One optimizer step on a batch (taken over). Returns (loss, correct).
    pub fn train_step(&mut self, b: Batch) -> Result<(f64, usize)> {
        in_pool(|| self.train_step_inner(b))
    }

    fn train_step_inner(&mut self, b: Batch) -> Result<(f64, usize)> {
        let info = self.info();
        let ctx = self.exec(true, self.method.needs_dense_grad(&info));
        let (x, y) = {
            let _layer = profile::layer("(data)");
            profile::time(Phase::Data, || self.upload(b))?
        };
        let (loss, correct, corrected) = if self.agc.is_some() {
            let (l, c) = self.forward_backward(x.clone(), &y, &ctx)?;
            (l, c, Some(self.agc_corrected_grads(x, &y)?))
        } else {
            let (l, c) = self.forward_backward(x, &y, &ctx)?;
            (l, c, None)
        };
        let sgd = SgdConfig {
            lr: self.lr_at(self.step) as f32,
            momentum: self.cfg.momentum as f32,
            nesterov: self.cfg.nesterov,
            weight_decay: self.cfg.weight_decay as f32,
        };
        let report = {
            let mut params = self.model.params_mut();
            apply_step(
                self.method.as_mut(),
                &info,
                &mut params,
                &sgd,
                if self.cfg.decay_bias_bn {
                    Decay::All
                } else {
                    Decay::WeightsOnly
                },
                corrected.as_deref(),
            )?
        };
        if let Some(r) = report {
            self.after_mask_change(r.dropped(), r.grown())?;
        }
        self.step += 1;
        Ok((loss, correct))
    }

    fn after_mask_change(&mut self, dropped: usize, grown: usize) -> Result<()> {
        self.dropped_grown.0 += dropped;
        self.dropped_grown.1 += grown;
        self.mask_updates += 1;
        let params = self.model.params();
        self.coverage.record(&params)?;
        if let Some(b) = &self.budget {
            let masks = params
                .iter()
                .filter_map(|p| p.mask().map(|m| (p.name.as_str(), m.mask())));
            b.check(masks)
                .context("mask update broke the exact nonzero budget")?;
        }
        Ok(())
    }

    /// Evaluates on a split: (mean loss, accuracy).
    pub fn evaluate(&mut self, split: &Arc<Dataset>) -> Result<(f64, f64)> {
        in_pool(|| profile::time_whole("(evaluation)", Phase::Eval, || self.evaluate_inner(split)))
    }

    fn evaluate_inner(&mut self, split: &Arc<Dataset>) -> Result<(f64, f64)> {
        let loader = Loader::eval(&self.data, split.clone(), 256);
        let ctx = self.exec(false, false);
        let (mut loss, mut correct) = (0f64, 0usize);
        for i in 0..loader.eval_batches() {
            let b = loader.eval_batch(i)?;
            let n = b.n;
            let (x, y) = self.upload(b)?;
            let logits = self.model.forward(x, &ctx)?;
            loss += softmax_cross_entropy(&logits, &y, 0.0)?.loss * n as f64;
            correct += topk_correct(&logits, &y, 1)?;
        }
        let n = split.len().max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }

    /// Test-set evaluation.
    pub fn evaluate_test(&mut self) -> Result<(f64, f64)> {
        let test = self.data.test.clone();
        self.evaluate(&test)
    }

    /// Whether the run has steps left.
    pub fn finished(&self) -> bool {
        self.step >= self.total_steps
    }

    /// Per-layer nonzero counts and densities.
    pub fn layer_metrics(&self) -> Vec<LayerMetrics> {
        self.model
            .params()
            .into_iter()
            .filter(|p| p.sparsifiable)
            .map(|p| {
                let numel = p.value.numel();
                let nnz = p.nnz();
                LayerMetrics {
                    name: p.name.clone(),
                    numel,
                    nnz,
                    density: nnz as f64 / numel.max(1) as f64,
                }
            })
            .collect()
    }

    /// Global density over the sparsifiable layers.
    pub fn global_density(&self) -> f64 {
        let l = self.layer_metrics();
        l.iter().map(|m| m.nnz).sum::<usize>() as f64
            / l.iter().map(|m| m.numel).sum::<usize>().max(1) as f64
    }

    /// The summary of a run with `history`, `wall` seconds in this invocation.
    pub fn summary(&self, history: &[EpochMetrics], wall: f64) -> Summary {
        let last = history.last();
        Summary {
            test_accuracy: last.map_or(0.0, |m| m.test_accuracy),
            best_test_accuracy: history.iter().map(|m| m.test_accuracy).fold(0.0, f64::max),
            global_sparsity: 1.0 - self.global_density(),
            nnz_per_layer: self
                .layer_metrics()
                .into_iter()
                .map(|l| (l.name, l.nnz))
                .collect(),
            steps: self.step,
            train_images_per_sec: if history.is_empty() {
                0.0
            } else {
                history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len() as f64
            },
            wall_seconds: wall,
            model: self.cfg.model.clone(),
            method: self.cfg.method.clone(),
        }
    }

    /// Fails when a loss of the epoch or any weight or BatchNorm statistic is not finite,
    /// naming what, so a diverged state is never checkpointed.
    pub fn check_finite(&mut self, m: &EpochMetrics) -> Result<()> {
        let diverged = |what: String| {
            anyhow::anyhow!(
                "training diverged in epoch {}: {what}; nothing of this epoch was saved (lower --lr?)",
                m.epoch
            )
        };
        for (name, v) in [("train loss", m.train_loss), ("test loss", m.test_loss)] {
            if !v.is_finite() {
                return Err(diverged(format!("the {name} is {v}")));
            }
        }
        for p in self.model.params() {
            if p.value.to_host()?.iter().any(|v| !v.is_finite()) {
                return Err(diverged(format!("`{}` has non-finite weights", p.name)));
            }
        }
        for (name, mean, var) in self.model.running_stats_mut() {
            if mean
                .to_host()?
                .iter()
                .chain(&var.to_host()?)
                .any(|v| !v.is_finite())
            {
                return Err(diverged(format!(
                    "BatchNorm `{name}` has non-finite statistics"
                )));
            }
        }
        Ok(())
    }

    /// Sets the rayon pool size (`--threads`); the first call wins for the process.
    pub fn init_threads(threads: Option<usize>) {
        if let Some(t) = threads {
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build_global();
        }
    }
}

/// Runs `f` on a worker of rayon's global pool, the caller blocking until it returns. The
/// ops inside then fork and join through the workers' own queues; called from outside the
/// pool, every parallel op would inject its work and sleep until it is done, which costs
/// more than the work itself at MLP sizes (a 784x300 sparse layer's forward: 85 -> 58 us).
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}
