//! OptG (spec §7): supermask scores `S_l` (initialised to 0) trained by SGD on the
//! straight-through gradient `∂L/∂S = G ⊙ W` (dense `G`, stored dense `W`), with a score
//! learning rate that follows the sigmoid sparsity ramp; once per epoch the mask is rebuilt
//! from a global score threshold with per-layer counts. Pruned weights keep their stored
//! values (and can return): [`SparseMethod::keeps_dense_values`] is true.
//!
//! Two ramps ([`OptgRamp`]): the authors' (`P·σ(e)` per epoch, ties with the threshold
//! kept, rebuilt every epoch to the end, so a run ends short of `P`), and ours, the default:
//! a sigmoid of the same steepness normalised to run from 0 to exactly `P`, rebuilt with
//! exactly `K` weights at ramp points (every epoch, or every tenth of the run when it has
//! fewer than ten epochs), and frozen for the last `freeze` of training so weights revived
//! by the last rebuild can recover.

use sparse_core::{Order, Schedule};
use sparse_kernels::ops::mask_update::{at_least, min_at, select_global};
use sparse_kernels::ops::optim::score_step;
use sparse_kernels::Tensor;

use crate::error::{AlgoError, Result};
use crate::method::{
    check_len, check_per_layer, refs, AlgoState, Layer, LayerReport, SparseMethod, StepInfo,
    UpdateReport,
};

/// OptG configuration (OptG CIFAR configs).
#[derive(Debug, Clone, PartialEq)]
pub struct OptgConfig {
    /// Final global sparsity `P`.
    pub target: f64,
    /// Sigmoid steepness β (1).
    pub beta: f64,
    /// Total epochs `E`.
    pub epochs: u64,
    /// Base learning rate of the weights (the score lr follows it).
    pub lr: f64,
    /// Linear warm-up epochs `W` (5).
    pub warmup_epochs: u64,
    /// Score momentum (0.9, shared with the weights in OptG's single optimizer).
    pub momentum: f64,
    /// The sparsity ramp.
    pub ramp: OptgRamp,
}

/// OptG's sparsity ramp (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptgRamp {
    /// The authors': `P·σ(e)` at every epoch start, ties kept.
    Paper,
    /// Ours: from 0 to exactly `P`, exactly `K` kept, the mask frozen for the last `freeze`
    /// fraction of the run (0.2).
    Exact {
        /// Fraction of the run, at its end, with a frozen mask.
        freeze: f64,
    },
}

/// Where the exact ramp rebuilds: every `every` steps up to step `last` (1-based), where
/// the sparsity reaches `P`; `epochs` is the ramp's length in epochs (its steepness).
#[derive(Debug, Clone, Copy)]
struct RampPoints {
    every: u64,
    last: u64,
    epochs: f64,
}

fn ramp_points(freeze: f64, t: &StepInfo) -> RampPoints {
    let total = t.total_steps.max(1);
    let spe = t.steps_per_epoch.max(1);
    let end = ((total as f64 * (1.0 - freeze)).floor() as u64).max(1);
    let every = if total.div_ceil(spe) >= 10 {
        spe
    } else {
        (total / 10).max(1)
    }
    .min(end);
    let last = end / every * every;
    RampPoints {
        every,
        last,
        epochs: last as f64 / spe as f64,
    }
}

/// OptG.
#[derive(Debug, Clone)]
pub struct Optg {
    cfg: OptgConfig,
    scores: Vec<Tensor>,
    score_momentum: Vec<Tensor>,
}

impl Optg {
    /// Validates the configuration.
    pub fn new(cfg: OptgConfig) -> Result<Self> {
        sparse_core::error::check_sparsity("OptG target", cfg.target)?;
        let freeze_ok = match cfg.ramp {
            OptgRamp::Paper => true,
            OptgRamp::Exact { freeze } => (0.0..1.0).contains(&freeze),
        };
        if cfg.epochs == 0
            || !freeze_ok
            || cfg.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || cfg.beta.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || !(0.0..1.0).contains(&cfg.momentum)
        {
            return Err(AlgoError::Config(format!("invalid OptG config {cfg:?}")));
        }
        Ok(Optg {
            cfg,
            scores: Vec::new(),
            score_momentum: Vec::new(),
        })
    }

    /// Weight learning rate of epoch `e`: linear warm-up, then `½·lr·(1 + cos(π e / E))`.
    pub fn weight_lr(&self, e: u64) -> f64 {
        let c = &self.cfg;
        if e < c.warmup_epochs {
            c.lr * (e + 1) as f64 / c.warmup_epochs as f64
        } else {
            0.5 * c.lr * (1.0 + (std::f64::consts::PI * e as f64 / c.epochs as f64).cos())
        }
    }

    fn sigma(&self, e: u64) -> f64 {
        Schedule::OptgSigmoid {
            target: 1.0,
            beta: self.cfg.beta,
            epochs: self.cfg.epochs,
        }
        .at(e)
    }

    /// Target sparsity of epoch `e` on the authors' ramp: `P · σ(e)`.
    pub fn target_sparsity(&self, e: u64) -> f64 {
        self.cfg.target * self.sigma(e)
    }

    /// The exact ramp's progress after 1-based step `steps`: a sigmoid of steepness β per
    /// epoch over the ramp, normalised to 0 at the start and 1 at its last point.
    fn exact_progress(&self, r: RampPoints, steps: u64) -> f64 {
        let x = (steps.min(r.last) as f64 / r.last as f64) - 0.5;
        let k = self.cfg.beta * r.epochs;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (lo, hi) = (sig(-k / 2.0), sig(k / 2.0));
        if hi - lo < 1e-12 {
            return x + 0.5;
        }
        ((sig(k * x) - lo) / (hi - lo)).clamp(0.0, 1.0)
    }

    /// Target sparsity after 1-based step `steps` of a run described by `t` (the exact
    /// ramp; the authors' ramp by epoch otherwise).
    pub fn sparsity_at(&self, t: &StepInfo, steps: u64) -> f64 {
        match self.cfg.ramp {
            OptgRamp::Paper => self.target_sparsity(t.epoch),
            OptgRamp::Exact { freeze } => {
                self.cfg.target * self.exact_progress(ramp_points(freeze, t), steps)
            }
        }
    }

    /// The score learning rate's ramp factor (`σ(e)` on the authors' ramp).
    fn score_ramp(&self, t: &StepInfo) -> f64 {
        match self.cfg.ramp {
            OptgRamp::Paper => self.sigma(t.epoch),
            OptgRamp::Exact { freeze } => self.exact_progress(ramp_points(freeze, t), t.step + 1),
        }
    }

    /// The scores of layer `l` (a host copy).
    pub fn scores(&self, l: usize) -> Result<Option<Vec<f32>>> {
        Ok(self.scores.get(l).map(|v| v.to_host()).transpose()?)
    }

    fn ensure_state(&mut self, layers: &[Layer]) -> Result<()> {
        if self.scores.len() != layers.len() {
            self.scores = layers
                .iter()
                .map(|l| Tensor::zeros(l.mask.shape(), l.weight.device()))
                .collect::<std::result::Result<_, _>>()?;
            self.score_momentum = self.scores.clone();
        }
        for ((s, b), l) in self
            .scores
            .iter_mut()
            .zip(&mut self.score_momentum)
            .zip(layers)
        {
            check_len("scores", s.numel(), l.mask.len())?;
            check_len("score momentum", b.numel(), l.mask.len())?;
            if s.shape() != l.mask.shape() || s.device() != l.weight.device() {
                let (shape, dev) = (l.mask.shape(), l.weight.device());
                *s = s.clone().reshape(shape)?.to_device(dev)?;
                *b = b.clone().reshape(shape)?.to_device(dev)?;
            }
        }
        Ok(())
    }

    /// Sets the scores directly (tests, warm starts); score momentum restarts at 0.
    pub fn set_scores(&mut self, scores: Vec<Vec<f32>>) -> Result<()> {
        self.score_momentum = scores
            .iter()
            .map(|s| Tensor::zeros(&[s.len()], sparse_kernels::Device::Cpu))
            .collect::<std::result::Result<_, _>>()?;
        self.scores = scores
            .into_iter()
            .map(|s| Tensor::cpu(&[s.len()], s))
            .collect::<std::result::Result<_, _>>()?;
        Ok(())
    }

    /// Rebuilds the masks for sparsity `p`: `θ` = the K-th largest score over all layers
    /// (`K = floor(N(1 − p))`), and each layer keeps its scores `>= θ` (ties kept; on the
    /// exact ramp, exactly the `K` largest, ties broken by position).
    pub fn rebuild_masks(&mut self, layers: &mut [Layer], p: f64) -> Result<UpdateReport> {
        self.ensure_state(layers)?;
        let n: usize = self.scores.iter().map(|s| s.numel()).sum();
        let k = ((n as f64 * (1.0 - p)).floor() as usize).clamp(1, n);
        let all = vec![None; self.scores.len()];
        let top = select_global(&refs(&self.scores), &all, k, Order::Largest)?;
        let mut theta = f32::INFINITY;
        for (s, t) in self.scores.iter().zip(&top) {
            theta = theta.min(min_at(s, t)?);
        }
        let exact = matches!(self.cfg.ramp, OptgRamp::Exact { .. });
        let mut report = UpdateReport::default();
        for ((l, s), t) in layers.iter_mut().zip(&self.scores).zip(top) {
            let before = l.mask.mask().clone();
            let kept = if exact {
                t.reshape(l.mask.shape())?
            } else {
                at_least(s, theta)?
            };
            l.mask.set(kept)?;
            let after = l.mask.mask();
            report.layers.push(LayerReport {
                name: l.name.to_string(),
                dropped: before.and_not(after)?.count_ones(),
                grown: after.and_not(&before)?.count_ones(),
                nnz: after.count_ones(),
            });
        }
        Ok(report)
    }
}

impl SparseMethod for Optg {
    fn name(&self) -> &str {
        "optg"
    }

    fn is_update_step(&self, t: &StepInfo) -> bool {
        match self.cfg.ramp {
            OptgRamp::Paper => false,
            OptgRamp::Exact { freeze } => {
                let r = ramp_points(freeze, t);
                let steps = t.step + 1;
                steps <= r.last && steps.is_multiple_of(r.every)
            }
        }
    }

    fn needs_dense_grad(&self, _: &StepInfo) -> bool {
        true
    }

    fn keeps_dense_values(&self) -> bool {
        true
    }

    fn on_gradients(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<()> {
        self.ensure_state(layers)?;
        let lr = (self.weight_lr(t.epoch) * self.score_ramp(t)) as f32;
        let mu = self.cfg.momentum as f32;
        for ((l, s), b) in layers
            .iter()
            .zip(&mut self.scores)
            .zip(&mut self.score_momentum)
        {
            score_step(s, b, l.grad, l.weight, mu, lr)?;
        }
        Ok(())
    }

    fn update(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport> {
        let p = self.sparsity_at(t, t.step + 1);
        self.rebuild_masks(layers, p)
    }

    fn on_epoch_start(
        &mut self,
        t: &StepInfo,
        layers: &mut [Layer],
    ) -> Result<Option<UpdateReport>> {
        if matches!(self.cfg.ramp, OptgRamp::Exact { .. }) {
            return Ok(None);
        }
        let p = self.target_sparsity(t.epoch);
        self.rebuild_masks(layers, p).map(Some)
    }

    fn state(&self) -> Result<AlgoState> {
        let mut s = AlgoState::default();
        for (l, (sc, m)) in self.scores.iter().zip(&self.score_momentum).enumerate() {
            s.tensors.insert(format!("scores.{l}"), sc.to_host()?);
            s.tensors
                .insert(format!("score_momentum.{l}"), m.to_host()?);
        }
        Ok(s)
    }

    fn check_state(&self, layers: &[sparse_core::LayerShape]) -> Result<()> {
        check_per_layer("scores", self.scores.iter().map(|t| t.numel()), layers)?;
        check_per_layer(
            "score momentum",
            self.score_momentum.iter().map(|t| t.numel()),
            layers,
        )
    }

    fn load_state(&mut self, s: &AlgoState) -> Result<()> {
        self.scores.clear();
        self.score_momentum.clear();
        for l in 0.. {
            let Some(sc) = s.tensors.get(&format!("scores.{l}")) else {
                break;
            };
            let m = s.tensor(&format!("score_momentum.{l}"))?;
            check_len("score momentum", m.len(), sc.len())?;
            // Restored on the host; `ensure_state` checks them against the layers and moves
            // them to the layers' device.
            self.scores.push(Tensor::cpu(&[sc.len()], sc.clone())?);
            self.score_momentum
                .push(Tensor::cpu(&[m.len()], m.clone())?);
        }
        Ok(())
    }
}
