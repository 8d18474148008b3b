//! Masked and sparse matrix products, and the weight operand every layer uses.
//!
//! * [`masked_matmul`] / [`masked_matmul_t`]: `(W ⊙ M)·X` and `(W ⊙ M)ᵀ·Y` without
//!   materialising the masked copy (row or column panels are masked on the fly).
//! * [`spmm`]: CSR × dense; with [`SparseWeight`]'s cached transpose also CSRᵀ × dense.
//! * [`sddmm`] / [`sddmm_masked`]: `dY·Xᵀ` only at a sparsity pattern (the weight gradient
//!   of a sparse layer on ordinary steps).
//! * [`WeightRef`]: dense, masked or sparse execution of one weight, chosen by density
//!   through [`crate::ExecPolicy`].

mod blocked;
pub(crate) mod cpu;

use std::sync::OnceLock;

use blocked::BlockedCsr;
use sparse_core::{matrix_view, Csr, Mask};

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// A sparse weight ready for execution: CSR, its transpose, and the maps that refresh both
/// from the dense master weight in O(nnz) after each optimizer step. On AVX-512 machines the
/// first SpMM with either form also builds a cache-blocked copy of it (where the density
/// makes that faster), refreshed with the rest from then on.
#[derive(Debug, Clone)]
pub struct SparseWeight {
    csr: Csr,
    csr_t: Csr,
    blocked: OnceLock<Option<BlockedCsr>>,
    blocked_t: OnceLock<Option<BlockedCsr>>,
    /// Flat index in the dense weight of every CSR entry.
    flat: Vec<u32>,
    /// For every entry of `csr_t`, its entry index in `csr`.
    perm_t: Vec<u32>,
}

impl SparseWeight {
    /// Builds from a dense weight and its mask (the structure is the mask).
    pub fn new(w: &Tensor, mask: &Mask) -> Result<Self> {
        check_mask("sparse weight", w, mask)?;
        let csr = Csr::from_dense_masked(w.as_slice(), mask)?;
        let flat: Vec<u32> = mask.iter_ones().map(|i| i as u32).collect();
        let (csr_t, perm_t) = cpu::transpose_with_perm(&csr);
        Ok(SparseWeight {
            csr,
            csr_t,
            blocked: OnceLock::new(),
            blocked_t: OnceLock::new(),
            flat,
            perm_t,
        })
    }

    /// Copies the current values of the dense weight into both CSR forms (structure fixed).
    pub fn refresh(&mut self, w: &Tensor) -> Result<()> {
        if w.shape() != self.csr.shape() {
            return shape_err(
                "sparse weight refresh",
                format!("weight {:?} vs structure {:?}", w.shape(), self.csr.shape()),
            );
        }
        let src = w.as_slice();
        let vals = self.csr.values_mut();
        for (v, &f) in vals.iter_mut().zip(&self.flat) {
            *v = src[f as usize];
        }
        let vals = self.csr.values();
        let tvals: Vec<f32> = self.perm_t.iter().map(|&e| vals[e as usize]).collect();
        self.csr_t.values_mut().copy_from_slice(&tvals);
        if let Some(Some(b)) = self.blocked.get_mut() {
            b.refresh(&self.csr);
        }
        if let Some(Some(b)) = self.blocked_t.get_mut() {
            b.refresh(&self.csr_t);
        }
        Ok(())
    }

    /// The CSR form (`rows x cols` view of the weight).
    pub fn csr(&self) -> &Csr {
        &self.csr
    }

    /// The transposed CSR form.
    pub fn csr_t(&self) -> &Csr {
        &self.csr_t
    }

    /// `out = alpha · W · X + beta · out` (`W` or, with `transposed`, `Wᵀ`), through the
    /// cache-blocked layout when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spmm(
        &self,
        transposed: bool,
        x: &[f32],
        n: usize,
        alpha: f32,
        beta: f32,
        out: &mut [f32],
        parallel: bool,
    ) {
        let (csr, blocked) = if transposed {
            (&self.csr_t, &self.blocked_t)
        } else {
            (&self.csr, &self.blocked)
        };
        let blocked =
            blocked.get_or_init(|| BlockedCsr::worthwhile(csr).then(|| BlockedCsr::new(csr)));
        match blocked {
            Some(b) => b.spmm(x, n, alpha, beta, out, parallel),
            None => cpu::spmm(csr, x, n, alpha, beta, out, parallel),
        }
    }
}

/// One weight operand of a layer, in the execution mode chosen for it.
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    /// Dense execution (the weight is dense, or already masked in storage).
    Dense(&'a Tensor),
    /// Dense execution of `W ⊙ M` without materialising it (e.g. OptG's stored values).
    Masked(&'a Tensor, &'a Mask),
    /// Sparse execution through CSR (values must be fresh: see [`SparseWeight::refresh`]).
    Sparse(&'a SparseWeight),
}

impl WeightRef<'_> {
    /// The weight's tensor shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            WeightRef::Dense(w) | WeightRef::Masked(w, _) => w.shape(),
            WeightRef::Sparse(s) => s.csr.shape(),
        }
    }

    /// Rows and columns of the 2-D view.
    pub fn matrix(&self) -> (usize, usize) {
        matrix_view(self.shape())
    }

    /// `out (rows x n) = W · X` for row-major `X (cols x n)`.
    pub(crate) fn mul(&self, x: &[f32], n: usize, out: &mut [f32], parallel: bool) {
        let (m, k) = self.matrix();
        match self {
            WeightRef::Dense(w) => super::gemm::cpu::sgemm(
                m,
                n,
                k,
                1.0,
                w.as_slice(),
                false,
                x,
                false,
                0.0,
                out,
                parallel,
            ),
            WeightRef::Masked(w, mask) => {
                cpu::masked_mm(w.as_slice(), mask, k, x, n, out, parallel)
            }
            WeightRef::Sparse(s) => s.spmm(false, x, n, 1.0, 0.0, out, parallel),
        }
    }

    /// `out (cols x n) = Wᵀ · Y` for row-major `Y (rows x n)`.
    pub(crate) fn mul_t(&self, y: &[f32], n: usize, out: &mut [f32], parallel: bool) {
        let (m, k) = self.matrix();
        match self {
            WeightRef::Dense(w) => super::gemm::cpu::sgemm(
                k,
                n,
                m,
                1.0,
                w.as_slice(),
                true,
                y,
                false,
                0.0,
                out,
                parallel,
            ),
            WeightRef::Masked(w, mask) => {
                cpu::masked_mm_t(w.as_slice(), mask, m, k, y, n, out, parallel)
            }
            WeightRef::Sparse(s) => s.spmm(true, y, n, 1.0, 0.0, out, parallel),
        }
    }
}

/// How a weight gradient `dY·Xᵀ` is computed.
#[derive(Debug, Clone, Copy)]
pub enum WeightGrad<'a> {
    /// Every position (dense layers, and grow steps where a criterion needs the gradient of
    /// inactive weights).
    Dense,
    /// Only the mask's positions (SDDMM); zero elsewhere.
    AtMask(&'a Mask),
}

/// `(W ⊙ M) · X`: `W` viewed as `m x k`, `X` is `k x n`.
pub fn masked_matmul(w: &Tensor, mask: &Mask, x: &Tensor) -> Result<Tensor> {
    check_mask("masked_matmul", w, mask)?;
    let (m, k) = matrix_view(w.shape());
    let n = check_rows("masked_matmul", x, k)?;
    let mut out = vec![0f32; m * n];
    cpu::masked_mm(w.as_slice(), mask, k, x.as_slice(), n, &mut out, true);
    Tensor::from_vec(&[m, n], out, w.device())
}

/// `(W ⊙ M)ᵀ · Y`: `W` viewed as `m x k`, `Y` is `m x n`; result `k x n`.
pub fn masked_matmul_t(w: &Tensor, mask: &Mask, y: &Tensor) -> Result<Tensor> {
    check_mask("masked_matmul_t", w, mask)?;
    let (m, k) = matrix_view(w.shape());
    let n = check_rows("masked_matmul_t", y, m)?;
    let mut out = vec![0f32; k * n];
    cpu::masked_mm_t(w.as_slice(), mask, m, k, y.as_slice(), n, &mut out, true);
    Tensor::from_vec(&[k, n], out, w.device())
}

/// `A · X` for CSR `A` (`rows x cols`) and dense `X` (`cols x n`). For `Aᵀ · Y` pass
/// `a.transpose()` or use [`SparseWeight::csr_t`].
pub fn spmm(a: &Csr, x: &Tensor) -> Result<Tensor> {
    let n = check_rows("spmm", x, a.cols())?;
    let mut out = vec![0f32; a.rows() * n];
    cpu::spmm(a, x.as_slice(), n, 1.0, 0.0, &mut out, true);
    Tensor::from_vec(&[a.rows(), n], out, x.device())
}

/// `out = alpha · A · X + beta · out` into an existing `rows x n` tensor (no allocation; the
/// SpMM counterpart of [`gemm`](crate::ops::gemm::gemm)).
pub fn spmm_into(alpha: f32, a: &Csr, x: &Tensor, beta: f32, out: &mut Tensor) -> Result<()> {
    let n = check_rows("spmm_into", x, a.cols())?;
    out.expect_shape("spmm_into output", &[a.rows(), n])?;
    x.same_device("spmm_into", out)?;
    cpu::spmm(a, x.as_slice(), n, alpha, beta, out.as_mut_slice(), true);
    Ok(())
}

/// `out = alpha · W · X + beta · out` for a [`SparseWeight`] viewed as `rows x cols` (`Wᵀ`
/// with `transposed`): the product sparse layers run, through the cache-blocked layout on
/// AVX-512 machines.
pub fn sparse_weight_mm_into(
    alpha: f32,
    w: &SparseWeight,
    transposed: bool,
    x: &Tensor,
    beta: f32,
    out: &mut Tensor,
) -> Result<()> {
    let a = if transposed { w.csr_t() } else { w.csr() };
    let n = check_rows("sparse_weight_mm_into", x, a.cols())?;
    out.expect_shape("sparse_weight_mm_into output", &[a.rows(), n])?;
    x.same_device("sparse_weight_mm_into", out)?;
    w.spmm(
        transposed,
        x.as_slice(),
        n,
        alpha,
        beta,
        out.as_mut_slice(),
        true,
    );
    Ok(())
}

/// Values of `dY · Xᵀ` at the structure of `s` (in `s`'s entry order): `dY` is `rows x n`,
/// `X` is `cols x n`.
pub fn sddmm(s: &Csr, dy: &Tensor, x: &Tensor) -> Result<Vec<f32>> {
    let n = check_cols("sddmm", dy, s.rows())?;
    let n2 = check_cols("sddmm", x, s.cols())?;
    if n != n2 {
        return shape_err("sddmm", format!("dY has {n} columns, X has {n2}"));
    }
    Ok(cpu::sddmm_csr(s, dy.as_slice(), x.as_slice(), n))
}

/// `dY · Xᵀ` at the mask's positions and exactly 0 elsewhere, shaped like the mask:
/// `dY` is `rows x n`, `X` is `cols x n` for the mask's 2-D view.
pub fn sddmm_masked(mask: &Mask, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix_view(mask.shape());
    let n = check_cols("sddmm_masked", dy, rows)?;
    let n2 = check_cols("sddmm_masked", x, cols)?;
    if n != n2 {
        return shape_err("sddmm_masked", format!("dY has {n} columns, X has {n2}"));
    }
    let mut out = vec![0f32; rows * cols];
    cpu::sddmm_mask(
        mask,
        rows,
        cols,
        dy.as_slice(),
        x.as_slice(),
        n,
        &mut out,
        true,
    );
    Tensor::from_vec(mask.shape(), out, dy.device())
}

pub(crate) fn check_mask(op: &'static str, w: &Tensor, mask: &Mask) -> Result<()> {
    if w.shape() != mask.shape() {
        return shape_err(
            op,
            format!("weight {:?} vs mask {:?}", w.shape(), mask.shape()),
        );
    }
    Ok(())
}

fn check_rows(op: &'static str, x: &Tensor, rows: usize) -> Result<usize> {
    match x.shape() {
        &[r, n] if r == rows => Ok(n),
        s => shape_err(op, format!("right operand {s:?} must be {rows} x n")),
    }
}

fn check_cols(op: &'static str, x: &Tensor, rows: usize) -> Result<usize> {
    check_rows(op, x, rows)
}
