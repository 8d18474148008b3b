//! The training loop: SGD through masks, LR schedules, evaluation, the sparsity method's
//! hooks at the right moments, AGC's extra passes, metrics and checkpoints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sparse_algos::agc::{Agc, AgcConfig};
use sparse_algos::{preset, Layer, PresetContext, SparseMethod, StepInfo};
use sparse_core::{layer_budget, random_masks, Budget, Distribution, LayerShape, Mask};
use sparse_kernels::ops::loss::{softmax_cross_entropy, topk_correct};
use sparse_kernels::ops::optim::{sgd_step, SgdConfig};
use sparse_kernels::{DeviceRequest, ExecPolicy, Tensor};

use crate::config::{LrSchedule, TrainConfig};
use crate::data::{self, Batch, Data, Loader};
use crate::model::{self, ExecCtx, Model, Param};
use crate::report::{EpochMetrics, LayerMetrics};

/// A training run in progress.
pub struct Trainer {
    /// The resolved configuration.
    pub cfg: TrainConfig,
    /// The model.
    pub model: Model,
    /// The sparsity method.
    pub method: Box<dyn SparseMethod>,
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
    /// Ever-active positions per sparsifiable layer.
    pub fired: Vec<Mask>,
    /// The exact budget for constant-budget methods, checked after every update.
    pub budget: Option<Budget>,
    /// Dropped / grown counts since the last epoch report.
    pub dropped_grown: (usize, usize),
    /// Notice printed when the device request fell back to the CPU.
    pub device_notice: Option<String>,
    train_loader: Loader,
    val: Option<data::Dataset>,
    steps_per_epoch: u64,
    total_steps: u64,
}

/// Names of the constant-budget (drop-and-grow) presets.
const CONSTANT_BUDGET: &[&str] = &["set", "set-orig", "rigl", "rigl-itop", "dst-ee"];

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
        let (_, device_notice) = req.resolve()?;
        let data_dir = cfg
            .data_dir
            .clone()
            .or_else(|| std::env::var_os(data::DATA_DIR_ENV).map(PathBuf::from));
        let mut data = data::load(cfg.data, data_dir.as_deref(), cfg.seed)?;
        if let Some(n) = cfg.train_subset {
            data.train.truncate(n);
        }
        if let Some(n) = cfg.eval_subset {
            data.test.truncate(n);
        }
        let val = (cfg.val_split > 0).then(|| data.train.split_off(cfg.val_split));
        if data.train.len() < cfg.batch_size {
            bail!(
                "the training split has {} examples, fewer than one batch of {}",
                data.train.len(),
                cfg.batch_size
            );
        }
        let train_loader = Loader::train(&data, cfg.batch_size, cfg.seed);
        let steps_per_epoch = train_loader.train_batches() as u64;
        let total_steps = cfg.steps.unwrap_or(cfg.epochs * steps_per_epoch);
        let (c, h, w) = data.train.chw;
        let mut model = model::build(
            &cfg.model,
            [c, h, w],
            data.train.classes,
            cfg.width_mult,
            cfg.seed,
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
            distribution: cfg.distribution.as_deref().map(distribution).transpose()?,
        };
        let p = preset(&cfg.method, &ctx)?;
        let mut budget = None;
        let mut fired = Vec::new();
        if cfg.method != "dense" {
            let b = layer_budget(&layers, p.init.sparsity, &p.init.distribution, &[])?;
            let masks = random_masks(&b, cfg.seed);
            for (param, m) in model.sparsifiable_mut().into_iter().zip(masks) {
                let m = m.reshape(param.value.shape())?;
                m.apply(param.value.as_mut_slice())?;
                fired.push(m.clone());
                param.mask = Some(m);
            }
            if CONSTANT_BUDGET.contains(&cfg.method.as_str()) {
                budget = Some(b);
            }
        }
        if cfg.method != "dense" && cfg.method != "optg" {
            let probe = |step| StepInfo {
                step,
                epoch: step / steps_per_epoch,
                steps_per_epoch,
                total_steps,
            };
            let updates = (0..total_steps)
                .filter(|&s| p.method.is_update_step(&probe(s)))
                .count();
            if updates < 5 {
                eprintln!(
                    "warning: `{}` updates its masks only {updates} times in {total_steps} steps (its ΔT is sized for \
                     ~100k-step runs); pass --update-interval to scale it to this run",
                    cfg.method
                );
            }
        }
        let agc = if cfg.agc {
            Some(Agc::new(
                AgcConfig::default(),
                model.params().iter().map(|p| p.value.to_vec()).collect(),
            )?)
        } else {
            None
        };
        Ok(Trainer {
            cfg,
            model,
            method: p.method,
            agc,
            data,
            step: 0,
            epoch: 0,
            best_test_accuracy: 0.0,
            fired,
            budget,
            dropped_grown: (0, 0),
            device_notice,
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
            policy: ExecPolicy {
                conv_sparse_below: self.cfg.conv_sparse_below,
                linear_sparse_below: self.cfg.linear_sparse_below,
            },
        }
    }

    fn input(&self, b: &Batch) -> Result<Tensor> {
        let (c, h, w) = self.data.train.chw;
        Ok(Tensor::cpu(&[b.n, c, h, w], b.x.clone())?)
    }

    /// Forward + backward on a batch; returns (loss, correct).
    fn forward_backward(&mut self, b: &Batch, ctx: &ExecCtx) -> Result<(f64, usize)> {
        let x = self.input(b)?;
        let logits = self.model.forward(x, ctx)?;
        let ce = softmax_cross_entropy(&logits, &b.y, self.cfg.label_smoothing as f32)?;
        let correct = topk_correct(&logits, &b.y, 1)?;
        self.model.backward(ce.dlogits, ctx)?;
        Ok((ce.loss, correct))
    }

    /// Swaps every parameter's values with `values` (AGC snapshot passes).
    fn swap_values(&mut self, values: &mut [Vec<f32>]) {
        for (p, v) in self.model.params_mut().into_iter().zip(values.iter_mut()) {
            let cur = p.value.to_vec();
            p.value.as_mut_slice().copy_from_slice(v);
            *v = cur;
        }
    }

    fn snapshot_ctx(&self) -> ExecCtx {
        ExecCtx {
            force_dense: true,
            dense_grad: true,
            freeze_running_stats: true,
            ..self.exec(true, true)
        }
    }

    /// AGC pass A over the training set: τ̂, μ̃ and the new snapshot.
    fn agc_pass_a(&mut self) -> Result<()> {
        let Some(agc) = &self.agc else { return Ok(()) };
        let mut snapshot: Vec<Vec<f32>> = agc.snapshot().to_vec();
        let current: Vec<Vec<f32>> = self
            .model
            .params()
            .iter()
            .map(|p| p.value.to_vec())
            .collect();
        let mut sums: Vec<Vec<f32>> = current.iter().map(|v| vec![0f32; v.len()]).collect();
        let (mut losses, mut snap_losses) = (Vec::new(), Vec::new());
        let ctx = ExecCtx {
            freeze_running_stats: true,
            dense_grad: true,
            ..self.exec(true, true)
        };
        // A different augmentation stream than pass B (epoch offset).
        let rx = self.train_loader.epoch(self.epoch + (1 << 40), 0);
        for b in rx {
            let (l, _) = self.forward_backward(&b, &ctx)?;
            losses.push(l);
            for (s, p) in sums.iter_mut().zip(self.model.params()) {
                s.iter_mut()
                    .zip(p.grad.as_slice())
                    .for_each(|(a, g)| *a += g);
            }
            self.swap_values(&mut snapshot);
            let x = self.input(&b)?;
            let logits = self.model.forward(
                x,
                &ExecCtx {
                    train: true,
                    ..self.snapshot_ctx()
                },
            )?;
            snap_losses
                .push(softmax_cross_entropy(&logits, &b.y, self.cfg.label_smoothing as f32)?.loss);
            self.swap_values(&mut snapshot);
        }
        let k = losses.len();
        self.agc.as_mut().expect("checked").finish_pass_a(
            &losses,
            &snap_losses,
            sums,
            k,
            current,
        )?;
        Ok(())
    }

    /// One optimizer step on a batch. Returns (loss, correct).
    pub fn train_step(&mut self, b: &Batch) -> Result<(f64, usize)> {
        let info = self.info();
        let dense_grad = self.method.needs_dense_grad(&info);
        let ctx = self.exec(true, dense_grad);
        let (loss, correct) = self.forward_backward(b, &ctx)?;
        // AGC: corrected gradients for the optimizer; the method keeps the raw ones.
        let corrected: Option<Vec<Vec<f32>>> = if let Some(agc) = &self.agc {
            let raw: Vec<Vec<f32>> = self
                .model
                .params()
                .iter()
                .map(|p| p.grad.to_vec())
                .collect();
            let mut snapshot = agc.snapshot().to_vec();
            self.swap_values(&mut snapshot);
            let sctx = self.snapshot_ctx();
            self.forward_backward(b, &sctx)?;
            let snap_grads: Vec<Vec<f32>> = self
                .model
                .params()
                .iter()
                .map(|p| p.grad.to_vec())
                .collect();
            self.swap_values(&mut snapshot);
            let agc = self.agc.as_ref().expect("checked");
            let mut out = raw.clone();
            for (i, (g, gs)) in out.iter_mut().zip(&snap_grads).enumerate() {
                agc.correct(i, g, gs)?;
            }
            for (p, g) in self.model.params_mut().into_iter().zip(raw) {
                p.grad.as_mut_slice().copy_from_slice(&g);
            }
            Some(out)
        } else {
            None
        };
        {
            let mut params = self.model.sparsifiable_mut();
            let mut layers = layer_views(&mut params);
            self.method.on_gradients(&info, &mut layers)?;
        }
        if !self.method.skip_optimizer_step(&info) {
            let sgd = SgdConfig {
                lr: self.lr_at(self.step) as f32,
                momentum: self.cfg.momentum as f32,
                nesterov: self.cfg.nesterov,
                weight_decay: self.cfg.weight_decay as f32,
            };
            let dense_values = self.method.keeps_dense_values();
            for (i, p) in self.model.params_mut().into_iter().enumerate() {
                let mut g = match &corrected {
                    Some(c) => Tensor::cpu(p.grad.shape(), c[i].clone())?,
                    None => p.grad.clone(),
                };
                let mask = if dense_values {
                    // OptG: the loss gradient reaches active weights only; stored values of
                    // pruned weights keep decaying.
                    if let Some(m) = &p.mask {
                        m.apply(g.as_mut_slice())?;
                    }
                    None
                } else {
                    p.mask.as_ref()
                };
                let Param {
                    value, momentum, ..
                } = p;
                sgd_step(value, &g, momentum, mask, &sgd)?;
            }
        }
        if self.method.is_update_step(&info) {
            let report = {
                let mut params = self.model.sparsifiable_mut();
                let mut layers = layer_views(&mut params);
                self.method.update(&info, &mut layers)?
            };
            self.after_mask_change(report.dropped(), report.grown())?;
        }
        {
            let mut params = self.model.sparsifiable_mut();
            let mut layers = layer_views(&mut params);
            self.method.on_step_end(&info, &mut layers)?;
        }
        self.step += 1;
        Ok((loss, correct))
    }

    fn after_mask_change(&mut self, dropped: usize, grown: usize) -> Result<()> {
        self.dropped_grown.0 += dropped;
        self.dropped_grown.1 += grown;
        let fired = &mut self.fired;
        let budget = &self.budget;
        let mut params = self.model.sparsifiable_mut();
        for (i, p) in params.iter_mut().enumerate() {
            p.mask_version += 1;
            if let (Some(m), Some(f)) = (&p.mask, fired.get_mut(i)) {
                *f = f.or(m)?;
            }
        }
        if let Some(b) = budget {
            b.check(
                params
                    .iter()
                    .map(|p| (p.name.as_str(), p.mask.as_ref().expect("sparse run"))),
            )
            .context("mask update broke the exact nonzero budget")?;
        }
        Ok(())
    }

    /// Evaluates on a split: (mean loss, accuracy).
    pub fn evaluate(&mut self, split: &data::Dataset) -> Result<(f64, f64)> {
        let loader = Loader::eval(&self.data, split, 256);
        let ctx = self.exec(false, false);
        let (mut loss, mut correct) = (0f64, 0usize);
        for i in 0..loader.eval_batches() {
            let b = loader.eval_batch(i);
            let logits = self.model.forward(self.input(&b)?, &ctx)?;
            loss += softmax_cross_entropy(&logits, &b.y, 0.0)?.loss * b.n as f64;
            correct += topk_correct(&logits, &b.y, 1)?;
        }
        let n = split.len().max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }

    /// Test-set evaluation.
    pub fn evaluate_test(&mut self) -> Result<(f64, f64)> {
        let test = self.data.test.clone();
        self.evaluate(&test)
    }

    /// Runs one epoch (or what is left of it within the run); returns its metrics.
    pub fn run_epoch(&mut self) -> Result<EpochMetrics> {
        let start = Instant::now();
        let info = self.info();
        let epoch_report = {
            let mut params = self.model.sparsifiable_mut();
            let mut layers = layer_views(&mut params);
            self.method.on_epoch_start(&info, &mut layers)?
        };
        if let Some(r) = epoch_report {
            self.after_mask_change(r.dropped(), r.grown())?;
        }
        if self.agc.is_some() {
            self.agc_pass_a()?;
        }
        let from = (self.step % self.steps_per_epoch) as usize;
        let todo = (self.steps_per_epoch - from as u64).min(self.total_steps - self.step);
        let rx = self.train_loader.epoch(self.epoch, from);
        let bar = progress_bar(todo, self.epoch);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for (i, b) in rx.into_iter().take(todo as usize).enumerate() {
            let (l, c) = self.train_step(&b)?;
            if !l.is_finite() {
                bail!(
                    "training diverged: loss is {l} at step {} (lower --lr?)",
                    self.step
                );
            }
            loss_sum += l * b.n as f64;
            correct += c;
            seen += b.n;
            let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            match &bar {
                Some(pb) => {
                    pb.set_position(i as u64 + 1);
                    pb.set_message(format!(
                        "loss {:.4} | {:.0} img/s",
                        loss_sum / seen as f64,
                        rate
                    ));
                }
                None if todo >= 10 && (i + 1) % (todo as usize / 5).max(1) == 0 => {
                    eprintln!(
                        "epoch {} step {}/{}: loss {:.4}, {:.0} img/s",
                        self.epoch + 1,
                        i + 1,
                        todo,
                        loss_sum / seen as f64,
                        rate
                    );
                }
                None => {}
            }
        }
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        let train_secs = start.elapsed().as_secs_f64();
        if self.step.is_multiple_of(self.steps_per_epoch) || self.step >= self.total_steps {
            self.epoch += 1;
        }
        let (test_loss, test_acc) = self.evaluate_test()?;
        let val_acc = match self.val.clone() {
            Some(v) => Some(self.evaluate(&v)?.1),
            None => None,
        };
        self.best_test_accuracy = self.best_test_accuracy.max(test_acc);
        let (dropped, grown) = std::mem::take(&mut self.dropped_grown);
        Ok(EpochMetrics {
            epoch: self.epoch,
            step: self.step,
            lr: self.lr_at(self.step.saturating_sub(1)),
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss,
            test_accuracy: test_acc,
            val_accuracy: val_acc,
            global_density: self.global_density(),
            layers: self.layer_metrics(),
            dropped,
            grown,
            coverage: self.coverage(),
            epoch_seconds: start.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
        })
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
                let nnz = p.mask.as_ref().map_or(numel, |m| m.count_ones());
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

    /// Fraction of sparsifiable weights ever active.
    pub fn coverage(&self) -> f64 {
        if self.fired.is_empty() {
            return 1.0;
        }
        let on: usize = self.fired.iter().map(|m| m.count_ones()).sum();
        on as f64 / self.fired.iter().map(|m| m.len()).sum::<usize>().max(1) as f64
    }

    /// Trains to the end, writing outputs to `out` when given.
    pub fn run(&mut self, out: Option<&Path>) -> Result<crate::report::Summary> {
        let start = Instant::now();
        let mut history = match out {
            Some(dir) => crate::report::read_history(dir)?,
            None => Vec::new(),
        };
        if let Some(n) = &self.device_notice {
            eprintln!("{n}");
        }
        while !self.finished() {
            let m = self.run_epoch()?;
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
            let is_best = (m.test_accuracy - self.best_test_accuracy).abs() < f64::EPSILON;
            history.push(m.clone());
            if let Some(dir) = out {
                crate::report::append_metrics(dir, &m)?;
                crate::checkpoint::save(self, &dir.join("last.safetensors"))?;
                if is_best {
                    crate::checkpoint::save(self, &dir.join("best.safetensors"))?;
                }
                crate::report::write_plots(dir, &history)?;
            }
        }
        let summary = crate::report::Summary::new(self, &history, start.elapsed().as_secs_f64());
        if let Some(dir) = out {
            crate::report::write_summary(dir, &summary)?;
        }
        Ok(summary)
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

/// Layer views over the sparsifiable parameters (masked runs only).
pub fn layer_views<'a>(params: &'a mut [&mut Param]) -> Vec<Layer<'a>> {
    params
        .iter_mut()
        .filter_map(|p| {
            let Param {
                name,
                value,
                grad,
                momentum,
                mask,
                ..
            } = &mut **p;
            mask.as_mut().map(|mask| Layer {
                name,
                weight: value,
                mask,
                grad,
                momentum,
            })
        })
        .collect()
}

fn progress_bar(len: u64, epoch: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix((epoch + 1).to_string());
    Some(pb)
}
