//! CPU SGEMM through the `gemm` crate (runtime-dispatched AVX2/AVX-512 microkernels).

/// Products below this many multiply-adds run single-threaded.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// A read-only matrix view: element `(i, j)` at `data[i·rs + j·cs]`. Rows may overlap
/// (`rs` smaller than the row's extent), as in the shifted views of a padded NHWC image.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &[f32], cols: usize) -> View<'_> {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `cols x rows` matrix, viewed as `rows x cols`.
    pub fn transposed(data: &[f32], rows: usize) -> View<'_> {
        View {
            data,
            rs: 1,
            cs: rows,
        }
    }

    /// Whether every element of a `rows x cols` view lies inside `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

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
    let a = if ta {
        View::transposed(a, m)
    } else {
        View::rows(a, k)
    };
    let b = if tb {
        View::transposed(b, k)
    } else {
        View::rows(b, n)
    };
    sgemm_view((m, n, k), alpha, a, b, beta, c, parallel);
}

/// Row-major `C (m x n) = alpha · A (m x k) · B (k x n) + beta · C` over strided views.
pub(crate) fn sgemm_view(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: &mut [f32],
    parallel: bool,
) {
    assert!(a.covers(m, k) && b.covers(k, n) && c.len() >= m * n);
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
    let par = if parallel && m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `covers` checked that every element addressed by the views' strides lies in
    // its slice, and `c` holds `m x n`. gemm's convention is dst := alpha·dst +
    // beta·lhs·rhs, hence the swapped scalars.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
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
