//! The baselines papers in this field compare against (not in the specification):
//! - [`Static`]: the initial random mask (in the preset's distribution), never changed;
//! - [`Snip`]: SNIP (Lee et al., 2019), one-shot pruning at initialisation by the saliency
//!   `|w ⊙ g|` of one batch, ranked over all layers together (the paper's global top-κ), then
//!   fixed. That batch's optimizer step is skipped, so the scores are those of the
//!   initial weights and training starts from the pruned initialisation.

use sparse_core::Order;
use sparse_kernels::ops::mask_update::{abs_product, select_global};
use sparse_kernels::Tensor;

use crate::error::Result;
use crate::method::{prune_report, refs, Layer, SparseMethod, StepInfo, UpdateReport};

/// A fixed mask: the random initial one.
#[derive(Debug, Clone, Default)]
pub struct Static;

impl SparseMethod for Static {
    fn name(&self) -> &str {
        "static"
    }
    fn is_update_step(&self, _: &StepInfo) -> bool {
        false
    }
    fn update(&mut self, _: &StepInfo, _: &mut [Layer]) -> Result<UpdateReport> {
        Ok(UpdateReport::default())
    }
}

/// SNIP at global sparsity `sparsity`.
#[derive(Debug, Clone)]
pub struct Snip {
    sparsity: f64,
}

impl Snip {
    /// Checks the sparsity.
    pub fn new(sparsity: f64) -> Result<Snip> {
        sparse_core::error::check_sparsity("SNIP", sparsity)?;
        Ok(Snip { sparsity })
    }
}

impl SparseMethod for Snip {
    fn name(&self) -> &str {
        "snip"
    }
    fn is_update_step(&self, t: &StepInfo) -> bool {
        t.step == 0
    }
    fn skip_optimizer_step(&self, t: &StepInfo) -> bool {
        t.step == 0
    }
    fn needs_dense_grad(&self, t: &StepInfo) -> bool {
        t.step == 0
    }
    fn update(&mut self, _: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport> {
        let before: Vec<_> = layers.iter().map(|l| l.mask.mask().clone()).collect();
        let scores: Vec<Tensor> = layers
            .iter()
            .map(|l| abs_product(l.weight, l.grad))
            .collect::<std::result::Result<_, _>>()?;
        let n: usize = layers.iter().map(|l| l.mask.len()).sum();
        let keep = ((n as f64 * (1.0 - self.sparsity)).floor() as usize).max(1);
        let all = vec![None; layers.len()];
        let masks = select_global(&refs(&scores), &all, keep, Order::Largest)?;
        let mut report = UpdateReport::default();
        for ((l, m), b) in layers.iter_mut().zip(masks).zip(&before) {
            l.mask.set(m.reshape(l.mask.shape())?)?;
            report.layers.push(prune_report(l, b)?);
        }
        Ok(report)
    }
}
