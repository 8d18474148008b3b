//! Dense GEMM on CUDA: not implemented yet (the CUDA backend issue calls cuBLAS here).

use super::GemmOps;
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::Tensor;

impl GemmOps for CudaBackend {
    fn gemm(
        _alpha: f32,
        a: &Tensor,
        _ta: bool,
        _b: &Tensor,
        _tb: bool,
        _beta: f32,
        _c: &mut Tensor,
    ) -> Result<()> {
        Err(unsupported("gemm", a.device()))
    }
}
