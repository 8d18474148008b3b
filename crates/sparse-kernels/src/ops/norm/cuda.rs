//! Batch norm on CUDA: not implemented yet (the CUDA backend issue adds `kernels/norm.cu`).

use super::{BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::Tensor;

impl NormOps for CudaBackend {
    fn batch_norm_train(
        x: &Tensor,
        _g: &Tensor,
        _b: &Tensor,
        _rm: &mut Tensor,
        _rv: &mut Tensor,
        _p: BatchNormParams,
    ) -> Result<(Tensor, BatchNormCache)> {
        Err(unsupported("batch_norm_train", x.device()))
    }
    fn batch_norm_eval(
        x: &Tensor,
        _g: &Tensor,
        _b: &Tensor,
        _rm: &Tensor,
        _rv: &Tensor,
        _eps: f32,
    ) -> Result<Tensor> {
        Err(unsupported("batch_norm_eval", x.device()))
    }
    fn batch_norm_backward(
        dy: &Tensor,
        _c: &BatchNormCache,
        _g: &Tensor,
    ) -> Result<BatchNormGrads> {
        Err(unsupported("batch_norm_backward", dy.device()))
    }
}
