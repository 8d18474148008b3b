//! CPU implementations of the masked and sparse products.

use rayon::prelude::*;
use sparse_core::{Csr, Mask};

use crate::ops::gemm::cpu::sgemm;
use crate::simd;

/// Rows of `W` masked per panel in the masked GEMM.
const PANEL: usize = 32;
/// Rows per parallel task in SpMM and SDDMM.
const ROW_BLOCK: usize = 16;

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
    if parallel {
        out.par_chunks_mut(PANEL * n).enumerate().for_each(body);
    } else {
        out.chunks_mut(PANEL * n).enumerate().for_each(body);
    }
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
    if parallel {
        out.par_chunks_mut(PANEL * n).enumerate().for_each(body);
    } else {
        out.chunks_mut(PANEL * n).enumerate().for_each(body);
    }
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
    if n == 0 {
        return;
    }
    let body = |(b, o): (usize, &mut [f32])| {
        simd::spmm_rows(
            a.row_ptr(),
            a.col_idx(),
            a.values(),
            b * ROW_BLOCK,
            x,
            n,
            alpha,
            beta,
            o,
        )
    };
    let out = &mut out[..a.rows() * n];
    if parallel {
        out.par_chunks_mut(ROW_BLOCK * n).enumerate().for_each(body);
    } else {
        out.chunks_mut(ROW_BLOCK * n).enumerate().for_each(body);
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

/// Dense-layout SDDMM: `out[r, c] = dot(dY[r], X[c])` at set mask bits, 0 elsewhere.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sddmm_mask(
    mask: &Mask,
    _rows: usize,
    cols: usize,
    dy: &[f32],
    x: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    if cols == 0 {
        return;
    }
    let body = |(r, o): (usize, &mut [f32])| {
        o.iter_mut().for_each(|v| *v = 0.0);
        let d = &dy[r * n..(r + 1) * n];
        for i in mask.iter_ones_in(r * cols, (r + 1) * cols) {
            let c = i - r * cols;
            o[c] = simd::dot(d, &x[c * n..(c + 1) * n]);
        }
    };
    if parallel {
        out.par_chunks_mut(cols).enumerate().for_each(body);
    } else {
        out.chunks_mut(cols).enumerate().for_each(body);
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
