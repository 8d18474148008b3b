//! Element-wise ops on CUDA (`kernels/activation.cu`).

use super::ElementwiseOps;
use crate::backend::gpu::launch::{ctx_of, grid_1d, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::Tensor;

const F: Family = Family::Activation;

fn unary(kernel: &str, x: &Tensor, y: &Tensor) -> Result<()> {
    let n = x.numel();
    let args = Args::new().t(x)?.t(y)?.i(n);
    ctx_of(x)?.launch(F, kernel, grid_1d(n), args)
}

fn binary(kernel: &str, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let n = a.numel();
    let args = Args::new().t(a)?.t(b)?.t(out)?.i(n);
    ctx_of(a)?.launch(F, kernel, grid_1d(n), args)
}

impl ElementwiseOps for CudaBackend {
    fn relu(x: &Tensor) -> Result<Tensor> {
        let y = Tensor::zeros(x.shape(), x.device())?;
        unary("relu_f32", x, &y)?;
        Ok(y)
    }
    fn relu_inplace(x: &mut Tensor) -> Result<()> {
        unary("relu_f32", x, x)
    }
    fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        let dx = Tensor::zeros(dy.shape(), dy.device())?;
        binary("relu_backward_f32", dy, y, &dx)?;
        Ok(dx)
    }
    fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let out = Tensor::zeros(a.shape(), a.device())?;
        binary("add_f32", a, b, &out)?;
        Ok(out)
    }
    fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
        binary("add_f32", a, b, a)
    }
    fn add_relu_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
        binary("add_relu_f32", a, b, a)
    }
    fn scale(x: &mut Tensor, s: f32) -> Result<()> {
        let n = x.numel();
        let args = Args::new().t(x)?.f(s).i(n);
        ctx_of(x)?.launch(F, "scale_f32", grid_1d(n), args)
    }
    fn control_variate(dst: &mut Tensor, g: &Tensor, mu: &Tensor, c: f32) -> Result<()> {
        let n = dst.numel();
        let args = Args::new().t(dst)?.t(g)?.t(mu)?.f(c).i(n);
        ctx_of(dst)?.launch(F, "control_variate_f32", grid_1d(n), args)
    }
}
