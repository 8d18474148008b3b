//! Mask-update support: scores, per-layer drop-and-grow applied to weights and optimizer
//! state, the DST-EE activity counter and nonzero counting.

use rayon::prelude::*;
use sparse_core::{drop_and_grow, DropGrow, Mask};

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// `|x|` element-wise (magnitude drop scores, gradient grow scores).
pub fn abs_scores(x: &Tensor) -> Vec<f32> {
    x.as_slice()
        .par_iter()
        .with_min_len(1 << 14)
        .map(|v| v.abs())
        .collect()
}

/// Number of nonzero entries.
pub fn count_nonzero(x: &Tensor) -> usize {
    x.as_slice()
        .par_iter()
        .with_min_len(1 << 14)
        .filter(|&&v| v != 0.0)
        .count()
}

/// Applies a drop-and-grow result to a layer: dropped weights and their optimizer state
/// become 0; newly grown weights get `init(flat index)` and zero optimizer state. Positions
/// dropped and regrown in the same update are untouched (spec §0.5).
pub fn apply_drop_grow(
    w: &mut Tensor,
    state: &mut [&mut Tensor],
    dg: &DropGrow,
    mut init: impl FnMut(usize) -> f32,
) -> Result<()> {
    for s in state.iter() {
        if s.shape() != w.shape() {
            return shape_err(
                "apply_drop_grow",
                format!("state {:?} vs weight {:?}", s.shape(), w.shape()),
            );
        }
    }
    let n = w.numel();
    if dg.mask.len() != n {
        return shape_err(
            "apply_drop_grow",
            format!("mask of {} entries vs weight of {n}", dg.mask.len()),
        );
    }
    let wv = w.as_mut_slice();
    for &i in &dg.dropped {
        wv[i as usize] = 0.0;
    }
    for &i in &dg.grown {
        wv[i as usize] = init(i as usize);
    }
    for s in state.iter_mut() {
        let sv = s.as_mut_slice();
        for &i in dg.dropped.iter().chain(&dg.grown) {
            sv[i as usize] = 0.0;
        }
    }
    Ok(())
}

/// One layer's drop-and-grow: selects with `sparse-core`'s exact routine (drop the `n`
/// smallest `drop_scores` among active, grow the `n` largest `grow_scores` among the rest),
/// applies it to the weight and optimizer state, and replaces `mask`.
pub fn update_layer(
    w: &mut Tensor,
    mask: &mut Mask,
    state: &mut [&mut Tensor],
    drop_scores: &[f32],
    grow_scores: &[f32],
    n: usize,
    init: impl FnMut(usize) -> f32,
) -> Result<DropGrow> {
    if mask.shape() != w.shape() {
        return shape_err(
            "update_layer",
            format!("mask {:?} vs weight {:?}", mask.shape(), w.shape()),
        );
    }
    let dg = drop_and_grow(mask, drop_scores, grow_scores, n)?;
    apply_drop_grow(w, state, &dg, init)?;
    *mask = dg.mask.clone();
    Ok(dg)
}

/// DST-EE activity counter update `N ← N + M` (saturating at `u32::MAX`).
pub fn accumulate_activity(counter: &mut [u32], mask: &Mask) -> Result<()> {
    if counter.len() != mask.len() {
        return shape_err(
            "accumulate_activity",
            format!("{} counters for a mask of {}", counter.len(), mask.len()),
        );
    }
    for (chunk, &word) in counter.chunks_mut(64).zip(mask.words()) {
        if word == 0 {
            continue;
        }
        for (b, c) in chunk.iter_mut().enumerate() {
            *c = c.saturating_add(((word >> b) & 1) as u32);
        }
    }
    Ok(())
}
