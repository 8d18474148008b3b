//! Exact selection on CUDA (`kernels/select.cu`): radix select with the spec §0.2 tie rule,
//! bit-identical to sparse-core's `select`, and the drop-and-grow built from two of them.
//!
//! Every pass is queued on the device's stream without a host round trip; the state (the
//! threshold key, the ties still to take, the first NaN) stays on the device until the
//! caller reads the result words, and errors are reported from it in sparse-core's order
//! (NaN first, then too few candidates).

use sparse_core::{CoreError, DropGrow, Mask, Order};

use crate::backend::gpu::launch::{block_per, ctx_of, dptr, grid_1d, Args, BLOCK};
use crate::backend::gpu::{DevPtr, Family, LaunchDims};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{Tensor, TensorOf};

const F: Family = Family::Select;
/// Digit shifts, most significant first (8-bit digits of the 32-bit rank key).
const SHIFTS: [usize; 4] = [24, 16, 8, 0];
const NO_NAN: u64 = u64::MAX;

/// Which entries of a layer may be selected (device mask words).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cand {
    All,
    Set(DevPtr),
    Unset(DevPtr),
}

impl Cand {
    fn mode_and_words(self) -> (usize, DevPtr) {
        match self {
            Cand::All => (0, 0),
            Cand::Set(p) => (1, p),
            Cand::Unset(p) => (2, p),
        }
    }
}

/// A selection in flight: its device state and one result word buffer per layer.
pub(crate) struct Selection {
    state: TensorOf<u64>,
    pub(crate) words: Vec<TensorOf<u64>>,
}

impl Selection {
    /// sparse-core's errors, from the device state: a NaN candidate (lowest flat index of
    /// the concatenation), then `k` above the number of candidates.
    pub(crate) fn check(&self, k: usize, available: usize) -> Result<()> {
        let st = self.state.to_host()?;
        if st[4] != NO_NAN {
            return Err(CoreError::NanScore {
                index: st[4] as usize,
            }
            .into());
        }
        if k > available {
            return Err(CoreError::NotEnoughCandidates { k, available }.into());
        }
        Ok(())
    }
}

/// The histogram passes: at least 16 scores per thread and at most 1024 blocks, so each
/// block's shared histogram is flushed to the global one for many scores (the same grid
/// keeps an H100/H200 full at 25M scores: 1024 blocks of 256 threads).
fn hist_dims(n: usize) -> LaunchDims {
    blocks(n.div_ceil(BLOCK as usize * 16).clamp(1, 1024))
}

fn blocks(n: usize) -> LaunchDims {
    LaunchDims {
        grid: [n.max(1) as u32, 1, 1],
        block: [BLOCK, 1, 1],
        shared_bytes: 0,
    }
}

/// Queues the selection of the `k` best of `layers` (concatenated in order) by `order`.
pub(crate) fn select_words(
    layers: &[(&Tensor, Cand)],
    k: usize,
    order: Order,
) -> Result<Selection> {
    let first = layers[0].0;
    let dev = first.device();
    let ctx = ctx_of(first)?;
    let total: usize = layers.iter().map(|(s, _)| s.numel()).sum();
    if total > u32::MAX as usize {
        return Err(CoreError::TooLarge {
            what: "selection input".into(),
            size: total,
        }
        .into());
    }
    let largest = usize::from(order == Order::Largest);
    let state = TensorOf::from_vec(&[8], vec![0, 0, k as u64, 0, NO_NAN, 0, 0, 0], dev)?;
    let hist = TensorOf::<u32>::zeros(&[256], dev)?;
    for shift in SHIFTS {
        let mut offset = 0;
        for &(s, cand) in layers {
            let n = s.numel();
            if n > 0 {
                let (mode, w) = cand.mode_and_words();
                let args = Args::new()
                    .t(s)?
                    .ptr(w)
                    .i(mode)
                    .i(n)
                    .i(offset)
                    .i(largest)
                    .i(shift)
                    .t(&state)?
                    .t(&hist)?;
                ctx.launch(F, "radix_hist", hist_dims(n), args)?;
            }
            offset += n;
        }
        let args = Args::new().t(&state)?.t(&hist)?.i(shift);
        ctx.launch(F, "radix_pick", block_per(1), args)?;
    }
    let mut words = Vec::with_capacity(layers.len());
    for (l, &(s, cand)) in layers.iter().enumerate() {
        let n = s.numel();
        let nw = n.div_ceil(64);
        let out = TensorOf::<u64>::zeros(&[nw], dev)?;
        if n > 0 {
            let (mode, w) = cand.mode_and_words();
            let nb = nw.div_ceil(BLOCK as usize);
            let prefix = TensorOf::<u64>::zeros(&[nb], dev)?;
            let common =
                || -> Result<Args> { Args::new().t(s)?.ptr(w).i(mode).i(n).i(largest).t(&state) };
            ctx.launch(F, "radix_tie_blocks", blocks(nb), common()?.t(&prefix)?)?;
            let args = Args::new().t(&prefix)?.i(nb).t(&state)?;
            ctx.launch(F, "radix_scan", block_per(1), args)?;
            ctx.launch(F, "radix_write", blocks(nb), common()?.t(&prefix)?.t(&out)?)?;
            if l + 1 < layers.len() {
                ctx.launch(F, "radix_advance", block_per(1), Args::new().t(&state)?)?;
            }
        }
        words.push(out);
    }
    Ok(Selection { state, words })
}

fn upload_words(m: &Mask, dev: Device) -> Result<TensorOf<u64>> {
    TensorOf::from_vec(&[m.words().len()], m.words().to_vec(), dev)
}

fn word_op(kernel: &str, a: &TensorOf<u64>, b: &TensorOf<u64>) -> Result<TensorOf<u64>> {
    let nw = a.numel();
    let out = TensorOf::<u64>::zeros(&[nw], a.device())?;
    if nw > 0 {
        let args = Args::new().t(a)?.t(b)?.t(&out)?.i(nw);
        ctx_of(a)?.launch(F, kernel, grid_1d(nw), args)?;
    }
    Ok(out)
}

/// Exact top-/bottom-`k` of device scores among host candidates.
pub(crate) fn select(
    scores: &Tensor,
    k: usize,
    candidates: Option<&Mask>,
    order: Order,
) -> Result<Mask> {
    select_global(&[scores], &[candidates], k, order).map(|mut v| v.remove(0))
}

/// Exact selection over several layers ranked together.
pub(crate) fn select_global(
    scores: &[&Tensor],
    candidates: &[Option<&Mask>],
    k: usize,
    order: Order,
) -> Result<Vec<Mask>> {
    let dev = scores[0].device();
    let uploaded: Vec<Option<TensorOf<u64>>> = candidates
        .iter()
        .map(|c| c.map(|m| upload_words(m, dev)).transpose())
        .collect::<Result<_>>()?;
    let mut layers = Vec::with_capacity(scores.len());
    for (s, u) in scores.iter().zip(&uploaded) {
        let cand = match u {
            Some(t) => Cand::Set(dptr(t)?),
            None => Cand::All,
        };
        layers.push((*s, cand));
    }
    let sel = select_words(&layers, k, order)?;
    let available = scores
        .iter()
        .zip(candidates)
        .map(|(s, c)| c.map_or(s.numel(), |m| m.count_ones()))
        .sum();
    sel.check(k, available)?;
    scores
        .iter()
        .zip(&sel.words)
        .map(|(s, w)| Ok(Mask::from_words(s.shape(), w.to_host()?)?))
        .collect()
}

/// sparse-core's `drop_and_grow` on the device: drop the `n` smallest `drop` scores among
/// the active entries, grow the `n` largest `grow` scores among every position not kept.
/// Only the new mask's words come back to the host.
pub(crate) fn drop_and_grow(
    mask: &Mask,
    drop: &Tensor,
    grow: &Tensor,
    n: usize,
) -> Result<DropGrow> {
    let dev = drop.device();
    let active = mask.count_ones();
    if n > active {
        return Err(CoreError::NotEnoughCandidates {
            k: n,
            available: active,
        }
        .into());
    }
    let old = upload_words(mask, dev)?;
    let dropped = select_words(&[(drop, Cand::Set(dptr(&old)?))], n, Order::Smallest)?;
    let keep = word_op("words_and_not", &old, &dropped.words[0])?;
    let grown = select_words(&[(grow, Cand::Unset(dptr(&keep)?))], n, Order::Largest)?;
    let new = word_op("words_or", &keep, &grown.words[0])?;
    dropped.check(n, active)?;
    grown.check(n, mask.len() - (active - n))?;
    let new = Mask::from_words(mask.shape(), new.to_host()?)?;
    assert_eq!(new.count_ones(), active, "drop-and-grow changed the budget");
    Ok(DropGrow::from_masks(mask, new)?)
}

/// Set bits of a device mask, counted on the device (per-block partials added in order).
pub(crate) fn count_words(words: &TensorOf<u64>) -> Result<usize> {
    let nw = words.numel();
    if nw == 0 {
        return Ok(0);
    }
    let dims = grid_1d(nw);
    let partial = TensorOf::<u64>::zeros(&[dims.grid[0] as usize], words.device())?;
    let args = Args::new().t(words)?.t(&partial)?.i(nw);
    ctx_of(words)?.launch(F, "words_popcount", dims, args)?;
    Ok(partial.to_host()?.iter().sum::<u64>() as usize)
}
