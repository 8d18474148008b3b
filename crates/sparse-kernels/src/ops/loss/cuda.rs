//! Cross-entropy and accuracy on CUDA (`kernels/loss.cu`). The per-row losses come back to
//! the host and are summed there in row order (the loss is logged every step anyway).

use super::{CrossEntropy, LossOps};
use crate::backend::gpu::launch::{ctx_of, grid_1d, Args, BLOCK};
use crate::backend::gpu::{Family, LaunchDims};
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor, TensorOf};

const F: Family = Family::Loss;

impl LossOps for CudaBackend {
    fn softmax_cross_entropy(
        logits: &Tensor,
        labels: &IndexTensor,
        smoothing: f32,
    ) -> Result<CrossEntropy> {
        let (b, k) = (logits.shape()[0], logits.shape()[1]);
        let dev = logits.device();
        let grad = Tensor::zeros(&[b, k], dev)?;
        let rows = TensorOf::<f64>::zeros(&[b], dev)?;
        let off = smoothing as f64 / k as f64;
        let on = 1.0 - smoothing as f64 + off;
        let warps = (BLOCK / 32) as usize;
        let dims = LaunchDims {
            grid: [b.div_ceil(warps) as u32, 1, 1],
            block: [BLOCK, 1, 1],
            shared_bytes: 0,
        };
        let args = Args::new()
            .t(logits)?
            .t(labels)?
            .i(b)
            .i(k)
            .d(on)
            .d(off)
            .t(&grad)?
            .t(&rows)?;
        ctx_of(logits)?.launch(F, "softmax_xent", dims, args)?;
        let loss = rows.to_host()?.iter().sum::<f64>() / b as f64;
        Ok(CrossEntropy {
            loss,
            dlogits: grad,
        })
    }

    fn topk_correct(logits: &Tensor, labels: &IndexTensor, top: usize) -> Result<usize> {
        let (b, k) = (logits.shape()[0], logits.shape()[1]);
        let flags = IndexTensor::zeros(&[b], logits.device())?;
        let args = Args::new()
            .t(logits)?
            .t(labels)?
            .i(b)
            .i(k)
            .i(top)
            .t(&flags)?;
        ctx_of(logits)?.launch(F, "topk_flags", grid_1d(b), args)?;
        Ok(flags.to_host()?.iter().filter(|&&f| f == 1).count())
    }

    fn max_label(labels: &IndexTensor) -> Result<u32> {
        let out = IndexTensor::zeros(&[1], labels.device())?;
        let args = Args::new().t(labels)?.i(labels.numel()).t(&out)?;
        ctx_of(labels)?.launch(F, "max_label", grid_1d(1), args)?;
        Ok(out.to_host()?[0])
    }
}
