//! SGD on CUDA (`kernels/optim.cu`): one fused pass, with the mask read from its device
//! words.

use super::{MaskPolicy, OptimOps, SgdConfig};
use crate::backend::gpu::launch::{ctx_of, grid_1d, words, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::Tensor;

const F: Family = Family::Optim;

impl OptimOps for CudaBackend {
    fn sgd_step(
        w: &mut Tensor,
        g: &Tensor,
        buf: &mut Tensor,
        mask: MaskPolicy,
        cfg: &SgdConfig,
    ) -> Result<()> {
        let (mode, wp) = match mask {
            MaskPolicy::None => (0, 0),
            MaskPolicy::Weights(m) | MaskPolicy::Active(m) => (1, words(m)?),
            MaskPolicy::Gradient(m) => (2, words(m)?),
        };
        let n = w.numel();
        let args = Args::new()
            .t(w)?
            .t(g)?
            .t(buf)?
            .ptr(wp)
            .i(mode)
            .f(cfg.lr)
            .f(cfg.momentum)
            .i(cfg.nesterov as usize)
            .f(cfg.weight_decay)
            .i(n);
        ctx_of(w)?.launch(F, "sgd_step", grid_1d(n), args)
    }

    fn score_step(
        scores: &mut Tensor,
        buf: &mut Tensor,
        g: &Tensor,
        w: &Tensor,
        momentum: f32,
        lr: f32,
    ) -> Result<()> {
        let n = scores.numel();
        let args = Args::new()
            .t(scores)?
            .t(buf)?
            .t(g)?
            .t(w)?
            .f(momentum)
            .f(lr)
            .i(n);
        ctx_of(scores)?.launch(F, "score_step", grid_1d(n), args)
    }
}
