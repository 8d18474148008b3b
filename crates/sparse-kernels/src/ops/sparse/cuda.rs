//! Masked and sparse products on CUDA (`kernels/sparse.cu`): masked execution materialises
//! `W ⊙ M` and runs cuBLAS; sparse execution runs the Sputnik-style SpMM and the split SDDMM
//! of `gpu_layout.rs` on the weight's device CSR (a host [`Csr`] given directly is uploaded
//! per call).

use sparse_core::{matrix_view, Csr};

use super::gpu_layout::{GpuCsr, GpuSparse};
use super::{SparseOps, SparseWeight, WeightRef};
use crate::backend::gpu::launch::{ctx_of, grid_1d, words, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::mask::DeviceMask;
use crate::ops::gemm::cuda::raw_gemm;
use crate::tensor::Tensor;

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

/// The dense form of a weight on a CUDA device (`W ⊙ M` for masked and sparse weights).
pub(crate) fn dense_weight<'a>(w: WeightRef<'a>) -> Result<DenseWeight<'a>> {
    match w {
        WeightRef::Dense(t) => Ok(DenseWeight::Borrowed(t)),
        WeightRef::Masked(t, m) => {
            let out = Tensor::zeros(t.shape(), t.device())?;
            mask_into(t, m, &out)?;
            Ok(DenseWeight::Owned(out))
        }
        WeightRef::Sparse(s) => {
            let g = gpu(s)?;
            Ok(DenseWeight::Owned(
                g.fwd.scatter(&g.fwd.values, s.csr().shape())?,
            ))
        }
    }
}

/// The device form of a sparse weight on a CUDA device.
pub(crate) fn gpu(s: &SparseWeight) -> Result<&GpuSparse> {
    s.gpu().ok_or_else(|| {
        KernelError::InvalidArgument("a CPU sparse weight was given to a CUDA kernel".into())
    })
}

/// A host CSR uploaded for one call (entry `q` maps to itself).
fn upload(a: &Csr, dev: Device) -> Result<GpuCsr> {
    let src: Vec<u32> = (0..a.nnz() as u32).collect();
    GpuCsr::new(a, &src, None, dev)
}

/// The weight gradient at a sparse weight's active entries, as a dense tensor shaped like
/// the weight (exactly 0 elsewhere): `dY` is `rows x n`, `X` is `cols x n`.
pub(crate) fn sparse_wgrad(s: &SparseWeight, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let g = gpu(s)?;
    let vals = g.fwd.sddmm(dy, x)?;
    g.fwd.scatter(&vals, s.csr().shape())
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
        upload(a, x.device())?.spmm(alpha, x, beta, out)
    }

    fn sparse_weight_mm_into(
        alpha: f32,
        w: &SparseWeight,
        transposed: bool,
        x: &Tensor,
        beta: f32,
        out: &mut Tensor,
    ) -> Result<()> {
        let g = gpu(w)?;
        let a = if transposed { &g.bwd } else { &g.fwd };
        a.spmm(alpha, x, beta, out)
    }

    fn sddmm(s: &Csr, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        upload(s, dy.device())?.sddmm(dy, x)
    }

    fn sparse_weight_sddmm(w: &SparseWeight, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        gpu(w)?.fwd.sddmm(dy, x)
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
