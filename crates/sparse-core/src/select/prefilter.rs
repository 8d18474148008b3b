//! Prefiltered selection, for `k` a small share of many candidates (a grow step's top-k
//! among the inactive weights of a 98%-sparse layer).
//!
//! A strided sample of the keys gives a threshold that, with a margin, admits somewhat more
//! than `k` candidates. One pass, which vectorises, collects the candidates whose key is
//! no worse; the exact `(key, index)` order then picks `k` of them. The result is exactly
//! the radix select's: every one of the best `k` has a key no worse than the `k`-th best,
//! and that key passes the threshold whenever at least `k` keys do. When fewer pass (the
//! sample misled), too many pass (ties at the threshold), or a candidate is NaN, the caller
//! runs the radix select instead, which also reports the NaN.

use super::Problem;
use crate::mask::Mask;

/// One entry in `SAMPLE_STRIDE` is sampled (offset within its stride by a fixed pattern,
/// so a periodic candidate layout does not alias with the sample).
const SAMPLE_STRIDE: usize = 32;
/// Entries counted at once (a vectorised count) before any is looked at one by one.
const BLOCK: usize = 16;
/// Fewest candidates for which the prefilter is tried.
const MIN_CANDIDATES: usize = 1 << 14;
/// The prefilter is tried for `k · MAX_SHARE <= candidates`.
const MAX_SHARE: usize = 16;

impl Problem<'_> {
    /// The selection of `k` candidates written into `out` (all zero on entry), or `out`
    /// back unchanged when the prefilter does not apply.
    pub(super) fn prefiltered(&self, k: usize, mut out: Mask) -> Result<Mask, Mask> {
        let n = self.scores.len();
        let words = n.div_ceil(64);
        let cands: usize = (0..words)
            .map(|w| self.cand_word(w).count_ones() as usize)
            .sum();
        if k == 0 || cands < MIN_CANDIDATES || k * MAX_SHARE > cands {
            return Err(out);
        }
        let is_cand = |i: usize| (self.cand_word(i / 64) >> (i % 64)) & 1 == 1;
        let fold = |x: f32| if x == 0.0 { 0.0 } else { x };
        let mut sample: Vec<(u32, f32)> = (0..n / SAMPLE_STRIDE)
            .map(|j| j * SAMPLE_STRIDE + (j * 13) % SAMPLE_STRIDE)
            .filter(|&i| is_cand(i))
            .map(|i| (self.key(self.scores[i]), fold(self.scores[i])))
            .collect();
        // Rank of the threshold in the sample: 1.5x the share of k, plus a margin.
        let rank = (3 * k * sample.len()).div_ceil(2 * cands) + 8;
        if rank >= sample.len() {
            return Err(out);
        }
        // For a non-NaN score, `key(x) <= key(t)` is `x >= t` (largest first) or `x <= t`,
        // as floats: the key is monotone and folds -0.0 onto +0.0 as float equality does.
        let t = sample.select_nth_unstable_by_key(rank - 1, |s| s.0).1 .1;
        let largest = self.flip != 0;
        // More than this many passing means ties at the threshold: the radix select is
        // cheaper than ordering them.
        let limit = 4 * k + 4096;
        let parts = self.map_chunks(|c| {
            let mut passed = Vec::new();
            for w in self.chunk_words(c) {
                let bits = self.cand_word(w);
                if bits == 0 {
                    continue;
                }
                let xs = &self.scores[w * 64..(w * 64 + 64).min(n)];
                if xs.iter().fold(false, |a, x| a | x.is_nan()) {
                    return None;
                }
                for (q, part) in xs.chunks(BLOCK).enumerate() {
                    let hits = if largest {
                        count_passing::<true>(part, t)
                    } else {
                        count_passing::<false>(part, t)
                    };
                    if hits == 0 {
                        continue;
                    }
                    for (j, &x) in part.iter().enumerate() {
                        let b = q * BLOCK + j;
                        let pass = if largest { x >= t } else { x <= t };
                        if pass && (bits >> b) & 1 == 1 {
                            passed.push((self.key(x), (w * 64 + b) as u32));
                        }
                    }
                }
                if passed.len() > limit {
                    return None;
                }
            }
            Some(passed)
        });
        let mut passed = Vec::new();
        for p in parts {
            let Some(p) = p else {
                return Err(out);
            };
            passed.extend(p);
        }
        if passed.len() < k || passed.len() > limit {
            return Err(out);
        }
        // `(key, index)` ascending is the rank order: smaller keys first, ties by index.
        passed.select_nth_unstable(k - 1);
        let words = out.words_mut();
        for &(_, i) in &passed[..k] {
            words[i as usize / 64] |= 1 << (i % 64);
        }
        Ok(out)
    }
}

/// How many of `xs` are `>= t` (`LARGEST`) or `<= t`.
#[inline(always)]
fn count_passing<const LARGEST: bool>(xs: &[f32], t: f32) -> u32 {
    xs.iter()
        .map(|&x| if LARGEST { x >= t } else { x <= t } as u32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::{select, Candidates, Order, Parallelism};
    use super::*;
    use crate::rng::stream_rng;
    use rand_core::RngCore;

    /// The selection by sorting every candidate by `(score rank, index)`: the reference.
    fn by_sorting(s: &[f32], k: usize, cand: &dyn Fn(usize) -> bool, largest: bool) -> Vec<usize> {
        let fold = |x: f32| if x == 0.0 { 0.0 } else { x };
        let mut idx: Vec<usize> = (0..s.len()).filter(|&i| cand(i)).collect();
        idx.sort_by(|&a, &b| {
            let (x, y) = (fold(s[a]), fold(s[b]));
            let o = if largest {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            };
            o.then(a.cmp(&b))
        });
        let mut out: Vec<usize> = idx[..k].to_vec();
        out.sort();
        out
    }

    #[test]
    fn prefiltered_selection_equals_sorting_and_the_radix_select() {
        let mut rng = stream_rng(41, 0);
        let n = 70_000;
        for case in 0..16u32 {
            // Distinct scores, few distinct values (heavy ties), mostly zeros, or 5000
            // levels (ties at the threshold that the prefilter orders by index).
            let s: Vec<f32> = (0..n)
                .map(|_| {
                    let u = rng.next_u32();
                    match case % 4 {
                        0 => (u as f32 / u32::MAX as f32) - 0.3,
                        1 => (u % 7) as f32 - 3.0,
                        3 => (u % 5000) as f32 - 700.0,
                        _ if u % 10 < 9 => {
                            if u.is_multiple_of(2) {
                                0.0
                            } else {
                                -0.0
                            }
                        }
                        _ => (u % 1000) as f32,
                    }
                })
                .collect();
            let mask = Mask::from_bools(
                &[n],
                &(0..n)
                    .map(|_| rng.next_u32().is_multiple_of(50))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let largest = case % 2 == 0;
            let order = if largest {
                Order::Largest
            } else {
                Order::Smallest
            };
            for k in [1, 17, 600, 3000] {
                let cand = |i: usize| !mask.get(i);
                let want = by_sorting(&s, k, &cand, largest);
                for par in [Parallelism::Serial, Parallelism::Parallel] {
                    let got = select(&[n], &s, k, Candidates::Unset(&mask), order, par).unwrap();
                    assert_eq!(
                        got.iter_ones().collect::<Vec<_>>(),
                        want,
                        "case {case} k {k}"
                    );
                }
                // The prefilter itself applies to the distinct and the 5000-level cases.
                let p = Problem {
                    scores: &s,
                    cand: Candidates::Unset(&mask),
                    flip: if largest { !0 } else { 0 },
                    parallel: false,
                };
                let direct = p.prefiltered(k, Mask::zeros(&[n]));
                if case % 4 == 0 || case % 4 == 3 {
                    assert!(direct.is_ok(), "case {case} k {k}: prefilter fell back");
                }
                if let Ok(m) = direct {
                    assert_eq!(m.iter_ones().collect::<Vec<_>>(), want, "case {case} k {k}");
                }
            }
        }
    }

    #[test]
    fn prefilter_leaves_nan_to_the_radix_select() {
        let n = 40_000;
        let mut s: Vec<f32> = (0..n).map(|i| (i % 977) as f32).collect();
        s[30_001] = f32::NAN;
        let r = select(
            &[n],
            &s,
            5,
            Candidates::All,
            Order::Largest,
            Parallelism::Serial,
        );
        assert_eq!(r, Err(crate::CoreError::NanScore { index: 30_001 }));
    }
}
