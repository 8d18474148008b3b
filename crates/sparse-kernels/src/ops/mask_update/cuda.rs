//! Mask updates on CUDA (`kernels/mask_update.cu`): scores, threshold masks, counters and the
//! drop-and-grow scatter run on the device. Exact selection (top-k with the spec §0.2 tie
//! rule) and the whole drop-and-grow run on the device too, through the radix select of
//! `select_cuda.rs` (`kernels/select.cu`), bit-identical to sparse-core's; only `min_at`
//! still reads the values back. Grown weights draw their normal values on the host from the same ChaCha stream as the
//! CPU backend, so both devices grow identical values.

use sparse_core::{standard_normal, stream_rng, DropGrow, Mask, Order};

use super::select_cuda;
use super::{Exploration, GrowInit, MaskUpdateOps};
use crate::backend::gpu::launch::{ctx_of, grid_1d, words, Args};
use crate::backend::gpu::Family;
use crate::backend::{CpuBackend, CudaBackend};
use crate::device::Device;
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::ops::sparse::cuda::mask_into;
use crate::tensor::{IndexTensor, Tensor, TensorOf};

const F: Family = Family::MaskUpdate;

fn host(x: &Tensor) -> Result<Tensor> {
    Tensor::cpu(x.shape(), x.to_host()?)
}

fn host_words(m: &Mask, dev: Device) -> Result<TensorOf<u64>> {
    TensorOf::from_vec(&[m.words().len()], m.words().to_vec(), dev)
}

fn map(kernel: &str, ins: &[&Tensor]) -> Result<Tensor> {
    let x = ins[0];
    let y = Tensor::zeros(x.shape(), x.device())?;
    let mut a = Args::new();
    for t in ins {
        a = a.t(t)?;
    }
    let n = x.numel();
    ctx_of(x)?.launch(F, kernel, grid_1d(n), a.t(&y)?.i(n))?;
    Ok(y)
}

/// The bits of `x >= theta` (within `within`, when given).
fn bits_at_least(x: &Tensor, theta: f32, within: Option<&Mask>) -> Result<Mask> {
    let n = x.numel();
    let nw = n.div_ceil(64);
    let out = TensorOf::<u64>::zeros(&[nw], x.device())?;
    let w = within.map(|m| host_words(m, x.device())).transpose()?;
    let wp = match &w {
        Some(t) => crate::backend::gpu::launch::dptr(t)?,
        None => 0,
    };
    let args = Args::new().t(x)?.f(theta).ptr(wp).t(&out)?.i(n);
    ctx_of(x)?.launch(F, "bits_at_least", grid_1d(nw), args)?;
    Ok(Mask::from_words(x.shape(), out.to_host()?)?)
}

fn scatter(x: &Tensor, idx: &[u32], vals: Option<&[f32]>) -> Result<()> {
    if idx.is_empty() {
        return Ok(());
    }
    let dev = x.device();
    let it = IndexTensor::from_vec(&[idx.len()], idx.to_vec(), dev)?;
    let vt = vals
        .map(|v| Tensor::from_vec(&[v.len()], v.to_vec(), dev))
        .transpose()?;
    let vp = match &vt {
        Some(t) => crate::backend::gpu::launch::dptr(t)?,
        None => 0,
    };
    let args = Args::new().t(x)?.t(&it)?.ptr(vp).i(idx.len());
    ctx_of(x)?.launch(F, "scatter", grid_1d(idx.len()), args)
}

impl MaskUpdateOps for CudaBackend {
    fn abs(x: &Tensor) -> Result<Tensor> {
        map("abs_f32", &[x])
    }

    fn abs_product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        map("abs_product_f32", &[a, b])
    }

    fn count_nonzero(x: &Tensor) -> Result<usize> {
        let n = x.numel();
        let dims = grid_1d(n);
        let partial = TensorOf::<u64>::zeros(&[dims.grid[0] as usize], x.device())?;
        let args = Args::new().t(x)?.i(n).t(&partial)?;
        ctx_of(x)?.launch(F, "count_nonzero_partial", dims, args)?;
        Ok(partial.to_host()?.iter().sum::<u64>() as usize)
    }

    fn apply_mask(x: &mut Tensor, mask: &DeviceMask) -> Result<()> {
        mask_into(x, mask, x)
    }

    fn zero_at(x: &mut Tensor, at: &Mask) -> Result<()> {
        let w = host_words(at, x.device())?;
        let n = x.numel();
        let args = Args::new().t(x)?.t(&w)?.i(n);
        ctx_of(x)?.launch(F, "zero_where", grid_1d(n), args)
    }

    fn nonneg_within(x: &Tensor, within: &Mask) -> Result<Mask> {
        bits_at_least(x, 0.0, Some(within))
    }

    fn select(scores: &Tensor, k: usize, candidates: Option<&Mask>, order: Order) -> Result<Mask> {
        select_cuda::select(scores, k, candidates, order)
    }

    fn select_global(
        scores: &[&Tensor],
        candidates: &[Option<&Mask>],
        k: usize,
        order: Order,
    ) -> Result<Vec<Mask>> {
        select_cuda::select_global(scores, candidates, k, order)
    }

    fn min_at(x: &Tensor, at: &Mask) -> Result<f32> {
        <CpuBackend as MaskUpdateOps>::min_at(&host(x)?, at)
    }

    fn at_least(x: &Tensor, theta: f32) -> Result<Mask> {
        bits_at_least(x, theta, None)
    }

    fn drop_and_grow(mask: &Mask, drop: &Tensor, grow: &Tensor, n: usize) -> Result<DropGrow> {
        select_cuda::drop_and_grow(mask, drop, grow, n)
    }

    fn apply_drop_grow(
        w: &mut Tensor,
        state: &mut [&mut Tensor],
        dg: &DropGrow,
        init: GrowInit,
    ) -> Result<()> {
        scatter(w, &dg.dropped, None)?;
        match init {
            GrowInit::Zero => scatter(w, &dg.grown, None)?,
            GrowInit::Normal { std, seed, stream } => {
                let mut rng = stream_rng(seed, stream);
                let vals: Vec<f32> = dg
                    .grown
                    .iter()
                    .map(|_| std * standard_normal(&mut rng))
                    .collect();
                scatter(w, &dg.grown, Some(&vals))?;
            }
        }
        for s in state.iter_mut() {
            scatter(s, &dg.dropped, None)?;
            scatter(s, &dg.grown, None)?;
        }
        Ok(())
    }

    fn exploration_scores(
        grad: &Tensor,
        counts: &IndexTensor,
        bonus: &Exploration,
    ) -> Result<Tensor> {
        let n = grad.numel();
        let ctx = ctx_of(grad)?;
        let scale = if bonus.normalize {
            let dims = grid_1d(n);
            let partial = Tensor::zeros(&[dims.grid[0] as usize], grad.device())?;
            ctx.launch(
                F,
                "abs_max_partial",
                dims,
                Args::new().t(grad)?.i(n).t(&partial)?,
            )?;
            let m = partial.to_host()?.iter().fold(0f32, |a, &v| a.max(v));
            if m > 0.0 {
                1.0 / m as f64
            } else {
                1.0
            }
        } else {
            1.0
        };
        let out = Tensor::zeros(grad.shape(), grad.device())?;
        let args = Args::new()
            .t(grad)?
            .t(counts)?
            .t(&out)?
            .i(n)
            .d(scale)
            .d(bonus.c)
            .d(bonus.eps)
            .d(bonus.ln_t);
        ctx.launch(F, "exploration_scores", grid_1d(n), args)?;
        Ok(out)
    }

    fn accumulate_activity(counter: &mut IndexTensor, mask: &DeviceMask) -> Result<()> {
        let n = counter.numel();
        let args = Args::new().t(counter)?.ptr(words(mask)?).i(n);
        ctx_of(counter)?.launch(F, "accumulate_activity", grid_1d(n), args)
    }
}
