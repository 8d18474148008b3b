//! Pooling on CUDA: not implemented yet (the CUDA backend issue adds `kernels/pool.cu`).

use super::PoolOps;
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor};

impl PoolOps for CudaBackend {
    fn max_pool2x2(x: &Tensor) -> Result<(Tensor, IndexTensor)> {
        Err(unsupported("max_pool2x2", x.device()))
    }
    fn max_pool2x2_backward(dy: &Tensor, _a: &IndexTensor, _s: &[usize]) -> Result<Tensor> {
        Err(unsupported("max_pool2x2_backward", dy.device()))
    }
    fn avg_pool(x: &Tensor, _k: usize) -> Result<Tensor> {
        Err(unsupported("avg_pool", x.device()))
    }
    fn avg_pool_backward(dy: &Tensor, _k: usize, _s: &[usize]) -> Result<Tensor> {
        Err(unsupported("avg_pool_backward", dy.device()))
    }
    fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
        Err(unsupported("global_avg_pool", x.device()))
    }
    fn global_avg_pool_backward(dy: &Tensor, _s: &[usize]) -> Result<Tensor> {
        Err(unsupported("global_avg_pool_backward", dy.device()))
    }
}
