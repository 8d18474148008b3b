//! Fully connected layer `y = x·Wᵀ + b` (`x: [B, in]`, `W: [out, in]`), forward and backward,
//! through a dense, masked or sparse weight.

pub(crate) mod cpu;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::{same, Tensor};

/// Gradients of a linear layer.
#[derive(Debug, Clone)]
pub struct LinearGrads {
    /// `∂L/∂x` when requested.
    pub dx: Option<Tensor>,
    /// `∂L/∂W` (exactly 0 off the mask for [`WeightGrad::AtMask`]).
    pub dw: Tensor,
    /// `∂L/∂b` (column sums of dY) when the layer has a bias.
    pub db: Option<Tensor>,
}

/// What a backend provides for linear layers (shapes and devices already checked; `dims`
/// is `(batch, in, out)`).
pub trait LinearOps {
    /// See [`linear_forward`].
    fn linear_forward(
        dims: (usize, usize, usize),
        x: &Tensor,
        w: WeightRef,
        bias: Option<&Tensor>,
    ) -> Result<Tensor>;
    /// See [`linear_backward_reusing`] (`dw_buf` is only a hint: a backend may drop it).
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        dims: (usize, usize, usize),
        dy: &Tensor,
        x: &Tensor,
        w: WeightRef,
        has_bias: bool,
        need_dx: bool,
        wgrad: WeightGrad,
        dw_buf: Option<Tensor>,
    ) -> Result<LinearGrads>;
}

fn dims(x: &Tensor, w: &WeightRef, bias: Option<&Tensor>) -> Result<(usize, usize, usize)> {
    let (&[b, i], &[o, i2]) = (x.shape(), w.shape()) else {
        return shape_err(
            "linear",
            format!(
                "input must be [B, in] and weight [out, in], got {:?} and {:?}",
                x.shape(),
                w.shape()
            ),
        );
    };
    if i != i2 {
        return shape_err(
            "linear",
            format!("input has {i} features, weight expects {i2}"),
        );
    }
    same("linear", x.device(), w.device())?;
    if let Some(bias) = bias {
        bias.expect_shape("linear bias", &[o])?;
        x.same_device("linear", bias)?;
    }
    Ok((b, i, o))
}

/// Forward `y = x·Wᵀ + b`, shape `[B, out]`.
pub fn linear_forward(x: &Tensor, w: WeightRef, bias: Option<&Tensor>) -> Result<Tensor> {
    let d = dims(x, &w, bias)?;
    dispatch!(x.device(), LinearOps::linear_forward(d, x, w, bias))
}

/// Backward of [`linear_forward`].
pub fn linear_backward(
    dy: &Tensor,
    x: &Tensor,
    w: WeightRef,
    has_bias: bool,
    need_dx: bool,
    wgrad: WeightGrad,
) -> Result<LinearGrads> {
    linear_backward_reusing(dy, x, w, has_bias, need_dx, wgrad, None)
}

/// [`linear_backward`] that may write an at-mask weight gradient into `dw_buf`, the
/// layer's previous at-mask gradient for the same mask (see
/// [`AtMaskGradMemo`](crate::ops::sparse::AtMaskGradMemo)). `dw_buf` must be zero off
/// the mask of `wgrad`; its entries on the mask are overwritten. The CPU backend reuses it
/// (no dense clear per step); others allocate as usual.
pub fn linear_backward_reusing(
    dy: &Tensor,
    x: &Tensor,
    w: WeightRef,
    has_bias: bool,
    need_dx: bool,
    wgrad: WeightGrad,
    dw_buf: Option<Tensor>,
) -> Result<LinearGrads> {
    let d = dims(x, &w, None)?;
    dy.expect_shape("linear backward dY", &[d.0, d.2])?;
    dy.same_device("linear backward", x)?;
    wgrad.check("linear backward", &w)?;
    dispatch!(
        x.device(),
        LinearOps::linear_backward(d, dy, x, w, has_bias, need_dx, wgrad, dw_buf)
    )
}
