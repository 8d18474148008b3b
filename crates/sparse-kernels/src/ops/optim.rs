//! SGD with momentum, Nesterov and coupled weight decay (PyTorch semantics), applied through
//! masks so inactive weights and their momentum stay exactly zero (spec §0.5).

use rayon::prelude::*;
use sparse_core::Mask;

use crate::error::{shape_err, KernelError, Result};
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

const GRAIN: usize = 1 << 14;

/// One SGD step on `w` with gradient `g` and momentum buffer `buf`:
/// `d = g + λw; buf = μ·buf + d; d = nesterov ? d + μ·buf : buf; w -= lr·d`.
/// With a mask, afterwards `w ⊙= M` and `buf ⊙= M` (inactive entries end exactly 0).
pub fn sgd_step(
    w: &mut Tensor,
    g: &Tensor,
    buf: &mut Tensor,
    mask: Option<&Mask>,
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
    if let Some(m) = mask {
        if m.shape() != w.shape() {
            return shape_err(
                "sgd_step",
                format!("mask {:?} vs weight {:?}", m.shape(), w.shape()),
            );
        }
    }
    let SgdConfig {
        lr,
        momentum: mu,
        nesterov,
        weight_decay: wd,
    } = *cfg;
    w.as_mut_slice()
        .par_iter_mut()
        .with_min_len(GRAIN)
        .zip(buf.as_mut_slice().par_iter_mut())
        .zip(g.as_slice().par_iter())
        .for_each(|((w, b), &g)| {
            let mut d = g + wd * *w;
            if mu != 0.0 {
                *b = mu * *b + d;
                d = if nesterov { d + mu * *b } else { *b };
            }
            *w -= lr * d;
        });
    if let Some(m) = mask {
        m.apply(w.as_mut_slice())?;
        m.apply(buf.as_mut_slice())?;
    }
    Ok(())
}
