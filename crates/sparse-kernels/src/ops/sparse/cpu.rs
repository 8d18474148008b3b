//! CPU implementations of the masked and sparse products.

use rayon::prelude::*;
use sparse_core::{Csr, Mask};

use super::spmm_simd;
use crate::ops::gemm::cpu::sgemm;
use crate::simd;

/// Rows of `W` masked per panel in the masked GEMM.
const PANEL: usize = 32;
/// Rows per parallel task in SpMM and SDDMM.
const ROW_BLOCK: usize = 16;

/// Runs `body((index, chunk))` over `size`-element chunks of `out`, on the rayon pool when
/// `parallel`.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    size: usize,
    parallel: bool,
    body: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    if parallel {
        out.par_chunks_mut(size).enumerate().for_each(body);
    } else {
        out.chunks_mut(size).enumerate().for_each(body);
    }
}

/// `out (m x n) = (W ⊙ M) · X`, masking `PANEL` rows at a time into a scratch panel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn masked_mm(
    w: &[f32],
    mask: &Mask,
    k: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let body = |(p, o): (usize, &mut [f32])| {
        let r0 = p * PANEL;
        let rows = o.len() / n.max(1);
        let mut panel = vec![0f32; rows * k];
        for i in mask.iter_ones_in(r0 * k, (r0 + rows) * k) {
            panel[i - r0 * k] = w[i];
        }
        sgemm(rows, n, k, 1.0, &panel, false, x, false, 0.0, o, false);
    };
    if n == 0 {
        return;
    }
    for_each_chunk(out, PANEL * n, parallel, body);
}

/// `out (k x n) = (W ⊙ M)ᵀ · Y`, masking and transposing `PANEL` columns of `W` at a time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn masked_mm_t(
    w: &[f32],
    mask: &Mask,
    m: usize,
    k: usize,
    y: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let body = |(p, o): (usize, &mut [f32])| {
        let c0 = p * PANEL;
        let cols = o.len() / n.max(1);
        // panel[cc][i] = W[i][c0 + cc] · M[i][c0 + cc]
        let mut panel = vec![0f32; cols * m];
        for i in 0..m {
            for cc in 0..cols {
                let f = i * k + c0 + cc;
                if mask.get(f) {
                    panel[cc * m + i] = w[f];
                }
            }
        }
        sgemm(cols, n, m, 1.0, &panel, false, y, false, 0.0, o, false);
    };
    if n == 0 {
        return;
    }
    for_each_chunk(out, PANEL * n, parallel, body);
}

/// `out (rows x n) = alpha · A · X + beta · out`.
pub(crate) fn spmm(
    a: &Csr,
    x: &[f32],
    n: usize,
    alpha: f32,
    beta: f32,
    out: &mut [f32],
    parallel: bool,
) {
    if n == 0 || a.rows() == 0 {
        return;
    }
    let out = &mut out[..a.rows() * n];
    let run = |r0: usize, o: &mut [f32]| {
        let rows = spmm_simd::SpmmRows {
            row_ptr: a.row_ptr(),
            col_idx: a.col_idx(),
            vals: a.values(),
            r0,
            x,
            n,
            alpha,
            beta,
        };
        spmm_simd::spmm_rows(&rows, o)
    };
    if parallel {
        // A few blocks per thread: large enough to reuse each X tile across many rows.
        let block = a
            .rows()
            .div_ceil(4 * rayon::current_num_threads())
            .max(ROW_BLOCK);
        out.par_chunks_mut(block * n)
            .enumerate()
            .for_each(|(b, o)| run(b * block, o));
    } else {
        run(0, out);
    }
}

/// SDDMM values in CSR entry order.
pub(crate) fn sddmm_csr(s: &Csr, dy: &[f32], x: &[f32], n: usize) -> Vec<f32> {
    let mut vals = vec![0f32; s.nnz()];
    let row_ptr = s.row_ptr();
    // Split the value array by rows so each task owns its rows' entries.
    let mut parts = Vec::with_capacity(s.rows());
    let mut rest = vals.as_mut_slice();
    for r in 0..s.rows() {
        let len = (row_ptr[r + 1] - row_ptr[r]) as usize;
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        parts.push((r, head));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(r, out)| {
        let d = &dy[r * n..(r + 1) * n];
        for (o, &c) in out.iter_mut().zip(s.row(r).0) {
            *o = simd::dot(d, &x[c as usize * n..(c as usize + 1) * n]);
        }
    });
    vals
}

/// Reduction-dimension tile of the dense-layout SDDMM (keeps a `rows x NT` slab of `dY`
/// in L2 while every column's entries are computed).
const SDDMM_TILE: usize = 512;

/// Dense-layout SDDMM: `out[r, c] = dot(dY[r], X[c])` at set mask bits. Other entries of
/// `out` are left as they are: callers pass buffers that are zero there (fresh ones, or
/// the previous gradient under the same mask, see [`super::AtMaskGradMemo`]).
///
/// Entries are visited column by column (through the transposed structure), so one row of
/// `X` stays in L1 while it meets every active row of `dY`, and the reduction dimension is
/// tiled so the slab of `dY` in use stays in L2.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sddmm_mask(
    mask: &Mask,
    rows: usize,
    cols: usize,
    dy: &[f32],
    x: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    if cols == 0 || rows == 0 {
        return;
    }
    // Transposed structure: for each column, its active rows (ascending).
    let mut col_ptr = vec![0u32; cols + 1];
    for i in mask.iter_ones() {
        col_ptr[i % cols + 1] += 1;
    }
    for c in 0..cols {
        col_ptr[c + 1] += col_ptr[c];
    }
    let mut next = col_ptr.clone();
    let mut row_of = vec![0u32; col_ptr[cols] as usize];
    for i in mask.iter_ones() {
        let c = i % cols;
        row_of[next[c] as usize] = (i / cols) as u32;
        next[c] += 1;
    }
    sddmm_columns((&col_ptr, &row_of), cols, dy, x, n, out, parallel);
}

/// [`sddmm_mask`] over a given transposed structure `(col_ptr, row_of)`: for each column,
/// its active rows in ascending order (a [`SparseWeight`](super::SparseWeight)'s `csr_t`
/// holds exactly that).
pub(crate) fn sddmm_columns(
    (col_ptr, row_of): (&[u32], &[u32]),
    cols: usize,
    dy: &[f32],
    x: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let mut acc = vec![0f32; row_of.len()];
    // Column blocks own disjoint slices of `acc`.
    let cblock = if parallel {
        cols.div_ceil(8 * rayon::current_num_threads()).max(1)
    } else {
        cols
    };
    let mut parts = Vec::new();
    let mut rest = acc.as_mut_slice();
    let mut c0 = 0;
    while c0 < cols {
        let c1 = (c0 + cblock).min(cols);
        let len = (col_ptr[c1] - col_ptr[c0]) as usize;
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        parts.push((c0, c1, head));
        rest = tail;
        c0 = c1;
    }
    let work = |(c0, c1, a): (usize, usize, &mut [f32])| {
        let base = col_ptr[c0] as usize;
        let mut t0 = 0;
        while t0 < n {
            let t1 = (t0 + SDDMM_TILE).min(n);
            for c in c0..c1 {
                let (e0, e1) = (col_ptr[c] as usize, col_ptr[c + 1] as usize);
                let xr = &x[c * n + t0..c * n + t1];
                simd::dots_into(
                    dy,
                    n,
                    (t0, t1),
                    xr,
                    &row_of[e0..e1],
                    &mut a[e0 - base..e1 - base],
                );
            }
            t0 = t1;
        }
    };
    if parallel {
        parts.into_par_iter().for_each(work);
    } else {
        parts.into_iter().for_each(work);
    }
    for c in 0..cols {
        for e in col_ptr[c] as usize..col_ptr[c + 1] as usize {
            out[row_of[e] as usize * cols + c] = acc[e];
        }
    }
}

/// The transpose of `a` plus, for each transposed entry, its entry index in `a`.
pub(crate) fn transpose_with_perm(a: &Csr) -> (Csr, Vec<u32>) {
    let t = a.transpose();
    let mut next: Vec<u32> = t.row_ptr()[..t.rows()].to_vec();
    let mut perm = vec![0u32; a.nnz()];
    for r in 0..a.rows() {
        let base = a.row_ptr()[r];
        for (j, &c) in a.row(r).0.iter().enumerate() {
            let dst = next[c as usize] as usize;
            next[c as usize] += 1;
            perm[dst] = base + j as u32;
        }
    }
    (t, perm)
}

impl super::SparseOps for crate::backend::CpuBackend {
    fn masked_matmul(
        w: &crate::Tensor,
        mask: &crate::DeviceMask,
        x: &crate::Tensor,
        transposed: bool,
    ) -> crate::Result<crate::Tensor> {
        let (m, k) = sparse_core::matrix_view(w.shape());
        let n = x.shape()[1];
        let (wv, xv, mk) = (w.cpu_data()?, x.cpu_data()?, mask.mask());
        let rows = if transposed { k } else { m };
        let mut out = vec![0f32; rows * n];
        if transposed {
            masked_mm_t(wv, mk, m, k, xv, n, &mut out, true);
        } else {
            masked_mm(wv, mk, k, xv, n, &mut out, true);
        }
        crate::Tensor::from_vec(&[rows, n], out, w.device())
    }

    fn spmm_into(
        alpha: f32,
        a: &Csr,
        x: &crate::Tensor,
        beta: f32,
        out: &mut crate::Tensor,
    ) -> crate::Result<()> {
        let n = x.shape()[1];
        spmm(a, x.cpu_data()?, n, alpha, beta, out.cpu_data_mut()?, true);
        Ok(())
    }

    fn sparse_weight_mm_into(
        alpha: f32,
        w: &super::SparseWeight,
        transposed: bool,
        x: &crate::Tensor,
        beta: f32,
        out: &mut crate::Tensor,
    ) -> crate::Result<()> {
        let n = x.shape()[1];
        w.spmm(
            transposed,
            x.cpu_data()?,
            n,
            alpha,
            beta,
            out.cpu_data_mut()?,
            true,
        );
        Ok(())
    }

    fn sddmm(s: &Csr, dy: &crate::Tensor, x: &crate::Tensor) -> crate::Result<crate::Tensor> {
        let n = dy.shape()[1];
        let v = sddmm_csr(s, dy.cpu_data()?, x.cpu_data()?, n);
        crate::Tensor::from_vec(&[v.len()], v, dy.device())
    }

    fn sparse_weight_sddmm(
        w: &super::SparseWeight,
        dy: &crate::Tensor,
        x: &crate::Tensor,
    ) -> crate::Result<crate::Tensor> {
        Self::sddmm(w.csr(), dy, x)
    }

    fn sddmm_masked(
        mask: &crate::DeviceMask,
        dy: &crate::Tensor,
        x: &crate::Tensor,
    ) -> crate::Result<crate::Tensor> {
        let (rows, cols) = sparse_core::matrix_view(mask.shape());
        let n = dy.shape()[1];
        let mut out = vec![0f32; rows * cols];
        sddmm_mask(
            mask.mask(),
            rows,
            cols,
            dy.cpu_data()?,
            x.cpu_data()?,
            n,
            &mut out,
            true,
        );
        crate::Tensor::from_vec(mask.shape(), out, dy.device())
    }
}
