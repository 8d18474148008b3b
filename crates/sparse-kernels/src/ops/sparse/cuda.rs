//! Masked and sparse products on CUDA: not implemented yet (the CUDA issues add
//! `kernels/sparse.cu`).

use sparse_core::Csr;

use super::{SparseOps, SparseWeight};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::tensor::Tensor;

impl SparseOps for CudaBackend {
    fn masked_matmul(w: &Tensor, _m: &DeviceMask, _x: &Tensor, _t: bool) -> Result<Tensor> {
        Err(unsupported("masked_matmul", w.device()))
    }
    fn spmm_into(_a: f32, _c: &Csr, x: &Tensor, _b: f32, _o: &mut Tensor) -> Result<()> {
        Err(unsupported("spmm", x.device()))
    }
    fn sparse_weight_mm_into(
        _a: f32,
        _w: &SparseWeight,
        _t: bool,
        x: &Tensor,
        _b: f32,
        _o: &mut Tensor,
    ) -> Result<()> {
        Err(unsupported("sparse_weight_mm", x.device()))
    }
    fn sddmm(_s: &Csr, dy: &Tensor, _x: &Tensor) -> Result<Tensor> {
        Err(unsupported("sddmm", dy.device()))
    }
    fn sddmm_masked(_m: &DeviceMask, dy: &Tensor, _x: &Tensor) -> Result<Tensor> {
        Err(unsupported("sddmm_masked", dy.device()))
    }
}
