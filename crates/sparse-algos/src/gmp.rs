//! GMP — gradual magnitude pruning (Zhu & Gupta; spec §4), exact-count version: at each
//! update keep the `N_l − floor(s_l(t)·N_l)` largest `|Ŵ|` of each layer (or globally);
//! pruned weights stay pruned, their weight and momentum are zeroed. No regrowth.

use sparse_core::{Order, Schedule};

use crate::error::{AlgoError, Result};
use sparse_kernels::ops::mask_update::{abs_scores, select_global, select_mask};
use sparse_kernels::Tensor;

use crate::method::{prune_report, refs, Layer, SparseMethod, StepInfo, UpdateReport};

/// GMP configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GmpConfig {
    /// Final sparsity of each layer, in layer order (per-layer mode), or a single entry
    /// with the global final sparsity (global mode).
    pub final_sparsity: Vec<f64>,
    /// Initial sparsity `s_i` (TFMP default 0).
    pub initial_sparsity: f64,
    /// Pruning start step `t0`.
    pub start: u64,
    /// Pruning end step `t1` (the final sparsity is reached exactly there).
    pub end: u64,
    /// Update interval ΔT.
    pub interval: u64,
    /// Rank all layers together (GraNet's variant) instead of per layer (TFMP, paper).
    pub global: bool,
}

/// Gradual magnitude pruning.
#[derive(Debug, Clone)]
pub struct Gmp {
    cfg: GmpConfig,
}

impl Gmp {
    /// Validates the schedule.
    pub fn new(cfg: GmpConfig) -> Result<Self> {
        for &s in cfg.final_sparsity.iter().chain([&cfg.initial_sparsity]) {
            sparse_core::error::check_sparsity("GMP", s)?;
        }
        if cfg.interval == 0 || cfg.end <= cfg.start {
            return Err(AlgoError::Config(format!(
                "GMP needs interval >= 1 and end > start, got interval {} over {}..{}",
                cfg.interval, cfg.start, cfg.end
            )));
        }
        if cfg.global && cfg.final_sparsity.len() != 1 {
            return Err(AlgoError::Config(
                "global GMP takes exactly one final sparsity".into(),
            ));
        }
        Ok(Gmp { cfg })
    }

    /// Target sparsity at step `t` for final sparsity `s_f` (cubic, TFMP).
    pub fn target(&self, s_f: f64, t: u64) -> f64 {
        Schedule::Cubic {
            s_i: self.cfg.initial_sparsity,
            s_f,
            t0: self.cfg.start,
            t1: self.cfg.end,
        }
        .at(t)
    }
}

fn keep_count(n: usize, s: f64) -> usize {
    n - ((s * n as f64 + 1e-9).floor() as usize).min(n)
}

impl SparseMethod for Gmp {
    fn name(&self) -> &str {
        "gmp"
    }

    fn is_update_step(&self, t: &StepInfo) -> bool {
        let (s, c) = (t.step, &self.cfg);
        s >= c.start && s <= c.end && ((s - c.start) % c.interval == 0 || s == c.end)
    }

    fn update(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport> {
        let before: Vec<_> = layers.iter().map(|l| l.mask.mask().clone()).collect();
        let scores: Vec<Tensor> = layers
            .iter()
            .map(|l| abs_scores(l.weight))
            .collect::<std::result::Result<_, _>>()?;
        if self.cfg.global {
            let n: usize = layers.iter().map(|l| l.mask.len()).sum();
            let active: usize = layers.iter().map(|l| l.mask.count_ones()).sum();
            let keep = keep_count(n, self.target(self.cfg.final_sparsity[0], t.step)).min(active);
            let cand: Vec<_> = layers.iter().map(|l| Some(l.mask.mask())).collect();
            let masks = select_global(&refs(&scores), &cand, keep, Order::Largest)?;
            for (l, m) in layers.iter_mut().zip(masks) {
                l.mask.set(m.reshape(l.mask.shape())?)?;
            }
        } else {
            if self.cfg.final_sparsity.len() != layers.len() {
                return Err(AlgoError::Config(format!(
                    "GMP configured for {} layers, model has {}",
                    self.cfg.final_sparsity.len(),
                    layers.len()
                )));
            }
            for (i, l) in layers.iter_mut().enumerate() {
                let keep = keep_count(
                    l.mask.len(),
                    self.target(self.cfg.final_sparsity[i], t.step),
                )
                .min(l.mask.count_ones());
                let m = select_mask(&scores[i], keep, Some(l.mask.mask()), Order::Largest)?;
                l.mask.set(m)?;
            }
        }
        let mut report = UpdateReport::default();
        for (l, b) in layers.iter_mut().zip(&before) {
            report.layers.push(prune_report(l, b)?);
        }
        Ok(report)
    }
}
