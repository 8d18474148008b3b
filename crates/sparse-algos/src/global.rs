//! Global (all-layer) exact selection: concatenate, select once, split back.

use sparse_core::{select, Candidates, Mask, Order, Parallelism};

use crate::error::Result;

/// Selects `k` entries over all layers by `order` among each layer's candidate set
/// (`cand[l]`, `None` = every entry), returning one mask per layer.
pub(crate) fn select_global(
    scores: &[Vec<f32>],
    cand: &[Option<&Mask>],
    k: usize,
    order: Order,
) -> Result<Vec<Mask>> {
    let total: usize = scores.iter().map(|s| s.len()).sum();
    let mut all = Vec::with_capacity(total);
    let mut cmask = Mask::zeros(&[total]);
    let mut off = 0;
    for (s, c) in scores.iter().zip(cand) {
        all.extend_from_slice(s);
        match c {
            Some(m) => m.iter_ones().for_each(|i| cmask.set(off + i)),
            None => (off..off + s.len()).for_each(|i| cmask.set(i)),
        }
        off += s.len();
    }
    let sel = select(
        &[total],
        &all,
        k,
        Candidates::Set(&cmask),
        order,
        Parallelism::Auto,
    )?;
    let mut out = Vec::with_capacity(scores.len());
    let mut off = 0;
    for s in scores {
        let mut m = Mask::zeros(&[s.len()]);
        sel.iter_ones_in(off, off + s.len())
            .for_each(|i| m.set(i - off));
        out.push(m);
        off += s.len();
    }
    Ok(out)
}
