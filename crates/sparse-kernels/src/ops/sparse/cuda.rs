//! Masked and sparse products on CUDA (`kernels/sparse.cu`): masked execution materialises
//! `W ⊙ M` and runs cuBLAS; CSR SpMM and SDDMM are plain row kernels over host-built CSR.

use sparse_core::{matrix_view, Csr};

use super::{SparseOps, SparseWeight, WeightRef};
use crate::backend::gpu::launch::{block_per, ctx_of, grid_1d, words, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::device::Device;
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::ops::gemm::cuda::raw_gemm;
use crate::tensor::{IndexTensor, Tensor};

const F: Family = Family::Sparse;

/// `out = x ⊙ mask` (exactly 0 off the mask); `out` may be `x`.
pub(crate) fn mask_into(x: &Tensor, m: &DeviceMask, out: &Tensor) -> Result<()> {
    let n = x.numel();
    let args = Args::new().t(x)?.ptr(words(m)?).t(out)?.i(n);
    ctx_of(x)?.launch(F, "mask_copy", grid_1d(n), args)
}

/// A weight operand as a dense device matrix: borrowed, or `W ⊙ M` materialised.
pub(crate) enum DenseWeight<'a> {
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl DenseWeight<'_> {
    pub(crate) fn get(&self) -> &Tensor {
        match self {
            DenseWeight::Borrowed(t) => t,
            DenseWeight::Owned(t) => t,
        }
    }
}

/// The dense form of a weight on a CUDA device (sparse execution is CPU-only for now).
pub(crate) fn dense_weight<'a>(w: WeightRef<'a>) -> Result<DenseWeight<'a>> {
    match w {
        WeightRef::Dense(t) => Ok(DenseWeight::Borrowed(t)),
        WeightRef::Masked(t, m) => {
            let out = Tensor::zeros(t.shape(), t.device())?;
            mask_into(t, m, &out)?;
            Ok(DenseWeight::Owned(out))
        }
        // Host-structured CSR, expanded back to `W ⊙ M` (see SparseWeight).
        WeightRef::Sparse(s) => Ok(DenseWeight::Owned(Tensor::from_vec(
            s.csr().shape(),
            s.csr().to_dense(),
            s.device(),
        )?)),
    }
}

fn upload_csr(a: &Csr, dev: Device) -> Result<(IndexTensor, IndexTensor, Tensor)> {
    Ok((
        IndexTensor::from_vec(&[a.row_ptr().len()], a.row_ptr().to_vec(), dev)?,
        IndexTensor::from_vec(&[a.nnz()], a.col_idx().to_vec(), dev)?,
        Tensor::from_vec(&[a.nnz()], a.values().to_vec(), dev)?,
    ))
}

impl SparseOps for CudaBackend {
    fn masked_matmul(
        w: &Tensor,
        mask: &DeviceMask,
        x: &Tensor,
        transposed: bool,
    ) -> Result<Tensor> {
        let (m, k) = matrix_view(w.shape());
        let n = x.shape()[1];
        let wm = dense_weight(WeightRef::Masked(w, mask))?;
        let (rows, inner) = if transposed { (k, m) } else { (m, k) };
        let out = Tensor::zeros(&[rows, n], x.device())?;
        raw_gemm(
            rows,
            n,
            inner,
            1.0,
            wm.get(),
            transposed,
            x,
            false,
            0.0,
            &out,
        )?;
        Ok(out)
    }

    fn spmm_into(alpha: f32, a: &Csr, x: &Tensor, beta: f32, out: &mut Tensor) -> Result<()> {
        let (rp, ci, v) = upload_csr(a, x.device())?;
        let n = x.shape()[1];
        let args = Args::new()
            .t(&rp)?
            .t(&ci)?
            .t(&v)?
            .t(x)?
            .t(out)?
            .i(a.rows())
            .i(n)
            .f(alpha)
            .f(beta);
        ctx_of(x)?.launch(F, "csr_spmm", grid_1d(a.rows() * n), args)
    }

    fn sparse_weight_mm_into(
        alpha: f32,
        w: &SparseWeight,
        transposed: bool,
        x: &Tensor,
        beta: f32,
        out: &mut Tensor,
    ) -> Result<()> {
        let a = if transposed { w.csr_t() } else { w.csr() };
        Self::spmm_into(alpha, a, x, beta, out)
    }

    fn sddmm(s: &Csr, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        let out = Tensor::zeros(&[s.nnz()], dy.device())?;
        if s.nnz() == 0 {
            return Ok(out);
        }
        let (rp, ci, _) = upload_csr(s, dy.device())?;
        let args = Args::new()
            .t(&rp)?
            .t(&ci)?
            .t(dy)?
            .t(x)?
            .t(&out)?
            .i(dy.shape()[1]);
        ctx_of(dy)?.launch(F, "csr_sddmm", block_per(s.rows()), args)?;
        Ok(out)
    }

    fn sddmm_masked(mask: &DeviceMask, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (rows, cols) = matrix_view(mask.shape());
        let n = dy.shape()[1];
        let out = Tensor::zeros(mask.shape(), dy.device())?;
        raw_gemm(rows, cols, n, 1.0, dy, false, x, true, 0.0, &out)?;
        mask_into(&out, mask, &out)?;
        Ok(out)
    }
}
