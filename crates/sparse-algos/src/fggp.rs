//! FGGP — fixed-rate gradient-first gradual pruning (spec §6): at each update, take the
//! `K = max(floor(r·A), to_prune)` active weights with the smallest `|G|` (gradient first),
//! then prune the `to_prune` of them with the smallest `|W|` (magnitude next). Global over
//! the pruned layers; the first layer is excluded by default. The "annealing" comparator
//! (§6.3: magnitude first, gradient next, cosine-annealed rate) is [`FggpMode::Annealing`].

use sparse_core::{Order, Schedule};

use crate::error::{AlgoError, Result};
use sparse_kernels::ops::mask_update::{abs_scores, select_global};
use sparse_kernels::Tensor;

use crate::method::{prune_report, refs, Layer, SparseMethod, StepInfo, UpdateReport};

/// Candidate order.
#[derive(Debug, Clone, PartialEq)]
pub enum FggpMode {
    /// FGGP: gradient-first candidates at a fixed rate `select_ratio`.
    GradientFirst,
    /// §6.3: `to_prune + add` smallest `|W|`, restoring the `add` largest `|G|`, with
    /// `add = floor((A − to_prune)·f(τ))`.
    Annealing {
        /// `f` (ITOP cosine 0.5 → 0.005 over all iterations).
        rate: Schedule,
    },
}

/// FGGP configuration (code defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct FggpConfig {
    /// Initial density `d_i` (1.0 or 0.5).
    pub initial_density: f64,
    /// Final density `d_f`.
    pub final_density: f64,
    /// Fixed subselection rate `r` (0.5).
    pub select_ratio: f64,
    /// Update interval ΔT (2000).
    pub interval: u64,
    /// Updates stop at `T_e = floor(end_ratio · T)` (0.8).
    pub end_ratio: f64,
    /// Also update at `τ = T_e`, where the cubic reaches `final_density` (our default;
    /// FGGP updates only at multiples of ΔT, so it ends short unless ΔT divides `T_e`).
    pub exact_final: bool,
    /// Prune the first layer too when it is a convolution (`--prune-conv1`, default false).
    pub prune_first_layer: bool,
    /// Candidate order.
    pub mode: FggpMode,
}

/// FGGP.
#[derive(Debug, Clone)]
pub struct Fggp {
    cfg: FggpConfig,
}

impl Fggp {
    /// Validates the configuration.
    pub fn new(cfg: FggpConfig) -> Result<Self> {
        let ok = |d: f64| d > 0.0 && d <= 1.0;
        if !(ok(cfg.initial_density)
            && ok(cfg.final_density)
            && cfg.final_density <= cfg.initial_density)
        {
            return Err(AlgoError::Config(
                "FGGP densities must satisfy 0 < final <= initial <= 1".into(),
            ));
        }
        let in_unit = |v: f64| v > 0.0 && v <= 1.0;
        if !(in_unit(cfg.select_ratio) && in_unit(cfg.end_ratio)) || cfg.interval == 0 {
            return Err(AlgoError::Config(format!("invalid FGGP config {cfg:?}")));
        }
        if let FggpMode::Annealing { rate } = &cfg.mode {
            rate.validate()?;
        }
        Ok(Fggp { cfg })
    }

    fn end(&self, total: u64) -> u64 {
        (self.cfg.end_ratio * total as f64).floor() as u64
    }

    /// Target density at 1-based iteration `tau`: `d_f + (d_i − d_f)(1 − τ/T_e)^3`.
    pub fn density(&self, tau: u64, total: u64) -> f64 {
        let te = self.end(total).max(1);
        let x = 1.0 - (tau.min(te) as f64 / te as f64);
        self.cfg.final_density + (self.cfg.initial_density - self.cfg.final_density) * x.powi(3)
    }
}

impl SparseMethod for Fggp {
    fn name(&self) -> &str {
        "fggp"
    }

    fn is_update_step(&self, t: &StepInfo) -> bool {
        let tau = t.step + 1;
        let te = self.end(t.total_steps);
        (tau.is_multiple_of(self.cfg.interval) && tau <= te) || (self.cfg.exact_final && tau == te)
    }

    fn update(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport> {
        // `--prune-conv1` False: the stem convolution stays dense (an MLP has none).
        let skip = usize::from(
            !self.cfg.prune_first_layer && layers.len() > 1 && layers[0].weight.shape().len() == 4,
        );
        let pruned_layers = &mut layers[skip..];
        let tau = t.step + 1;
        let ntot: usize = pruned_layers.iter().map(|l| l.mask.len()).sum();
        let zeros: usize = pruned_layers.iter().map(|l| l.mask.count_zeros()).sum();
        let target = ntot as f64 * (1.0 - self.density(tau, t.total_steps)) - zeros as f64;
        let mut report = UpdateReport::default();
        if target < 1.0 {
            return Ok(report);
        }
        let to_prune = target.floor() as usize;
        let active = ntot - zeros;
        let to_prune = to_prune.min(active);
        let mag: Vec<Tensor> = pruned_layers
            .iter()
            .map(|l| abs_scores(l.weight))
            .collect::<std::result::Result<_, _>>()?;
        let grad: Vec<Tensor> = pruned_layers
            .iter()
            .map(|l| abs_scores(l.grad))
            .collect::<std::result::Result<_, _>>()?;
        let act: Vec<_> = pruned_layers.iter().map(|l| Some(l.mask.mask())).collect();
        let pruned = match &self.cfg.mode {
            FggpMode::GradientFirst => {
                let k = ((self.cfg.select_ratio * active as f64).floor() as usize).max(to_prune);
                let cands = select_global(&refs(&grad), &act, k, Order::Smallest)?;
                let cref: Vec<_> = cands.iter().map(Some).collect();
                select_global(&refs(&mag), &cref, to_prune, Order::Smallest)?
            }
            FggpMode::Annealing { rate } => {
                let add = ((active - to_prune) as f64 * rate.at(t.step)).floor() as usize;
                let cands = select_global(&refs(&mag), &act, to_prune + add, Order::Smallest)?;
                let cref: Vec<_> = cands.iter().map(Some).collect();
                let restore = select_global(&refs(&grad), &cref, add, Order::Largest)?;
                cands
                    .iter()
                    .zip(&restore)
                    .map(|(c, r)| c.and_not(r))
                    .collect::<std::result::Result<Vec<_>, _>>()?
            }
        };
        for (l, p) in pruned_layers.iter_mut().zip(pruned) {
            let before = l.mask.mask().clone();
            l.mask.set(before.and_not(&p.reshape(l.mask.shape())?)?)?;
            report.layers.push(prune_report(l, &before)?);
        }
        Ok(report)
    }
}
