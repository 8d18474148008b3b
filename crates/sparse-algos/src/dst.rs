//! Dynamic sparse training with a constant per-layer budget: SET (§1), RigL (§2),
//! RigL-ITOP (§2b) and DST-EE (§3) are one method, [`DropGrow`], configured by a drop rule,
//! a grow rule and a schedule. Every update calls `sparse-core`'s `drop_and_grow` (exact
//! counts, §0.2 ties), so each layer's nonzero count never changes.

use rand_core::RngCore;
use sparse_core::{standard_normal, stream_rng, Order, Schedule};
use sparse_kernels::ops::activation::add_assign;
use sparse_kernels::ops::mask_update::{
    abs_scores, accumulate_activity, exploration_scores, nonneg_within, select_mask, update_layer,
    Exploration, GrowInit,
};
use sparse_kernels::{IndexTensor, Tensor};

use crate::error::{AlgoError, Result};
use crate::method::{
    check_len, check_per_layer, AlgoState, Layer, LayerReport, SparseMethod, StepInfo, UpdateReport,
};

/// How `n = f · A` is turned into a count (spec §0.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// `floor` (RIGL-TF; project default).
    Floor,
    /// `ceil` (ITOP / GraNet).
    Ceil,
    /// Nearest (JAXP).
    Round,
}

impl Rounding {
    /// `x` rounded to a count.
    pub fn apply(self, x: f64) -> usize {
        (match self {
            Rounding::Floor => x.floor(),
            Rounding::Ceil => x.ceil(),
            Rounding::Round => x.round(),
        }) as usize
    }
}

/// Which active weights are dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DropRule {
    /// The `n` smallest `|w|` (RigL, RIGL-TF/JAXP SET).
    Magnitude,
    /// Official SET: the fraction `f` of positive weights closest to zero and the fraction
    /// `f` of negative weights closest to zero (zero counts as positive).
    SignSplit,
}

/// How grow candidates are ranked (largest first, among positions not kept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrowRule {
    /// Uniformly random (SET).
    Random,
    /// `|G|` of the current mini-batch (RigL).
    Gradient,
    /// DST-EE acquisition `|G| + c·sqrt(ln max(t,2) / (N_i + eps))` with `N_i` the number of
    /// iterations (or updates) position `i` was active. **[UNVERIFIED]** reconstruction.
    Explore {
        /// Exploration coefficient `c`.
        c: f64,
        /// `eps` in the denominator.
        eps: f64,
        /// Project extension (default off): divide `|G|` by the layer's `max |G|`.
        normalize: bool,
        /// Count iterations (`true`, default) or mask updates (`false`).
        per_iteration: bool,
    },
}

/// Initial value of newly grown weights (their momentum is always zeroed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrowInitRule {
    /// 0 (RigL, JAXP, ITOP, Keras SET).
    Zero,
    /// `N(0, std²)` from a seeded stream (official SET: `randn/10`, std 0.1).
    Normal {
        /// Standard deviation.
        std: f32,
    },
}

/// Configuration of a [`DropGrow`] method.
#[derive(Debug, Clone, PartialEq)]
pub struct DstConfig {
    /// Preset name reported by the method.
    pub name: String,
    /// Drop fraction `f(t)`.
    pub drop_fraction: Schedule,
    /// Updates happen at `first, first + interval, …` up to `end` (inclusive).
    pub interval: u64,
    /// First update step.
    pub first: u64,
    /// Last step at which an update may happen (`None`: never stops, ITOP).
    pub end: Option<u64>,
    /// Count rounding (§0.8).
    pub rounding: Rounding,
    /// Skip the optimizer on update steps (§0.6).
    pub skip_step_on_update: bool,
    /// Drop rule.
    pub drop: DropRule,
    /// Grow rule.
    pub grow: GrowRule,
    /// New-weight initialisation.
    pub grow_init: GrowInitRule,
    /// Optional RigL drop noise σ (spec: 1e-5; off by default for determinism tests).
    pub drop_noise: Option<f32>,
    /// Seed of random growth, noise and initialisation.
    pub seed: u64,
}

impl DstConfig {
    /// Checks the schedule and counts.
    pub fn validate(&self) -> Result<()> {
        self.drop_fraction.validate()?;
        if self.interval == 0 {
            return Err(AlgoError::Config(format!(
                "{}: update interval must be >= 1",
                self.name
            )));
        }
        if let GrowRule::Explore { c, eps, .. } = self.grow {
            if !(c.is_finite() && c >= 0.0 && eps.is_finite() && eps > 0.0) {
                return Err(AlgoError::Config(format!(
                    "DST-EE needs c >= 0 and eps > 0, got c={c}, eps={eps}"
                )));
            }
        }
        Ok(())
    }
}

/// SET / RigL / RigL-ITOP / DST-EE.
#[derive(Debug, Clone)]
pub struct DropGrow {
    cfg: DstConfig,
    /// Per layer: DST-EE activity counters `N_i` (empty unless `GrowRule::Explore`), on the
    /// layer's device.
    counters: Vec<IndexTensor>,
    updates: u64,
}

impl DropGrow {
    /// A method from a validated config.
    pub fn new(cfg: DstConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(DropGrow {
            cfg,
            counters: Vec::new(),
            updates: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DstConfig {
        &self.cfg
    }

    /// DST-EE counters of layer `l` (a host copy).
    pub fn counters(&self, l: usize) -> Result<Option<Vec<u32>>> {
        self.counters
            .get(l)
            .map(|c| c.to_host())
            .transpose()
            .map_err(Into::into)
    }

    fn ensure_state(&mut self, layers: &[Layer]) -> Result<()> {
        if !matches!(self.cfg.grow, GrowRule::Explore { .. }) {
            return Ok(());
        }
        if self.counters.is_empty() {
            self.counters = layers
                .iter()
                .map(|l| IndexTensor::zeros(&[l.mask.len()], l.weight.device()))
                .collect::<std::result::Result<_, _>>()?;
        }
        check_len("activity counters", self.counters.len(), layers.len())?;
        for (c, l) in self.counters.iter_mut().zip(layers) {
            check_len("activity", c.numel(), l.mask.len())?;
            if c.device() != l.weight.device() {
                *c = c.clone().to_device(l.weight.device())?;
            }
        }
        Ok(())
    }

    fn seed_at(&self, t: u64) -> u64 {
        self.cfg.seed ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn rng(&self, t: u64, layer: usize, purpose: u64) -> rand_chacha::ChaCha8Rng {
        stream_rng(self.seed_at(t), stream(layer, purpose))
    }

    fn grow_scores(&self, t: u64, l: usize, layer: &Layer) -> Result<Tensor> {
        let dev = layer.weight.device();
        Ok(match self.cfg.grow {
            GrowRule::Random => {
                let mut rng = self.rng(t, l, 1);
                let v = (0..layer.mask.len())
                    .map(|_| (rng.next_u32() >> 8) as f32)
                    .collect();
                Tensor::from_vec(layer.mask.shape(), v, dev)?
            }
            GrowRule::Gradient => abs_scores(layer.grad)?,
            GrowRule::Explore {
                c,
                eps,
                normalize,
                per_iteration,
            } => {
                let tt = if per_iteration { t } else { self.updates };
                let bonus = Exploration {
                    c,
                    eps,
                    ln_t: (tt.max(2) as f64).ln(),
                    normalize,
                };
                exploration_scores(layer.grad, &self.counters[l], &bonus)?
                    .reshape(layer.mask.shape())?
            }
        })
    }

    /// Drop scores whose `n` smallest active entries are exactly the SET sign-split drop set.
    fn sign_split_scores(layer: &Layer, f: f64, rounding: Rounding) -> Result<(Tensor, usize)> {
        let active = layer.mask.mask();
        let pos = nonneg_within(layer.weight, active)?;
        let neg = active.and_not(&pos)?;
        let (np, nn) = (
            rounding.apply(f * pos.count_ones() as f64),
            rounding.apply(f * neg.count_ones() as f64),
        );
        let dp = select_mask(layer.weight, np, Some(&pos), Order::Smallest)?;
        let dn = select_mask(layer.weight, nn, Some(&neg), Order::Largest)?;
        let drop = dp.or(&dn)?;
        let scores = (0..drop.len())
            .map(|i| if drop.get(i) { 0.0 } else { 1.0 })
            .collect();
        Ok((
            Tensor::from_vec(active.shape(), scores, layer.weight.device())?,
            np + nn,
        ))
    }
}

fn stream(layer: usize, purpose: u64) -> u64 {
    (layer as u64) << 8 | purpose
}

impl SparseMethod for DropGrow {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn is_update_step(&self, t: &StepInfo) -> bool {
        let s = t.step;
        s >= self.cfg.first
            && (s - self.cfg.first).is_multiple_of(self.cfg.interval)
            && self.cfg.end.is_none_or(|e| s <= e)
    }

    fn skip_optimizer_step(&self, t: &StepInfo) -> bool {
        self.cfg.skip_step_on_update && self.is_update_step(t)
    }

    fn needs_dense_grad(&self, t: &StepInfo) -> bool {
        !matches!(self.cfg.grow, GrowRule::Random) && self.is_update_step(t)
    }

    fn update(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport> {
        self.ensure_state(layers)?;
        let f = self.cfg.drop_fraction.at(t.step);
        let mut report = UpdateReport::default();
        #[allow(clippy::needless_range_loop)] // `layers[l]` is borrowed twice below
        for l in 0..layers.len() {
            let grow = self.grow_scores(t.step, l, &layers[l])?;
            let layer = &mut layers[l];
            let active = layer.mask.count_ones();
            let (drop, n) = match self.cfg.drop {
                DropRule::Magnitude => {
                    let mut d = abs_scores(layer.weight)?;
                    if let Some(sigma) = self.cfg.drop_noise {
                        // Drawn from the host stream (reproducible on every device), added
                        // on the layer's device.
                        let mut rng = self.rng(t.step, l, 2);
                        let noise = (0..d.numel())
                            .map(|_| sigma * standard_normal(&mut rng))
                            .collect();
                        let noise = Tensor::from_vec(d.shape(), noise, d.device())?;
                        add_assign(&mut d, &noise)?;
                    }
                    (d, self.cfg.rounding.apply(f * active as f64).min(active))
                }
                DropRule::SignSplit => Self::sign_split_scores(layer, f, self.cfg.rounding)?,
            };
            let init = match self.cfg.grow_init {
                GrowInitRule::Zero => GrowInit::Zero,
                GrowInitRule::Normal { std } => GrowInit::Normal {
                    std,
                    seed: self.seed_at(t.step),
                    stream: stream(l, 3),
                },
            };
            let dg = update_layer(
                layer.weight,
                layer.mask,
                &mut [&mut *layer.momentum],
                &drop,
                &grow,
                n,
                init,
            )?;
            if layer.mask.count_ones() != active {
                return Err(AlgoError::State(format!(
                    "drop-and-grow changed the budget of `{}`",
                    layer.name
                )));
            }
            report.layers.push(LayerReport {
                name: layer.name.to_string(),
                dropped: dg.dropped.len(),
                grown: dg.grown.len(),
                nnz: active,
            });
        }
        self.updates += 1;
        if let GrowRule::Explore {
            per_iteration: false,
            ..
        } = self.cfg.grow
        {
            for (c, layer) in self.counters.iter_mut().zip(layers.iter()) {
                accumulate_activity(c, layer.mask)?;
            }
        }
        Ok(report)
    }

    fn on_step_end(&mut self, _t: &StepInfo, layers: &mut [Layer]) -> Result<()> {
        self.ensure_state(layers)?;
        if let GrowRule::Explore {
            per_iteration: true,
            ..
        } = self.cfg.grow
        {
            for (c, layer) in self.counters.iter_mut().zip(layers.iter()) {
                accumulate_activity(c, layer.mask)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<AlgoState> {
        let mut s = AlgoState::default();
        s.scalars.insert("updates".into(), self.updates as f64);
        for (l, c) in self.counters.iter().enumerate() {
            s.counters.insert(format!("activity.{l}"), c.to_host()?);
        }
        Ok(s)
    }

    fn check_state(&self, layers: &[sparse_core::LayerShape]) -> Result<()> {
        check_per_layer("activity", self.counters.iter().map(|c| c.numel()), layers)
    }

    fn load_state(&mut self, s: &AlgoState) -> Result<()> {
        self.updates = s.scalar("updates")? as u64;
        self.counters.clear();
        if matches!(self.cfg.grow, GrowRule::Explore { .. }) {
            // Restored on the host; `ensure_state` checks them against the layers and moves
            // them to the layers' device.
            for l in 0.. {
                let Some(c) = s.counters.get(&format!("activity.{l}")) else {
                    break;
                };
                self.counters.push(IndexTensor::cpu(&[c.len()], c.clone())?);
            }
        }
        Ok(())
    }
}
