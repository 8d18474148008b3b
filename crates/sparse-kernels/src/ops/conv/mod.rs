//! 2-D convolution (NCHW, groups = 1, square stride and padding): forward, backward to the
//! input and backward to the weight, each through a dense, masked or sparse weight.
//!
//! Execution: the batch is processed in fixed groups of images; each group is unfolded
//! (im2col) into a `C·kh·kw x G·Ho·Wo` matrix and multiplied by the weight's
//! `O x C·kh·kw` view, densely (GEMM), masked, or sparsely (CSR × im2col: zero weights cost
//! nothing). The backward pass recomputes the unfolding instead of keeping it (memory),
//! computes `dcol = Wᵀ·dY` (dense or CSRᵀ) and folds it back (col2im), and the weight
//! gradient `dY·colᵀ` either densely or only at the mask (SDDMM). Per-group weight
//! gradients are summed in group order, so results do not depend on thread scheduling.
//!
//! Dense or masked weights on stride-1 "same" convolutions with output planes of at least
//! 256 positions skip im2col too (`shifted`): one GEMM per kernel row over a strided view of
//! a zero-padded NHWC copy of the input.
//!
//! Sparse weights on stride-1 convolutions with output planes of at least 64 positions skip
//! im2col entirely: the direct sparse convolution (`direct`) touches only active weights in
//! all three passes. Smaller planes (the last stages of ResNet-18 and VGG-16 on CIFAR) run
//! as CSR over the unfolding, which measured up to 3.6x faster there.

mod batch_minor;
pub(crate) mod cpu;
mod cuda;
mod direct;
mod plane_simd;
mod shifted;

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::{same, Tensor};

/// What a backend provides for convolution (geometry, shapes and devices already checked).
pub trait ConvOps {
    /// Forward, `[B, O, Ho, Wo]`.
    fn conv2d_forward(g: &ConvGeom, x: &Tensor, w: WeightRef) -> Result<Tensor>;
    /// Backward to the input (if `need_dx`) and to the weight.
    fn conv2d_backward(
        g: &ConvGeom,
        dy: &Tensor,
        x: &Tensor,
        w: WeightRef,
        need_dx: bool,
        wgrad: WeightGrad,
    ) -> Result<ConvGrads>;
}

/// Stride and zero padding (same for both spatial dims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride (>= 1).
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv2dParams {
    /// Stride and padding.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams { stride, padding }
    }
}

/// The resolved geometry of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch.
    pub b: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// Validates the input and weight shapes against the parameters.
    pub fn new(x: &[usize], w: &[usize], p: Conv2dParams) -> Result<ConvGeom> {
        let (&[b, c, h, wd], &[o, c2, kh, kw]) = (x, w) else {
            return shape_err(
                "conv2d",
                format!("input must be [B,C,H,W] and weight [O,C,kh,kw], got {x:?} and {w:?}"),
            );
        };
        if c != c2 {
            return shape_err(
                "conv2d",
                format!("input has {c} channels, weight expects {c2}"),
            );
        }
        if p.stride == 0 {
            return shape_err("conv2d", "stride must be >= 1");
        }
        if h + 2 * p.padding < kh || wd + 2 * p.padding < kw || kh == 0 || kw == 0 {
            return shape_err(
                "conv2d",
                format!(
                    "kernel {kh}x{kw} larger than padded input {}x{}",
                    h + 2 * p.padding,
                    wd + 2 * p.padding
                ),
            );
        }
        Ok(ConvGeom {
            b,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride: p.stride,
            pad: p.padding,
            oh: (h + 2 * p.padding - kh) / p.stride + 1,
            ow: (wd + 2 * p.padding - kw) / p.stride + 1,
        })
    }

    /// `C·kh·kw`.
    pub fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions per image.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Output shape `[B, O, Ho, Wo]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.b, self.o, self.oh, self.ow]
    }
}

/// Forward: `y = conv(x, W)`, shape `[B, O, Ho, Wo]`.
pub fn conv2d_forward(x: &Tensor, w: WeightRef, p: Conv2dParams) -> Result<Tensor> {
    let g = ConvGeom::new(x.shape(), w.shape(), p)?;
    same("conv2d", x.device(), w.device())?;
    dispatch!(x.device(), ConvOps::conv2d_forward(&g, x, w))
}

/// Gradients of a convolution.
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// `∂L/∂x` when requested.
    pub dx: Option<Tensor>,
    /// `∂L/∂W`, shaped like the weight (exactly 0 off the mask for [`WeightGrad::AtMask`]).
    pub dw: Tensor,
}

/// Backward: the gradient to the input (if `need_dx`) and to the weight (dense, or only at
/// the mask's positions).
pub fn conv2d_backward(
    dy: &Tensor,
    x: &Tensor,
    w: WeightRef,
    p: Conv2dParams,
    need_dx: bool,
    wgrad: WeightGrad,
) -> Result<ConvGrads> {
    let g = ConvGeom::new(x.shape(), w.shape(), p)?;
    dy.expect_shape("conv2d backward dY", &g.out_shape())?;
    dy.same_device("conv2d backward", x)?;
    same("conv2d backward", x.device(), w.device())?;
    wgrad.check("conv2d backward", &w)?;
    dispatch!(
        x.device(),
        ConvOps::conv2d_backward(&g, dy, x, w, need_dx, wgrad)
    )
}
