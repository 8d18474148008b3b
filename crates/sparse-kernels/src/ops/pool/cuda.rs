//! Pooling on CUDA (`kernels/pool.cu`).

use super::{nchw, PoolOps};
use crate::backend::gpu::launch::{ctx_of, grid_1d, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor};

const F: Family = Family::Pool;

impl PoolOps for CudaBackend {
    fn max_pool2x2(x: &Tensor) -> Result<(Tensor, IndexTensor)> {
        let (b, c, h, w) = nchw("max_pool2x2", x.shape())?;
        let shape = [b, c, h / 2, w / 2];
        let y = Tensor::zeros(&shape, x.device())?;
        let arg = IndexTensor::zeros(&shape, x.device())?;
        let args = Args::new().t(x)?.t(&y)?.t(&arg)?.i(b * c).i(h).i(w);
        ctx_of(x)?.launch(F, "max_pool2x2_fwd", grid_1d(y.numel()), args)?;
        Ok((y, arg))
    }

    fn max_pool2x2_backward(
        dy: &Tensor,
        argmax: &IndexTensor,
        input_shape: &[usize],
    ) -> Result<Tensor> {
        let dx = Tensor::zeros(input_shape, dy.device())?;
        let n = dy.numel();
        let args = Args::new().t(dy)?.t(argmax)?.t(&dx)?.i(n).i(dx.numel());
        ctx_of(dy)?.launch(F, "max_pool2x2_bwd", grid_1d(n), args)?;
        Ok(dx)
    }

    fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
        let (b, c, h, w) = nchw("avg_pool", x.shape())?;
        let y = Tensor::zeros(&[b, c, h / k, w / k], x.device())?;
        let args = Args::new().t(x)?.t(&y)?.i(b * c).i(h).i(w).i(k);
        ctx_of(x)?.launch(F, "avg_pool_fwd", grid_1d(y.numel()), args)?;
        Ok(y)
    }

    fn avg_pool_backward(dy: &Tensor, k: usize, input_shape: &[usize]) -> Result<Tensor> {
        let (b, c, h, w) = nchw("avg_pool_backward", input_shape)?;
        let dx = Tensor::zeros(input_shape, dy.device())?;
        let args = Args::new().t(dy)?.t(&dx)?.i(b * c).i(h).i(w).i(k);
        ctx_of(dy)?.launch(F, "avg_pool_bwd", grid_1d(dx.numel()), args)?;
        Ok(dx)
    }

    fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = nchw("global_avg_pool", x.shape())?;
        let y = Tensor::zeros(&[b, c], x.device())?;
        let args = Args::new().t(x)?.t(&y)?.i(b * c).i(h * w);
        ctx_of(x)?.launch(F, "global_avg_pool_fwd", grid_1d(b * c), args)?;
        Ok(y)
    }

    fn global_avg_pool_backward(dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
        let (_, _, h, w) = nchw("global_avg_pool_backward", input_shape)?;
        let dx = Tensor::zeros(input_shape, dy.device())?;
        let n = dx.numel();
        let args = Args::new().t(dy)?.t(&dx)?.i(h * w).i(n);
        ctx_of(dy)?.launch(F, "global_avg_pool_bwd", grid_1d(n), args)?;
        Ok(dx)
    }
}
