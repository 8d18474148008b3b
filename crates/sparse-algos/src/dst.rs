//! Dynamic sparse training with a constant per-layer budget: SET (§1), RigL (§2),
//! RigL-ITOP (§2b) and DST-EE (§3) are one method, [`DropGrow`], configured by a drop rule,
//! a grow rule and a schedule. Every update calls `sparse-core`'s `drop_and_grow` (exact
//! counts, §0.2 ties), so each layer's nonzero count never changes.

use rand_core::RngCore;
use sparse_core::{select, stream_rng, Candidates, Mask, Order, Parallelism, Schedule};
use sparse_kernels::ops::mask_update::{accumulate_activity, update_layer};

use crate::error::{AlgoError, Result};
use crate::method::{
    check_len, AlgoState, Layer, LayerReport, SparseMethod, StepInfo, UpdateReport,
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
pub enum GrowInit {
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
    pub grow_init: GrowInit,
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
    /// Per layer: DST-EE activity counters `N_i` (empty unless `GrowRule::Explore`).
    counters: Vec<Vec<u32>>,
    /// Per layer: ITOP fired mask (ever active), for coverage.
    fired: Vec<Mask>,
    updates: u64,
}

impl DropGrow {
    /// A method from a validated config.
    pub fn new(cfg: DstConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(DropGrow {
            cfg,
            counters: Vec::new(),
            fired: Vec::new(),
            updates: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DstConfig {
        &self.cfg
    }

    /// Fraction of sparsifiable weights ever active so far (ITOP `R_s`, DST-EE coverage).
    pub fn coverage(&self) -> f64 {
        let (on, n): (usize, usize) = self
            .fired
            .iter()
            .fold((0, 0), |(a, b), m| (a + m.count_ones(), b + m.len()));
        if n == 0 {
            0.0
        } else {
            on as f64 / n as f64
        }
    }

    /// DST-EE counters of layer `l`.
    pub fn counters(&self, l: usize) -> Option<&[u32]> {
        self.counters.get(l).map(|v| v.as_slice())
    }

    fn ensure_state(&mut self, layers: &[Layer]) {
        if self.fired.len() != layers.len() {
            self.fired = layers.iter().map(|l| l.mask.clone()).collect();
        }
        if matches!(self.cfg.grow, GrowRule::Explore { .. }) && self.counters.len() != layers.len()
        {
            self.counters = layers.iter().map(|l| vec![0u32; l.mask.len()]).collect();
        }
    }

    fn rng(&self, t: u64, layer: usize, purpose: u64) -> rand_chacha::ChaCha8Rng {
        stream_rng(
            self.cfg.seed ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            (layer as u64) << 8 | purpose,
        )
    }

    fn grow_scores(&self, t: u64, l: usize, layer: &Layer) -> Vec<f32> {
        match self.cfg.grow {
            GrowRule::Random => {
                let mut rng = self.rng(t, l, 1);
                (0..layer.mask.len())
                    .map(|_| (rng.next_u32() >> 8) as f32)
                    .collect()
            }
            GrowRule::Gradient => layer.grad.as_slice().iter().map(|g| g.abs()).collect(),
            GrowRule::Explore {
                c,
                eps,
                normalize,
                per_iteration,
            } => {
                let g = layer.grad.as_slice();
                let scale = if normalize {
                    let m = g.iter().fold(0f32, |a, v| a.max(v.abs()));
                    if m > 0.0 {
                        1.0 / m as f64
                    } else {
                        1.0
                    }
                } else {
                    1.0
                };
                let tt = if per_iteration { t } else { self.updates };
                let ln_t = (tt.max(2) as f64).ln();
                g.iter()
                    .zip(&self.counters[l])
                    .map(|(gv, &n)| {
                        (gv.abs() as f64 * scale + c * (ln_t / (n as f64 + eps)).sqrt()) as f32
                    })
                    .collect()
            }
        }
    }

    /// Drop scores whose `n` smallest active entries are exactly the SET sign-split drop set.
    fn sign_split_scores(layer: &Layer, f: f64, rounding: Rounding) -> Result<(Vec<f32>, usize)> {
        let w = layer.weight.as_slice();
        let shape = layer.mask.shape().to_vec();
        let pos = Mask::from_bools(
            &shape,
            &w.iter()
                .enumerate()
                .map(|(i, &v)| layer.mask.get(i) && v >= 0.0)
                .collect::<Vec<_>>(),
        )?;
        let neg = layer.mask.and_not(&pos)?;
        let (np, nn) = (
            rounding.apply(f * pos.count_ones() as f64),
            rounding.apply(f * neg.count_ones() as f64),
        );
        let dp = select(
            &shape,
            w,
            np,
            Candidates::Set(&pos),
            Order::Smallest,
            Parallelism::Auto,
        )?;
        let dn = select(
            &shape,
            w,
            nn,
            Candidates::Set(&neg),
            Order::Largest,
            Parallelism::Auto,
        )?;
        let drop = dp.or(&dn)?;
        Ok((
            (0..w.len())
                .map(|i| if drop.get(i) { 0.0 } else { 1.0 })
                .collect(),
            np + nn,
        ))
    }
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
        self.ensure_state(layers);
        let f = self.cfg.drop_fraction.at(t.step);
        let mut report = UpdateReport::default();
        #[allow(clippy::needless_range_loop)] // `layers[l]` is borrowed twice below
        for l in 0..layers.len() {
            let grow = self.grow_scores(t.step, l, &layers[l]);
            let layer = &mut layers[l];
            let active = layer.mask.count_ones();
            let (drop, n) = match self.cfg.drop {
                DropRule::Magnitude => {
                    let mut d: Vec<f32> = layer.weight.as_slice().iter().map(|w| w.abs()).collect();
                    if let Some(sigma) = self.cfg.drop_noise {
                        let mut rng = self.rng(t.step, l, 2);
                        d.iter_mut().for_each(|v| *v += sigma * normal(&mut rng));
                    }
                    (d, self.cfg.rounding.apply(f * active as f64).min(active))
                }
                DropRule::SignSplit => Self::sign_split_scores(layer, f, self.cfg.rounding)?,
            };
            let mut init_rng = self.rng(t.step, l, 3);
            let init = self.cfg.grow_init;
            let dg = update_layer(
                layer.weight,
                layer.mask,
                &mut [&mut *layer.momentum],
                &drop,
                &grow,
                n,
                |_| match init {
                    GrowInit::Zero => 0.0,
                    GrowInit::Normal { std } => std * normal(&mut init_rng),
                },
            )?;
            assert_eq!(
                layer.mask.count_ones(),
                active,
                "budget of `{}` changed",
                layer.name
            );
            self.fired[l] = self.fired[l].reshape(layer.mask.shape())?.or(layer.mask)?;
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
        self.ensure_state(layers);
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

    fn state(&self) -> AlgoState {
        let mut s = AlgoState::default();
        s.scalars.insert("updates".into(), self.updates as f64);
        for (l, c) in self.counters.iter().enumerate() {
            s.counters.insert(format!("activity.{l}"), c.clone());
        }
        for (l, m) in self.fired.iter().enumerate() {
            s.counters.insert(
                format!("fired.{l}"),
                m.to_bools().iter().map(|&b| b as u32).collect(),
            );
        }
        s
    }

    fn load_state(&mut self, s: &AlgoState) -> Result<()> {
        self.updates = s.scalar("updates")? as u64;
        self.fired.clear();
        self.counters.clear();
        for l in 0.. {
            let Some(f) = s.counters.get(&format!("fired.{l}")) else {
                break;
            };
            let bools: Vec<bool> = f.iter().map(|&v| v != 0).collect();
            self.fired.push(Mask::from_bools(&[bools.len()], &bools)?);
            if matches!(self.cfg.grow, GrowRule::Explore { .. }) {
                let c = s.counter(&format!("activity.{l}"))?;
                check_len("activity", c.len(), bools.len())?;
                self.counters.push(c.clone());
            }
        }
        Ok(())
    }
}

/// A standard normal draw (Box–Muller on the ChaCha stream; version-stable).
pub(crate) fn normal(rng: &mut impl RngCore) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
