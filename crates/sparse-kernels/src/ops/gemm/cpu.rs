//! CPU SGEMM through the `gemm` crate (runtime-dispatched AVX2/AVX-512 microkernels).

/// Products below this many multiply-adds run single-threaded.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// Row-major `C (m x n) = alpha · op(A) · op(B) + beta · C`. `A` is stored `m x k`
/// (or `k x m` when `ta`), `B` is stored `k x n` (or `n x k` when `tb`). `parallel`
/// allows the rayon pool (pass false from inside a rayon task).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    beta: f32,
    c: &mut [f32],
    parallel: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        if beta == 0.0 {
            c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let par = if parallel && m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserted lengths cover every element addressed by the strides above.
    // gemm's convention is dst := alpha·dst + beta·lhs·rhs, hence the swapped scalars.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

impl super::GemmOps for crate::backend::CpuBackend {
    fn gemm(
        alpha: f32,
        a: &crate::Tensor,
        trans_a: bool,
        b: &crate::Tensor,
        trans_b: bool,
        beta: f32,
        c: &mut crate::Tensor,
    ) -> crate::Result<()> {
        let (ar, ac) = (a.shape()[0], a.shape()[1]);
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let n = c.shape()[1];
        sgemm(
            m,
            n,
            k,
            alpha,
            a.cpu_data()?,
            trans_a,
            b.cpu_data()?,
            trans_b,
            beta,
            c.cpu_data_mut()?,
            true,
        );
        Ok(())
    }
}
