//! The one drop-and-grow routine every dynamic-sparse criterion shares (spec §0.3, §2).

use crate::error::{CoreError, Result};
use crate::mask::Mask;
use crate::select::{select, Candidates, Order, Parallelism};

/// Outcome of one drop-and-grow update of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DropGrow {
    /// The new mask; it has exactly as many set entries as the old one.
    pub mask: Mask,
    /// Positions active before and inactive after (ascending flat indices).
    pub dropped: Vec<u32>,
    /// Positions inactive before and active after: the *newly activated* weights whose value
    /// and optimizer state the caller initialises (ascending flat indices). A position that
    /// was dropped and regrown in the same update is in neither list: it is untouched.
    pub grown: Vec<u32>,
}

impl DropGrow {
    /// The outcome of replacing mask `old` by `new` (same shape): the dropped and grown
    /// positions are the set differences, in ascending order. Used by every device's
    /// drop-and-grow once it has the new mask.
    pub fn from_masks(old: &Mask, new: Mask) -> Result<DropGrow> {
        let to_u32 = |m: Mask| m.iter_ones().map(|i| i as u32).collect();
        Ok(DropGrow {
            dropped: to_u32(old.and_not(&new)?),
            grown: to_u32(new.and_not(old)?),
            mask: new,
        })
    }
}

/// Drops the `n` active entries with the **smallest** `drop_scores` (ties: lower flat index
/// dropped first) and grows the `n` entries with the **largest** `grow_scores` among every
/// position not kept (ties: lower flat index first; just-dropped positions are eligible).
///
/// Both score slices cover the whole layer (entries outside the relevant set are ignored).
/// The budget invariant (`count(after) == count(before)`) and `kept ∩ grown = ∅` are
/// asserted: they hold by construction and a violation is a bug, not bad input.
pub fn drop_and_grow(
    mask: &Mask,
    drop_scores: &[f32],
    grow_scores: &[f32],
    n: usize,
) -> Result<DropGrow> {
    drop_and_grow_with(mask, drop_scores, grow_scores, n, Parallelism::Auto)
}

/// [`drop_and_grow`] with an explicit execution mode (results are identical for all modes).
pub fn drop_and_grow_with(
    mask: &Mask,
    drop_scores: &[f32],
    grow_scores: &[f32],
    n: usize,
    par: Parallelism,
) -> Result<DropGrow> {
    mask.check_len("drop scores", drop_scores.len())?;
    mask.check_len("grow scores", grow_scores.len())?;
    let active = mask.count_ones();
    if n > active {
        return Err(CoreError::NotEnoughCandidates {
            k: n,
            available: active,
        });
    }
    let shape = mask.shape();
    let drop = select(
        shape,
        drop_scores,
        n,
        Candidates::Set(mask),
        Order::Smallest,
        par,
    )?;
    let keep = mask.and_not(&drop)?;
    let grow = select(
        shape,
        grow_scores,
        n,
        Candidates::Unset(&keep),
        Order::Largest,
        par,
    )?;
    assert!(keep.is_disjoint(&grow)?, "grow set intersects kept set");
    let new = keep.or(&grow)?;
    assert_eq!(new.count_ones(), active, "drop-and-grow changed the budget");
    DropGrow::from_masks(mask, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_rigl_update() {
        // Active: 0, 1, 3, 5. |w| = 0.5, 0.1, _, 0.2, _, 0.9. Drop 2 -> drop 1 and 3.
        let mask = Mask::from_bools(&[2, 3], &[true, true, false, true, false, true]).unwrap();
        let w = [0.5, 0.1, 0.0, 0.2, 0.0, 0.9];
        // Candidates after drop: 1, 2, 3, 4. |g| largest: 4 (0.8), then 1 (0.7).
        let g = [9.0, 0.7, 0.3, 0.1, 0.8, 9.0];
        let r = drop_and_grow(&mask, &w, &g, 2).unwrap();
        assert_eq!(r.mask.iter_ones().collect::<Vec<_>>(), vec![0, 1, 4, 5]);
        // 1 was dropped and regrown: untouched, in neither list.
        assert_eq!(r.dropped, vec![3]);
        assert_eq!(r.grown, vec![4]);
    }

    #[test]
    fn zero_and_full_updates() {
        let mask = Mask::from_bools(&[4], &[true, false, true, false]).unwrap();
        let s = [1.0, 2.0, 3.0, 4.0];
        let r = drop_and_grow(&mask, &s, &s, 0).unwrap();
        assert_eq!(r.mask, mask);
        assert!(r.dropped.is_empty() && r.grown.is_empty());
        let r = drop_and_grow(&mask, &s, &s, 2).unwrap();
        assert_eq!(r.mask.iter_ones().collect::<Vec<_>>(), vec![2, 3]);
        assert!(matches!(
            drop_and_grow(&mask, &s, &s, 3),
            Err(CoreError::NotEnoughCandidates { k: 3, available: 2 })
        ));
    }
}
