//! The trait every criterion implements and the views it works on.

use std::collections::BTreeMap;

use sparse_core::Mask;
use sparse_kernels::ops::mask_update::zero_at;
use sparse_kernels::{DeviceMask, Tensor};

use crate::error::{AlgoError, Result};

/// Where training is: `step` counts optimizer steps already taken (0-based), as in the
/// spec's `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// Optimizer steps already taken.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Total training steps `T`.
    pub total_steps: u64,
}

/// One sparsifiable layer as a criterion sees it.
pub struct Layer<'a> {
    /// Layer name.
    pub name: &'a str,
    /// The stored weight (masked in storage, except for methods that keep dense values).
    pub weight: &'a mut Tensor,
    /// The layer's mask; change it only through [`DeviceMask::set`] (or `update_layer`),
    /// which keeps the device copy and the mask version current.
    pub mask: &'a mut DeviceMask,
    /// The current mini-batch gradient `∂L/∂Ŵ`: dense on steps where the method asked for
    /// dense gradients, otherwise exact at active positions and 0 elsewhere.
    pub grad: &'a Tensor,
    /// The optimizer's momentum buffer (reset for newly grown / pruned positions).
    pub momentum: &'a mut Tensor,
}

/// What one mask update did to one layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Positions deactivated.
    pub dropped: usize,
    /// Positions newly activated.
    pub grown: usize,
    /// Active count after the update.
    pub nnz: usize,
}

/// What one mask update did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateReport {
    /// Per layer, in layer order.
    pub layers: Vec<LayerReport>,
}

impl UpdateReport {
    /// Total dropped.
    pub fn dropped(&self) -> usize {
        self.layers.iter().map(|l| l.dropped).sum()
    }
    /// Total grown.
    pub fn grown(&self) -> usize {
        self.layers.iter().map(|l| l.grown).sum()
    }
}

/// Algorithm state that must survive a checkpoint, as named tensors and scalars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlgoState {
    /// Named f32 tensors (scores, momentum of scores, snapshots, ...).
    pub tensors: BTreeMap<String, Vec<f32>>,
    /// Named u32 tensors (counters, fired masks).
    pub counters: BTreeMap<String, Vec<u32>>,
    /// Named scalars.
    pub scalars: BTreeMap<String, f64>,
}

impl AlgoState {
    /// A tensor by name, or a clear error.
    pub fn tensor(&self, name: &str) -> Result<&Vec<f32>> {
        self.tensors
            .get(name)
            .ok_or_else(|| AlgoError::State(format!("missing tensor `{name}`")))
    }
    /// Counters by name, or a clear error.
    pub fn counter(&self, name: &str) -> Result<&Vec<u32>> {
        self.counters
            .get(name)
            .ok_or_else(|| AlgoError::State(format!("missing counters `{name}`")))
    }
    /// A scalar by name, or a clear error.
    pub fn scalar(&self, name: &str) -> Result<f64> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| AlgoError::State(format!("missing scalar `{name}`")))
    }
}

/// A sparse-training criterion. Every step, the trainer runs forward/backward (with dense
/// weight gradients iff [`needs_dense_grad`](Self::needs_dense_grad)), then
/// [`crate::step::apply_step`] calls:
/// 1. [`on_gradients`](Self::on_gradients);
/// 2. the optimizer step unless [`skip_optimizer_step`](Self::skip_optimizer_step);
/// 3. [`update`](Self::update) if [`is_update_step`](Self::is_update_step);
/// 4. [`on_step_end`](Self::on_step_end);
///
/// and [`crate::step::epoch_start`] calls [`on_epoch_start`](Self::on_epoch_start) before
/// each epoch's first step.
pub trait SparseMethod: Send {
    /// Preset-style name.
    fn name(&self) -> &str;
    /// Whether a mask update happens after step `t`.
    fn is_update_step(&self, t: &StepInfo) -> bool;
    /// Whether step `t` skips the optimizer (spec §0.6: RigL-paper presets do on updates).
    fn skip_optimizer_step(&self, t: &StepInfo) -> bool {
        let _ = t;
        false
    }
    /// Whether step `t` needs the dense gradient of inactive weights.
    fn needs_dense_grad(&self, t: &StepInfo) -> bool {
        let _ = t;
        false
    }
    /// True when inactive weights keep stored values (OptG): the trainer executes `W ⊙ M`
    /// without zeroing `W` and steps the optimizer without the mask (gradient `G ⊙ M`).
    fn keeps_dense_values(&self) -> bool {
        false
    }
    /// Called after backward, before the optimizer step.
    fn on_gradients(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<()> {
        let _ = (t, layers);
        Ok(())
    }
    /// The mask update.
    fn update(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<UpdateReport>;
    /// Called at the end of every step (after any update).
    fn on_step_end(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<()> {
        let _ = (t, layers);
        Ok(())
    }
    /// Called before an epoch's first step; may update masks (OptG, per-epoch SET).
    fn on_epoch_start(
        &mut self,
        t: &StepInfo,
        layers: &mut [Layer],
    ) -> Result<Option<UpdateReport>> {
        let _ = (t, layers);
        Ok(None)
    }
    /// State to checkpoint (a host copy: the checkpoint boundary).
    fn state(&self) -> Result<AlgoState> {
        Ok(AlgoState::default())
    }
    /// Restores [`state`](Self::state) exactly.
    fn load_state(&mut self, state: &AlgoState) -> Result<()> {
        let _ = state;
        Ok(())
    }
    /// Checks restored state against the masked layers (count and sizes), so a checkpoint
    /// that does not fit is refused when it is loaded, not steps later.
    fn check_state(&self, layers: &[sparse_core::LayerShape]) -> Result<()> {
        let _ = layers;
        Ok(())
    }
}

/// Checks per-layer state vectors: none yet (before the first step), or one per layer of
/// the layer's size.
pub(crate) fn check_per_layer(
    what: &str,
    lens: impl ExactSizeIterator<Item = usize>,
    layers: &[sparse_core::LayerShape],
) -> Result<()> {
    if lens.len() != 0 {
        check_len(&format!("{what} layers"), lens.len(), layers.len())?;
        for (n, l) in lens.zip(layers) {
            check_len(&format!("{what} of `{}`", l.name), n, l.numel())?;
        }
    }
    Ok(())
}

/// The dense baseline: never changes a mask.
#[derive(Debug, Clone, Default)]
pub struct Dense;

impl SparseMethod for Dense {
    fn name(&self) -> &str {
        "dense"
    }
    fn is_update_step(&self, _: &StepInfo) -> bool {
        false
    }
    fn update(&mut self, _: &StepInfo, _: &mut [Layer]) -> Result<UpdateReport> {
        Ok(UpdateReport::default())
    }
}

/// Zeroes weight and momentum at positions active in `before` and inactive now, and
/// reports the layer (pruned count, no growth).
pub(crate) fn prune_report(layer: &mut Layer, before: &Mask) -> Result<LayerReport> {
    let pruned = before.and_not(layer.mask.mask())?;
    zero_at(layer.weight, &pruned)?;
    zero_at(layer.momentum, &pruned)?;
    Ok(LayerReport {
        name: layer.name.to_string(),
        dropped: pruned.count_ones(),
        grown: 0,
        nnz: layer.mask.count_ones(),
    })
}

/// Checks a state vector length.
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(AlgoError::State(format!(
            "`{what}` has {got} entries, the model needs {want}"
        )));
    }
    Ok(())
}

/// Borrows each tensor (for the slice-of-references ops such as `select_global`).
pub(crate) fn refs(v: &[Tensor]) -> Vec<&Tensor> {
    v.iter().collect()
}
