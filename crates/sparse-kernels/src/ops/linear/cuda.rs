//! Linear layers on CUDA: cuBLAS products (masked weights materialised as `W ⊙ M`), the
//! at-mask weight gradient masked after the product, bias and its gradient in
//! `kernels/linear.cu`. A sparse weight runs the Sputnik-style SpMM on transposed
//! activations (`yᵀ = W·xᵀ`, `dxᵀ = Wᵀ·dyᵀ`) and its at-mask gradient as an SDDMM.

use super::{LinearGrads, LinearOps};
use crate::backend::gpu::launch::{ctx_of, grid_1d, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::ops::gemm::cuda::raw_gemm;
use crate::ops::sparse::cuda::{dense_weight, gpu, mask_into, sparse_wgrad};
use crate::ops::sparse::gpu_layout::transpose;
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::Tensor;

const F: Family = Family::Linear;

impl LinearOps for CudaBackend {
    fn linear_forward(
        (b, i, o): (usize, usize, usize),
        x: &Tensor,
        w: WeightRef,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (y, xt) = if let WeightRef::Sparse(s) = w {
            let yt = Tensor::zeros(&[o, b], x.device())?;
            let xt = transpose(x)?;
            gpu(s)?.fwd.spmm(1.0, &xt, 0.0, &yt)?;
            (transpose(&yt)?, Some(xt))
        } else {
            let wd = dense_weight(w)?;
            let y = Tensor::zeros(&[b, o], x.device())?;
            raw_gemm(b, o, i, 1.0, x, false, wd.get(), true, 0.0, &y)?;
            (y, None)
        };
        if let Some(bias) = bias {
            let n = b * o;
            let args = Args::new().t(&y)?.t(bias)?.i(o).i(n);
            ctx_of(x)?.launch(F, "add_bias_rows", grid_1d(n), args)?;
        }
        Ok((y, xt))
    }

    fn linear_backward(
        (b, i, o): (usize, usize, usize),
        dy: &Tensor,
        x: &Tensor,
        xt: Option<&Tensor>,
        w: WeightRef,
        has_bias: bool,
        need_dx: bool,
        wgrad: WeightGrad,
        _dw_buf: Option<Tensor>,
    ) -> Result<LinearGrads> {
        let dev = x.device();
        let sparse = match w {
            WeightRef::Sparse(s) => Some((s, transpose(dy)?)),
            _ => None,
        };
        let dw = match (wgrad, &sparse) {
            (WeightGrad::AtMask(m), Some((s, dyt))) if s.mask_version() == m.version() => {
                match xt {
                    Some(t) => sparse_wgrad(s, dyt, t)?,
                    None => sparse_wgrad(s, dyt, &transpose(x)?)?,
                }
            }
            _ => {
                let dw = Tensor::zeros(w.shape(), dev)?;
                raw_gemm(o, i, b, 1.0, dy, true, x, false, 0.0, &dw)?;
                if let WeightGrad::AtMask(m) = wgrad {
                    mask_into(&dw, m, &dw)?;
                }
                dw
            }
        };
        let dx = match (need_dx, &sparse) {
            (false, _) => None,
            (true, Some((s, dyt))) => {
                let dxt = Tensor::zeros(&[i, b], dev)?;
                gpu(s)?.bwd.spmm(1.0, dyt, 0.0, &dxt)?;
                Some(transpose(&dxt)?)
            }
            (true, None) => {
                let wd = dense_weight(w)?;
                let dx = Tensor::zeros(&[b, i], dev)?;
                raw_gemm(b, i, o, 1.0, dy, false, wd.get(), false, 0.0, &dx)?;
                Some(dx)
            }
        };
        let db = if has_bias {
            let db = Tensor::zeros(&[o], dev)?;
            let args = Args::new().t(dy)?.i(b).i(o).t(&db)?;
            ctx_of(dy)?.launch(F, "col_sums", grid_1d(o), args)?;
            Some(db)
        } else {
            None
        };
        Ok(LinearGrads { dx, dw, db })
    }
}
