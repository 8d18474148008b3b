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

/// A training forward's input, kept for the backward: `x`, and `xᵀ` when the forward made
/// one (a sparse weight runs on transposed activations), so the at-mask weight gradient
/// does not transpose `x` again.
#[derive(Debug, Clone)]
pub struct LinearInput {
    /// The input, `[B, in]`.
    pub x: Tensor,
    /// `xᵀ`, `[in, B]`, if the forward computed it.
    pub xt: Option<Tensor>,
}

/// What a backend provides for linear layers (shapes and devices already checked; `dims`
/// is `(batch, in, out)`).
pub trait LinearOps {
    /// See [`linear_forward_keeping`]: `y`, and `xᵀ` if the backend computed it.
    fn linear_forward(
        dims: (usize, usize, usize),
        x: &Tensor,
        w: WeightRef,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)>;
    /// See [`linear_backward_kept`] (`dw_buf` is only a hint: a backend may drop it;
    /// `xt`, when given, is `xᵀ`).
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        dims: (usize, usize, usize),
        dy: &Tensor,
        x: &Tensor,
        xt: Option<&Tensor>,
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
    Ok(dispatch!(x.device(), LinearOps::linear_forward(d, x, w, bias))?.0)
}

/// [`linear_forward`] for training: also returns the input to hand to
/// [`linear_backward_kept`] (with `xᵀ` where the forward made one).
pub fn linear_forward_keeping(
    x: Tensor,
    w: WeightRef,
    bias: Option<&Tensor>,
) -> Result<(Tensor, LinearInput)> {
    let d = dims(&x, &w, bias)?;
    let (y, xt) = dispatch!(x.device(), LinearOps::linear_forward(d, &x, w, bias))?;
    Ok((y, LinearInput { x, xt }))
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
    let input = LinearInput {
        x: x.clone(),
        xt: None,
    };
    linear_backward_kept(dy, &input, w, has_bias, need_dx, wgrad, None)
}

/// The backward from the input [`linear_forward_keeping`] returned (its `xᵀ`, if any,
/// feeds the at-mask weight gradient). It may write an at-mask weight gradient into
/// `dw_buf`, the layer's previous at-mask gradient for the same mask (see
/// [`AtMaskGradMemo`](crate::ops::sparse::AtMaskGradMemo)). `dw_buf` must be zero off
/// the mask of `wgrad`; its entries on the mask are overwritten. The CPU backend reuses it
/// (no dense clear per step); others allocate as usual.
pub fn linear_backward_kept(
    dy: &Tensor,
    input: &LinearInput,
    w: WeightRef,
    has_bias: bool,
    need_dx: bool,
    wgrad: WeightGrad,
    dw_buf: Option<Tensor>,
) -> Result<LinearGrads> {
    let x = &input.x;
    let d = dims(x, &w, None)?;
    dy.expect_shape("linear backward dY", &[d.0, d.2])?;
    dy.same_device("linear backward", x)?;
    wgrad.check("linear backward", &w)?;
    let xt = input.xt.as_ref();
    if let Some(t) = xt {
        t.expect_shape("linear backward xᵀ", &[d.1, d.0])?;
        t.same_device("linear backward", x)?;
    }
    dispatch!(
        x.device(),
        LinearOps::linear_backward(d, dy, x, xt, w, has_bias, need_dx, wgrad, dw_buf)
    )
}
