//! Convolution on CUDA: not implemented yet (the CUDA backend issue adds implicit GEMM /
//! im2col + cuBLAS here).

use super::{ConvGeom, ConvGrads, ConvOps};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::Tensor;

impl ConvOps for CudaBackend {
    fn conv2d_forward(_g: &ConvGeom, x: &Tensor, _w: WeightRef) -> Result<Tensor> {
        Err(unsupported("conv2d_forward", x.device()))
    }
    fn conv2d_backward(
        _g: &ConvGeom,
        _dy: &Tensor,
        x: &Tensor,
        _w: WeightRef,
        _need_dx: bool,
        _wgrad: WeightGrad,
    ) -> Result<ConvGrads> {
        Err(unsupported("conv2d_backward", x.device()))
    }
}
