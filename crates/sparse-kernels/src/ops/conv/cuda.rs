//! Convolution on CUDA: im2col over the whole batch (`kernels/conv.cu` holds the unfolding,
//! its adjoint and the layout permutes). The unfolded matrix is `[C·kh·kw, B·P]`, so each
//! pass is one product: cuBLAS for dense and masked weights; for a sparse weight the
//! Sputnik-style SpMM (`W · col` forward, `Wᵀ · dY` to the input) and, for the at-mask
//! weight gradient, the SDDMM `dY · colᵀ` at the active entries only. Every product is a
//! deterministic reduction over `K = B·P`.

use super::{ConvGeom, ConvGrads, ConvOps};
use crate::backend::gpu::launch::{ctx_of, grid_1d, Args};
use crate::backend::gpu::Family;
use crate::backend::CudaBackend;
use crate::error::Result;
use crate::ops::gemm::cuda::raw_gemm;
use crate::ops::sparse::cuda::{dense_weight, gpu, mask_into, sparse_wgrad};
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::Tensor;

const F: Family = Family::Conv;

fn geom_args(a: Args, g: &ConvGeom) -> Args {
    a.i(g.b)
        .i(g.c)
        .i(g.h)
        .i(g.w)
        .i(g.kh)
        .i(g.kw)
        .i(g.stride)
        .i(g.pad)
        .i(g.oh)
        .i(g.ow)
}

fn im2col(g: &ConvGeom, x: &Tensor) -> Result<Tensor> {
    let col = Tensor::zeros(&[g.ckk(), g.b * g.p()], x.device())?;
    let args = geom_args(Args::new().t(x)?.t(&col)?, g);
    ctx_of(x)?.launch(F, "im2col", grid_1d(col.numel()), args)?;
    Ok(col)
}

fn permute(kernel: &str, g: &ConvGeom, src: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let dst = Tensor::zeros(shape, src.device())?;
    let args = Args::new().t(src)?.t(&dst)?.i(g.o).i(g.b).i(g.p());
    ctx_of(src)?.launch(F, kernel, grid_1d(dst.numel()), args)?;
    Ok(dst)
}

impl ConvOps for CudaBackend {
    fn conv2d_forward(g: &ConvGeom, x: &Tensor, w: WeightRef) -> Result<Tensor> {
        let col = im2col(g, x)?;
        let bp = g.b * g.p();
        let yt = Tensor::zeros(&[g.o, bp], x.device())?;
        if let WeightRef::Sparse(s) = w {
            gpu(s)?.fwd.spmm(1.0, &col, 0.0, &yt)?;
            return permute("obp_to_bop", g, &yt, &g.out_shape());
        }
        let wd = dense_weight(w)?;
        raw_gemm(
            g.o,
            bp,
            g.ckk(),
            1.0,
            wd.get(),
            false,
            &col,
            false,
            0.0,
            &yt,
        )?;
        permute("obp_to_bop", g, &yt, &g.out_shape())
    }

    fn conv2d_backward(
        g: &ConvGeom,
        dy: &Tensor,
        x: &Tensor,
        w: WeightRef,
        need_dx: bool,
        wgrad: WeightGrad,
    ) -> Result<ConvGrads> {
        let bp = g.b * g.p();
        let dev = x.device();
        let dyt = permute("bop_to_obp", g, dy, &[g.o, bp])?;
        let col = im2col(g, x)?;
        let dw = match (wgrad, w) {
            (WeightGrad::AtMask(m), WeightRef::Sparse(s)) if s.mask_version() == m.version() => {
                sparse_wgrad(s, &dyt, &col)?
            }
            _ => {
                let dw = Tensor::zeros(w.shape(), dev)?;
                raw_gemm(g.o, g.ckk(), bp, 1.0, &dyt, false, &col, true, 0.0, &dw)?;
                if let WeightGrad::AtMask(m) = wgrad {
                    mask_into(&dw, m, &dw)?;
                }
                dw
            }
        };
        let dx = if need_dx {
            drop(col);
            let dcol = Tensor::zeros(&[g.ckk(), bp], dev)?;
            if let WeightRef::Sparse(s) = w {
                gpu(s)?.bwd.spmm(1.0, &dyt, 0.0, &dcol)?;
            } else {
                let wd = dense_weight(w)?;
                raw_gemm(
                    g.ckk(),
                    bp,
                    g.o,
                    1.0,
                    wd.get(),
                    true,
                    &dyt,
                    false,
                    0.0,
                    &dcol,
                )?;
            }
            let dx = Tensor::zeros(&[g.b, g.c, g.h, g.w], dev)?;
            let args = geom_args(Args::new().t(&dcol)?.t(&dx)?, g);
            ctx_of(x)?.launch(F, "col2im", grid_1d(dx.numel()), args)?;
            Some(dx)
        } else {
            None
        };
        Ok(ConvGrads { dx, dw })
    }
}
