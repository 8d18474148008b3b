//! Element-wise ops on CUDA: not implemented yet (the CUDA backend issue adds
//! `kernels/elementwise.cu`); every op reports that clearly.

use super::ElementwiseOps;
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::Tensor;

impl ElementwiseOps for CudaBackend {
    fn relu(x: &Tensor) -> Result<Tensor> {
        Err(unsupported("relu", x.device()))
    }
    fn relu_inplace(x: &mut Tensor) -> Result<()> {
        Err(unsupported("relu_inplace", x.device()))
    }
    fn relu_backward(dy: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Err(unsupported("relu_backward", dy.device()))
    }
    fn add(a: &Tensor, _b: &Tensor) -> Result<Tensor> {
        Err(unsupported("add", a.device()))
    }
    fn add_assign(a: &mut Tensor, _b: &Tensor) -> Result<()> {
        Err(unsupported("add_assign", a.device()))
    }
    fn scale(x: &mut Tensor, _s: f32) -> Result<()> {
        Err(unsupported("scale", x.device()))
    }
    fn control_variate(dst: &mut Tensor, _g: &Tensor, _mu: &Tensor, _c: f32) -> Result<()> {
        Err(unsupported("control_variate", dst.device()))
    }
}
