//! SGD with momentum, Nesterov and coupled weight decay (PyTorch semantics), applied through
//! masks so inactive weights and their momentum stay exactly zero (spec §0.5).

mod cpu;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, KernelError, Result};
use crate::mask::DeviceMask;
use crate::tensor::Tensor;

/// SGD hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0 disables the buffer).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Coupled L2 weight decay: `g + λ·w`.
    pub weight_decay: f32,
}

impl SgdConfig {
    /// Rejects non-finite or negative values.
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        if !(ok(self.lr) && ok(self.momentum) && ok(self.weight_decay)) || self.momentum >= 1.0 {
            return Err(KernelError::InvalidArgument(format!(
                "invalid SGD config {self:?}"
            )));
        }
        Ok(())
    }
}

/// How a mask enters the SGD step.
#[derive(Debug, Clone, Copy)]
pub enum MaskPolicy<'a> {
    /// No mask (dense parameters).
    None,
    /// After the update, `w ⊙= M` and `buf ⊙= M`: inactive entries end exactly 0.
    Weights(&'a DeviceMask),
    /// Only the mask's entries are updated and the rest are left as they are: the same
    /// result as [`Weights`](Self::Weights) when the inactive weights and momentum already
    /// are exactly zero (as after a `Weights` step with this mask), in time proportional
    /// to the active entries instead of all of them. The step protocol takes it only when
    /// neither tensor nor the mask changed since such a step (tensor generations and the
    /// mask version). The CUDA backend runs it as `Weights`.
    Active(&'a DeviceMask),
    /// The gradient is taken as `G ⊙ M`; weights and momentum are not masked (OptG keeps
    /// the stored values of pruned weights, which keep decaying).
    Gradient(&'a DeviceMask),
}

/// What a backend provides for the optimizer family.
pub trait OptimOps {
    /// One checked SGD step (see [`sgd_step`]).
    fn sgd_step(
        w: &mut Tensor,
        g: &Tensor,
        buf: &mut Tensor,
        mask: MaskPolicy,
        cfg: &SgdConfig,
    ) -> Result<()>;
    /// One momentum step on scores (see [`score_step`]).
    fn score_step(
        scores: &mut Tensor,
        buf: &mut Tensor,
        g: &Tensor,
        w: &Tensor,
        momentum: f32,
        lr: f32,
    ) -> Result<()>;
}

/// One SGD step on `w` with gradient `g` and momentum buffer `buf`:
/// `d = g + λw; buf = μ·buf + d; d = nesterov ? d + μ·buf : buf; w -= lr·d`, with the mask
/// applied as `mask` says.
pub fn sgd_step(
    w: &mut Tensor,
    g: &Tensor,
    buf: &mut Tensor,
    mask: MaskPolicy,
    cfg: &SgdConfig,
) -> Result<()> {
    cfg.validate()?;
    if w.shape() != g.shape() || w.shape() != buf.shape() {
        return shape_err(
            "sgd_step",
            format!(
                "weight {:?}, gradient {:?}, momentum {:?}",
                w.shape(),
                g.shape(),
                buf.shape()
            ),
        );
    }
    w.same_device("sgd_step", g)?;
    w.same_device("sgd_step", buf)?;
    if let MaskPolicy::Weights(m) | MaskPolicy::Active(m) | MaskPolicy::Gradient(m) = mask {
        if m.shape() != w.shape() {
            return shape_err(
                "sgd_step",
                format!("mask {:?} vs weight {:?}", m.shape(), w.shape()),
            );
        }
        crate::tensor::same("sgd_step", w.device(), m.device())?;
    }
    dispatch!(w.device(), OptimOps::sgd_step(w, g, buf, mask, cfg))
}

/// One SGD-with-momentum step on per-weight scores driven by `G ⊙ W` (OptG, spec §7):
/// `buf = μ·buf + g·w; scores -= lr·buf`.
pub fn score_step(
    scores: &mut Tensor,
    buf: &mut Tensor,
    g: &Tensor,
    w: &Tensor,
    momentum: f32,
    lr: f32,
) -> Result<()> {
    for (what, t) in [("momentum", &*buf), ("gradient", g), ("weight", w)] {
        if t.shape() != scores.shape() {
            return shape_err(
                "score_step",
                format!("scores {:?} vs {what} {:?}", scores.shape(), t.shape()),
            );
        }
        scores.same_device("score_step", t)?;
    }
    dispatch!(
        scores.device(),
        OptimOps::score_step(scores, buf, g, w, momentum, lr)
    )
}
