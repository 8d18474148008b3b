//! Batch norm on CUDA (`kernels/norm.cu`): per-channel f64 sums, one block per channel.

use super::{dims, BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::gpu::launch::{block_per, ctx_of, grid_1d, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::{Tensor, TensorOf};

const F: Family = Family::Norm;

fn to_f32(x: &TensorOf<f64>) -> Result<Tensor> {
    let y = Tensor::zeros(x.shape(), x.device())?;
    let n = x.numel();
    let args = Args::new().t(x)?.t(&y)?.i(n);
    ctx_of(x)?.launch(F, "f64_to_f32", grid_1d(n), args)?;
    Ok(y)
}

impl NormOps for CudaBackend {
    fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        p: BatchNormParams,
    ) -> Result<(Tensor, BatchNormCache)> {
        let (b, c, hw) = dims(x)?;
        let ctx = ctx_of(x)?;
        let dev = x.device();
        let mean = TensorOf::<f64>::zeros(&[c], dev)?;
        let inv_std = Tensor::zeros(&[c], dev)?;
        let args = Args::new()
            .t(x)?
            .i(b)
            .i(c)
            .i(hw)
            .f(p.eps)
            .f(p.momentum)
            .t(&mean)?
            .t(&inv_std)?
            .t(running_mean)?
            .t(running_var)?;
        ctx.launch(F, "bn_stats", block_per(c), args)?;
        let xhat = Tensor::zeros(x.shape(), dev)?;
        let y = Tensor::zeros(x.shape(), dev)?;
        let n = x.numel();
        let args = Args::new()
            .t(x)?
            .t(&mean)?
            .t(&inv_std)?
            .t(gamma)?
            .t(beta)?
            .t(&xhat)?
            .t(&y)?
            .i(c)
            .i(hw)
            .i(n)
            .i(p.relu as usize);
        ctx.launch(F, "bn_apply_train", grid_1d(n), args)?;
        Ok((
            y,
            BatchNormCache {
                xhat,
                inv_std,
                relu_beta: None,
            },
        ))
    }

    fn batch_norm_eval(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        relu: bool,
    ) -> Result<Tensor> {
        let (_, c, hw) = dims(x)?;
        let y = Tensor::zeros(x.shape(), x.device())?;
        let n = x.numel();
        let args = Args::new()
            .t(x)?
            .t(gamma)?
            .t(beta)?
            .t(running_mean)?
            .t(running_var)?
            .f(eps)
            .t(&y)?
            .i(c)
            .i(hw)
            .i(n)
            .i(relu as usize);
        ctx_of(x)?.launch(F, "bn_eval", grid_1d(n), args)?;
        Ok(y)
    }

    fn batch_norm_backward(
        dy: &Tensor,
        cache: &BatchNormCache,
        gamma: &Tensor,
    ) -> Result<BatchNormGrads> {
        let (b, c, hw) = dims(dy)?;
        let ctx = ctx_of(dy)?;
        let dev = dy.device();
        let sum_dy = TensorOf::<f64>::zeros(&[c], dev)?;
        let sum_dy_xh = TensorOf::<f64>::zeros(&[c], dev)?;
        // Without a fused ReLU the kernels ignore β; γ stands in for the pointer.
        let (beta, relu) = match &cache.relu_beta {
            Some(bt) => (bt, 1),
            None => (gamma, 0),
        };
        let args = Args::new()
            .t(dy)?
            .t(&cache.xhat)?
            .t(gamma)?
            .t(beta)?
            .i(relu)
            .i(b)
            .i(c)
            .i(hw)
            .t(&sum_dy)?
            .t(&sum_dy_xh)?;
        ctx.launch(F, "bn_backward_sums", block_per(c), args)?;
        let dx = Tensor::zeros(dy.shape(), dev)?;
        let n = dy.numel();
        let args = Args::new()
            .t(dy)?
            .t(&cache.xhat)?
            .t(&cache.inv_std)?
            .t(gamma)?
            .t(beta)?
            .i(relu)
            .t(&sum_dy)?
            .t(&sum_dy_xh)?
            .t(&dx)?
            .i(c)
            .i(hw)
            .i(b * hw)
            .i(n);
        ctx.launch(F, "bn_backward_dx", grid_1d(n), args)?;
        Ok(BatchNormGrads {
            dx,
            dgamma: to_f32(&sum_dy_xh)?,
            dbeta: to_f32(&sum_dy)?,
        })
    }
}
