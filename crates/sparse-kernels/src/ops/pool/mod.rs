//! Pooling: 2x2 max-pool, k x k average pool, global average pool (NCHW).

mod cpu;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::tensor::{IndexTensor, Tensor};

/// What a backend provides for the pooling family (shapes already checked).
pub trait PoolOps {
    /// See [`max_pool2x2`].
    fn max_pool2x2(x: &Tensor) -> Result<(Tensor, IndexTensor)>;
    /// See [`max_pool2x2_backward`].
    fn max_pool2x2_backward(
        dy: &Tensor,
        argmax: &IndexTensor,
        input_shape: &[usize],
    ) -> Result<Tensor>;
    /// See [`avg_pool`].
    fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor>;
    /// See [`avg_pool_backward`].
    fn avg_pool_backward(dy: &Tensor, k: usize, input_shape: &[usize]) -> Result<Tensor>;
    /// See [`global_avg_pool`].
    fn global_avg_pool(x: &Tensor) -> Result<Tensor>;
    /// See [`global_avg_pool_backward`].
    fn global_avg_pool_backward(dy: &Tensor, input_shape: &[usize]) -> Result<Tensor>;
}

pub(crate) fn nchw(op: &'static str, x: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *x {
        [b, c, h, w] => Ok((b, c, h, w)),
        ref s => shape_err(op, format!("input must be [B,C,H,W], got {s:?}")),
    }
}

/// Max-pool with kernel 2 and stride 2 (odd trailing rows/cols dropped, as PyTorch).
/// Returns the output and, per output, the flat input index of its maximum (first on ties).
pub fn max_pool2x2(x: &Tensor) -> Result<(Tensor, IndexTensor)> {
    let (_, _, h, w) = nchw("max_pool2x2", x.shape())?;
    if h / 2 == 0 || w / 2 == 0 {
        return shape_err(
            "max_pool2x2",
            format!("input {h}x{w} smaller than the 2x2 window"),
        );
    }
    dispatch!(x.device(), PoolOps::max_pool2x2(x))
}

/// Backward of [`max_pool2x2`]: routes each output gradient to its argmax.
pub fn max_pool2x2_backward(
    dy: &Tensor,
    argmax: &IndexTensor,
    input_shape: &[usize],
) -> Result<Tensor> {
    if argmax.numel() != dy.numel() {
        return shape_err("max_pool2x2_backward", "argmax and dY lengths differ");
    }
    dy.same_device("max_pool2x2_backward", argmax)?;
    dispatch!(
        dy.device(),
        PoolOps::max_pool2x2_backward(dy, argmax, input_shape)
    )
}

/// Average pool with kernel = stride = `k`.
pub fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = nchw("avg_pool", x.shape())?;
    if k == 0 || h < k || w < k {
        return shape_err("avg_pool", format!("kernel {k} does not fit {h}x{w}"));
    }
    dispatch!(x.device(), PoolOps::avg_pool(x, k))
}

/// Backward of [`avg_pool`].
pub fn avg_pool_backward(dy: &Tensor, k: usize, input_shape: &[usize]) -> Result<Tensor> {
    let (b, c, h, w) = nchw("avg_pool_backward", input_shape)?;
    if k == 0 {
        return shape_err("avg_pool_backward", "kernel must be >= 1");
    }
    dy.expect_shape("avg_pool_backward dY", &[b, c, h / k, w / k])?;
    dispatch!(dy.device(), PoolOps::avg_pool_backward(dy, k, input_shape))
}

/// Global average pool `[B,C,H,W] -> [B,C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    nchw("global_avg_pool", x.shape())?;
    dispatch!(x.device(), PoolOps::global_avg_pool(x))
}

/// Backward of [`global_avg_pool`].
pub fn global_avg_pool_backward(dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
    let (b, c, _, _) = nchw("global_avg_pool_backward", input_shape)?;
    dy.expect_shape("global_avg_pool_backward dY", &[b, c])?;
    dispatch!(
        dy.device(),
        PoolOps::global_avg_pool_backward(dy, input_shape)
    )
}
