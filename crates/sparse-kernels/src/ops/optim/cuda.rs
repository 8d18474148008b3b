//! SGD on CUDA: not implemented yet (the CUDA backend issue adds `kernels/optim.cu`).

use super::{MaskPolicy, OptimOps, SgdConfig};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::Tensor;

impl OptimOps for CudaBackend {
    fn sgd_step(
        w: &mut Tensor,
        _g: &Tensor,
        _buf: &mut Tensor,
        _mask: MaskPolicy,
        _cfg: &SgdConfig,
    ) -> Result<()> {
        Err(unsupported("sgd_step", w.device()))
    }
    fn score_step(
        s: &mut Tensor,
        _b: &mut Tensor,
        _g: &Tensor,
        _w: &Tensor,
        _m: f32,
        _lr: f32,
    ) -> Result<()> {
        Err(unsupported("score_step", s.device()))
    }
}
