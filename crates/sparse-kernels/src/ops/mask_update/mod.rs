//! Mask-update support: scores, exact selection, per-layer drop-and-grow applied to weights
//! and optimizer state, the DST-EE activity counter and nonzero counting.
//!
//! Scores are tensors on the layer's device and selection is an op, so a backend can score
//! and select without the host. The result is always a host [`Mask`] (sparse-core's exact
//! source of truth) installed through [`DeviceMask::set`]. Ties follow spec §0.2 on every
//! device: identical scores give identical masks.

mod cpu;
mod cuda;
mod select_cuda;

use sparse_core::{DropGrow, Mask, Order};

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::mask::DeviceMask;
use crate::tensor::{same, IndexTensor, Tensor, TensorOf};

/// Initial values of newly grown weights (their optimizer state is always zeroed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrowInit {
    /// 0.
    Zero,
    /// `std · N(0, 1)`: the k-th grown position (in index order) takes the k-th draw of
    /// `sparse_core::standard_normal` on the ChaCha8 stream `(seed, stream)`.
    Normal {
        /// Standard deviation.
        std: f32,
        /// Stream seed.
        seed: u64,
        /// Stream number.
        stream: u64,
    },
}

/// What a backend provides for the mask-update family (arguments already checked).
pub trait MaskUpdateOps {
    /// `|x|`.
    fn abs(x: &Tensor) -> Result<Tensor>;
    /// `|a ⊙ b|`.
    fn abs_product(a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// Nonzero entries.
    fn count_nonzero(x: &Tensor) -> Result<usize>;
    /// `x ⊙= M`.
    fn apply_mask(x: &mut Tensor, mask: &DeviceMask) -> Result<()>;
    /// `x[i] = 0` for every `i` set in `at`.
    fn zero_at(x: &mut Tensor, at: &Mask) -> Result<()>;
    /// Positions active in `within` whose value is `>= 0`.
    fn nonneg_within(x: &Tensor, within: &Mask) -> Result<Mask>;
    /// Exact top-/bottom-`k` of `scores` among `candidates` (all when `None`), §0.2 ties.
    fn select(scores: &Tensor, k: usize, candidates: Option<&Mask>, order: Order) -> Result<Mask>;
    /// Exact selection over several layers at once (one global ranking).
    fn select_global(
        scores: &[&Tensor],
        candidates: &[Option<&Mask>],
        k: usize,
        order: Order,
    ) -> Result<Vec<Mask>>;
    /// The smallest value of `x` at the positions set in `at` (`+inf` when none).
    fn min_at(x: &Tensor, at: &Mask) -> Result<f32>;
    /// The positions where `x >= theta`.
    fn at_least(x: &Tensor, theta: f32) -> Result<Mask>;
    /// sparse-core's `drop_and_grow` on device scores.
    fn drop_and_grow(mask: &Mask, drop: &Tensor, grow: &Tensor, n: usize) -> Result<DropGrow>;
    /// Writes a drop-and-grow result into a weight and its optimizer state.
    fn apply_drop_grow(
        w: &mut Tensor,
        state: &mut [&mut Tensor],
        dg: &DropGrow,
        init: GrowInit,
    ) -> Result<()>;
    /// DST-EE acquisition scores (see [`exploration_scores`]).
    fn exploration_scores(
        grad: &Tensor,
        counts: &IndexTensor,
        bonus: &Exploration,
    ) -> Result<Tensor>;
    /// `N ← N + M` (saturating).
    fn accumulate_activity(counter: &mut IndexTensor, mask: &DeviceMask) -> Result<()>;
}

fn check_len(op: &'static str, x: &Tensor, n: usize) -> Result<()> {
    if x.numel() != n {
        return shape_err(op, format!("{} values for a mask of {n}", x.numel()));
    }
    Ok(())
}

/// `|x|` element-wise (magnitude drop scores, gradient grow scores).
pub fn abs_scores(x: &Tensor) -> Result<Tensor> {
    dispatch!(x.device(), MaskUpdateOps::abs(x))
}

/// `|a ⊙ b|` element-wise (SNIP's saliency `|w ⊙ g|`); `a` and `b` share a shape and device.
pub fn abs_product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return shape_err(
            "abs_product",
            format!("shapes {:?} and {:?}", a.shape(), b.shape()),
        );
    }
    a.same_device("abs_product", b)?;
    dispatch!(a.device(), MaskUpdateOps::abs_product(a, b))
}

/// Number of nonzero entries.
pub fn count_nonzero(x: &Tensor) -> Result<usize> {
    dispatch!(x.device(), MaskUpdateOps::count_nonzero(x))
}

/// `x ⊙= M`: entries off the mask become exactly 0.
pub fn apply_mask(x: &mut Tensor, mask: &DeviceMask) -> Result<()> {
    if x.shape() != mask.shape() {
        return shape_err(
            "apply_mask",
            format!("mask {:?} vs tensor {:?}", mask.shape(), x.shape()),
        );
    }
    same("apply_mask", x.device(), mask.device())?;
    dispatch!(x.device(), MaskUpdateOps::apply_mask(x, mask))
}

/// Sets `x` to exactly 0 at every position set in `at` (pruned weights and momentum).
pub fn zero_at(x: &mut Tensor, at: &Mask) -> Result<()> {
    check_len("zero_at", x, at.len())?;
    dispatch!(x.device(), MaskUpdateOps::zero_at(x, at))
}

/// The positions of `within` where `x >= 0` (SET's sign split; zero counts as positive).
pub fn nonneg_within(x: &Tensor, within: &Mask) -> Result<Mask> {
    check_len("nonneg_within", x, within.len())?;
    dispatch!(x.device(), MaskUpdateOps::nonneg_within(x, within))
}

/// Exact selection of the `k` largest (or smallest) `scores` among `candidates` (every
/// position when `None`), with the spec §0.2 tie rule; the mask takes `scores`' shape.
pub fn select_mask(
    scores: &Tensor,
    k: usize,
    candidates: Option<&Mask>,
    order: Order,
) -> Result<Mask> {
    if let Some(c) = candidates {
        check_len("select_mask", scores, c.len())?;
    }
    dispatch!(
        scores.device(),
        MaskUpdateOps::select(scores, k, candidates, order)
    )
}

/// Exact selection of `k` entries over several layers ranked together (global pruning):
/// candidates of layer `l` are `candidates[l]` (every entry when `None`); one mask per layer.
pub fn select_global(
    scores: &[&Tensor],
    candidates: &[Option<&Mask>],
    k: usize,
    order: Order,
) -> Result<Vec<Mask>> {
    let Some(first) = scores.first() else {
        return Ok(Vec::new());
    };
    if candidates.len() != scores.len() {
        return shape_err(
            "select_global",
            format!(
                "{} candidate sets for {} layers",
                candidates.len(),
                scores.len()
            ),
        );
    }
    for (s, c) in scores.iter().zip(candidates) {
        first.same_device("select_global", *s)?;
        if let Some(c) = c {
            check_len("select_global", s, c.len())?;
        }
    }
    dispatch!(
        first.device(),
        MaskUpdateOps::select_global(scores, candidates, k, order)
    )
}

/// The smallest value of `x` at the positions set in `at` (`+inf` when `at` is empty).
pub fn min_at(x: &Tensor, at: &Mask) -> Result<f32> {
    check_len("min_at", x, at.len())?;
    dispatch!(x.device(), MaskUpdateOps::min_at(x, at))
}

/// The positions where `x >= theta` (a threshold mask, ties kept), shaped like `x`.
pub fn at_least(x: &Tensor, theta: f32) -> Result<Mask> {
    dispatch!(x.device(), MaskUpdateOps::at_least(x, theta))
}

/// Applies a drop-and-grow result to a layer: dropped weights and their optimizer state
/// become 0; newly grown weights get `init` and zero optimizer state. Positions dropped and
/// regrown in the same update are untouched (spec §0.5).
pub fn apply_drop_grow(
    w: &mut Tensor,
    state: &mut [&mut Tensor],
    dg: &DropGrow,
    init: GrowInit,
) -> Result<()> {
    for s in state.iter() {
        if s.shape() != w.shape() {
            return shape_err(
                "apply_drop_grow",
                format!("state {:?} vs weight {:?}", s.shape(), w.shape()),
            );
        }
        w.same_device("apply_drop_grow", s)?;
    }
    check_len("apply_drop_grow", w, dg.mask.len())?;
    dispatch!(
        w.device(),
        MaskUpdateOps::apply_drop_grow(w, state, dg, init)
    )
}

/// One layer's drop-and-grow: selects with `sparse-core`'s exact routine (drop the `n`
/// smallest `drop_scores` among active, grow the `n` largest `grow_scores` among the rest),
/// applies it to the weight and optimizer state, and installs the new mask.
pub fn update_layer(
    w: &mut Tensor,
    mask: &mut DeviceMask,
    state: &mut [&mut Tensor],
    drop_scores: &Tensor,
    grow_scores: &Tensor,
    n: usize,
    init: GrowInit,
) -> Result<DropGrow> {
    if mask.shape() != w.shape() {
        return shape_err(
            "update_layer",
            format!("mask {:?} vs weight {:?}", mask.shape(), w.shape()),
        );
    }
    check_len("update_layer drop scores", drop_scores, mask.len())?;
    check_len("update_layer grow scores", grow_scores, mask.len())?;
    w.same_device("update_layer", drop_scores)?;
    w.same_device("update_layer", grow_scores)?;
    let dg = dispatch!(
        w.device(),
        MaskUpdateOps::drop_and_grow(mask.mask(), drop_scores, grow_scores, n)
    )?;
    apply_drop_grow(w, state, &dg, init)?;
    mask.set(dg.mask.reshape(mask.shape())?)?;
    Ok(dg)
}

/// The constants of DST-EE's acquisition score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exploration {
    /// Exploration coefficient `c`.
    pub c: f64,
    /// `eps` in the denominator.
    pub eps: f64,
    /// `ln max(t, 2)` for the step (or update count) `t`.
    pub ln_t: f64,
    /// Divide `|G|` by the layer's `max |G|` (project extension).
    pub normalize: bool,
}

/// DST-EE grow scores `|G|·s + c·sqrt(ln t / (N + eps))`, computed in f64 and rounded to f32,
/// with `s = 1 / max|G|` when normalising (1 when the maximum is 0) and `s = 1` otherwise.
pub fn exploration_scores(
    grad: &Tensor,
    counts: &IndexTensor,
    bonus: &Exploration,
) -> Result<Tensor> {
    check_len("exploration_scores", grad, counts.numel())?;
    grad.same_device("exploration_scores", counts)?;
    dispatch!(
        grad.device(),
        MaskUpdateOps::exploration_scores(grad, counts, bonus)
    )
}

/// DST-EE activity counter update `N ← N + M` (saturating at `u32::MAX`).
pub fn accumulate_activity(counter: &mut IndexTensor, mask: &DeviceMask) -> Result<()> {
    if counter.numel() != mask.len() {
        return shape_err(
            "accumulate_activity",
            format!("{} counters for a mask of {}", counter.numel(), mask.len()),
        );
    }
    same("accumulate_activity", counter.device(), mask.device())?;
    dispatch!(
        counter.device(),
        MaskUpdateOps::accumulate_activity(counter, mask)
    )
}

/// Active entries of a mask, counted where the mask is used: on a CUDA device from its
/// device words (the per-layer nonzero count the budget check reads), else on the host.
pub fn mask_nonzero(mask: &DeviceMask) -> Result<usize> {
    match mask.device_words() {
        Some(w) => select_cuda::count_words(w),
        None => Ok(mask.count_ones()),
    }
}

/// [`select_mask`] over every entry, with the result left on the scores' device as mask
/// words (bit `i % 64` of word `i / 64`, sparse-core's layout): the form a device-side
/// update consumes, without the host [`Mask`]. Errors as [`select_mask`].
pub fn select_words(scores: &Tensor, k: usize, order: Order) -> Result<TensorOf<u64>> {
    match scores.device() {
        crate::Device::Cpu => {
            let m = <crate::backend::CpuBackend as MaskUpdateOps>::select(scores, k, None, order)?;
            TensorOf::cpu(&[m.words().len()], m.words().to_vec())
        }
        _ => {
            let s = select_cuda::select_words(&[(scores, select_cuda::Cand::All)], k, order)?;
            s.check(k, scores.numel())?;
            Ok(s.words.into_iter().next().expect("one layer"))
        }
    }
}
