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
pub(crate) mod cuda;
pub(crate) mod gpu_layout;
pub(crate) mod grad_reuse;
mod spmm_simd;
pub(crate) mod weight;

pub use grad_reuse::AtMaskGradMemo;
pub use weight::{SparseWeight, WeightGrad, WeightRef};

use sparse_core::{matrix_view, Csr};

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::mask::DeviceMask;
use crate::tensor::{same, Tensor};

/// What a backend provides for the masked / sparse product family (arguments checked).
pub trait SparseOps {
    /// `(W ⊙ M)·X` (`transposed`: `(W ⊙ M)ᵀ·X`).
    fn masked_matmul(w: &Tensor, mask: &DeviceMask, x: &Tensor, transposed: bool)
        -> Result<Tensor>;
    /// `out = alpha·A·X + beta·out` for a host-structured CSR `A`.
    fn spmm_into(alpha: f32, a: &Csr, x: &Tensor, beta: f32, out: &mut Tensor) -> Result<()>;
    /// `out = alpha·W·X + beta·out` (`transposed`: `Wᵀ`) for a sparse weight.
    fn sparse_weight_mm_into(
        alpha: f32,
        w: &SparseWeight,
        transposed: bool,
        x: &Tensor,
        beta: f32,
        out: &mut Tensor,
    ) -> Result<()>;
    /// `dY·Xᵀ` at the structure of `s`, in `s`'s entry order, as an `[nnz]` tensor.
    fn sddmm(s: &Csr, dy: &Tensor, x: &Tensor) -> Result<Tensor>;
    /// `dY·Xᵀ` at a sparse weight's entries, in its CSR entry order (`[nnz]`).
    fn sparse_weight_sddmm(w: &SparseWeight, dy: &Tensor, x: &Tensor) -> Result<Tensor>;
    /// `dY·Xᵀ` at the mask, 0 elsewhere, shaped like the mask.
    fn sddmm_masked(mask: &DeviceMask, dy: &Tensor, x: &Tensor) -> Result<Tensor>;
}

/// `(W ⊙ M) · X`: `W` viewed as `m x k`, `X` is `k x n`.
pub fn masked_matmul(w: &Tensor, mask: &DeviceMask, x: &Tensor) -> Result<Tensor> {
    check_mask("masked_matmul", w, mask)?;
    let (_, k) = matrix_view(w.shape());
    check_rows("masked_matmul", x, k)?;
    w.same_device("masked_matmul", x)?;
    dispatch!(w.device(), SparseOps::masked_matmul(w, mask, x, false))
}

/// `(W ⊙ M)ᵀ · Y`: `W` viewed as `m x k`, `Y` is `m x n`; result `k x n`.
pub fn masked_matmul_t(w: &Tensor, mask: &DeviceMask, y: &Tensor) -> Result<Tensor> {
    check_mask("masked_matmul_t", w, mask)?;
    let (m, _) = matrix_view(w.shape());
    check_rows("masked_matmul_t", y, m)?;
    w.same_device("masked_matmul_t", y)?;
    dispatch!(w.device(), SparseOps::masked_matmul(w, mask, y, true))
}

/// `A · X` for CSR `A` (`rows x cols`) and dense `X` (`cols x n`). For `Aᵀ · Y` pass
/// `a.transpose()` or use [`SparseWeight::csr_t`].
pub fn spmm(a: &Csr, x: &Tensor) -> Result<Tensor> {
    let n = check_rows("spmm", x, a.cols())?;
    let mut out = Tensor::zeros(&[a.rows(), n], x.device())?;
    spmm_into(1.0, a, x, 0.0, &mut out)?;
    Ok(out)
}

/// `out = alpha · A · X + beta · out` into an existing `rows x n` tensor (no allocation; the
/// SpMM counterpart of [`gemm`](crate::ops::gemm::gemm)).
pub fn spmm_into(alpha: f32, a: &Csr, x: &Tensor, beta: f32, out: &mut Tensor) -> Result<()> {
    let n = check_rows("spmm_into", x, a.cols())?;
    out.expect_shape("spmm_into output", &[a.rows(), n])?;
    x.same_device("spmm_into", out)?;
    dispatch!(x.device(), SparseOps::spmm_into(alpha, a, x, beta, out))
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
    same("sparse_weight_mm_into", x.device(), w.device())?;
    dispatch!(
        x.device(),
        SparseOps::sparse_weight_mm_into(alpha, w, transposed, x, beta, out)
    )
}

/// Values of `dY · Xᵀ` at the structure of `s` (in `s`'s entry order, an `[nnz]` tensor):
/// `dY` is `rows x n`, `X` is `cols x n`.
pub fn sddmm(s: &Csr, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let n = check_rows("sddmm", dy, s.rows())?;
    let n2 = check_rows("sddmm", x, s.cols())?;
    if n != n2 {
        return shape_err("sddmm", format!("dY has {n} columns, X has {n2}"));
    }
    dy.same_device("sddmm", x)?;
    dispatch!(dy.device(), SparseOps::sddmm(s, dy, x))
}

/// Values of `dY · Xᵀ` at a [`SparseWeight`]'s active entries, in its [`SparseWeight::csr`]
/// entry order (an `[nnz]` tensor): the sparse layer's weight gradient, on the device's own
/// copy of the structure. `dY` is `rows x n`, `X` is `cols x n`.
pub fn sparse_weight_sddmm(w: &SparseWeight, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix_view(w.csr().shape());
    let n = check_rows("sparse_weight_sddmm", dy, rows)?;
    let n2 = check_rows("sparse_weight_sddmm", x, cols)?;
    if n != n2 {
        return shape_err(
            "sparse_weight_sddmm",
            format!("dY has {n} columns, X has {n2}"),
        );
    }
    dy.same_device("sparse_weight_sddmm", x)?;
    same("sparse_weight_sddmm", dy.device(), w.device())?;
    dispatch!(dy.device(), SparseOps::sparse_weight_sddmm(w, dy, x))
}

/// `dY · Xᵀ` at the mask's positions and exactly 0 elsewhere, shaped like the mask:
/// `dY` is `rows x n`, `X` is `cols x n` for the mask's 2-D view.
pub fn sddmm_masked(mask: &DeviceMask, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix_view(mask.shape());
    let n = check_rows("sddmm_masked", dy, rows)?;
    let n2 = check_rows("sddmm_masked", x, cols)?;
    if n != n2 {
        return shape_err("sddmm_masked", format!("dY has {n} columns, X has {n2}"));
    }
    dy.same_device("sddmm_masked", x)?;
    same("sddmm_masked", dy.device(), mask.device())?;
    dispatch!(dy.device(), SparseOps::sddmm_masked(mask, dy, x))
}

pub(crate) fn check_mask(op: &'static str, w: &Tensor, mask: &DeviceMask) -> Result<()> {
    if w.shape() != mask.shape() {
        return shape_err(
            op,
            format!("weight {:?} vs mask {:?}", w.shape(), mask.shape()),
        );
    }
    same(op, w.device(), mask.device())
}

fn check_rows(op: &'static str, x: &Tensor, rows: usize) -> Result<usize> {
    match x.shape() {
        &[r, n] if r == rows => Ok(n),
        s => shape_err(op, format!("right operand {s:?} must be {rows} x n")),
    }
}
