//! Dense GEMM on CUDA: cuBLAS SGEMM (the CPU GEMM on the emulated device).

use super::GemmOps;
use crate::backend::gpu::launch::{ctx_of, dptr};
use crate::backend::gpu::GemmCall;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::tensor::Tensor;

/// `c = alpha·op(a)·op(b) + beta·c` for 2-D tensors whose shapes were checked.
pub(crate) fn gemm_into(
    alpha: f32,
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    beta: f32,
    c: &Tensor,
) -> Result<()> {
    let (m, n) = (c.shape()[0], c.shape()[1]);
    let k = if ta { a.shape()[0] } else { a.shape()[1] };
    raw_gemm(m, n, k, alpha, a, ta, b, tb, beta, c)
}

/// The same on buffers viewed as `op(A)`: `m x k`, `op(B)`: `k x n`, `C`: `m x n`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn raw_gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    beta: f32,
    c: &Tensor,
) -> Result<()> {
    ctx_of(c)?.gemm(GemmCall {
        m,
        n,
        k,
        alpha,
        a: dptr(a)?,
        ta,
        b: dptr(b)?,
        tb,
        beta,
        c: dptr(c)?,
    })
}

impl GemmOps for CudaBackend {
    fn gemm(
        alpha: f32,
        a: &Tensor,
        trans_a: bool,
        b: &Tensor,
        trans_b: bool,
        beta: f32,
        c: &mut Tensor,
    ) -> Result<()> {
        gemm_into(alpha, a, trans_a, b, trans_b, beta, c)
    }
}
