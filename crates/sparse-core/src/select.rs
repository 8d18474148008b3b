//! Exact top-k / bottom-k selection restricted to a candidate set (spec §0.2).
//!
//! Ranking is by `(score, flat index)`: for *largest* selections ties go to the lower flat
//! index, for *smallest* selections the lower flat index is taken first. Exactly `k`
//! entries are selected. `-0.0` ranks equal to `+0.0`; NaN scores are an error.
//!
//! The algorithm is a three-digit radix select on an order-preserving 32-bit key (the same
//! scheme a GPU radix-select kernel uses): integer histograms find the exact threshold key
//! and how many entries tied with it to take, then one pass writes the result mask. All
//! reductions are integer sums, so the parallel result is bit-identical to the serial one.
//! Cost: three linear passes over the scores (histogram, gather of the threshold's
//! top-digit bucket, write), plus two passes over that bucket only.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::mask::Mask;

/// Which entries may be selected.
#[derive(Debug, Clone, Copy)]
pub enum Candidates<'a> {
    /// Every entry.
    All,
    /// Entries set in the mask (e.g. the active weights).
    Set(&'a Mask),
    /// Entries not set in the mask (e.g. the inactive weights).
    Unset(&'a Mask),
}

/// Whether the largest or the smallest scores are selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Largest scores first; ties: lower flat index first.
    Largest,
    /// Smallest scores first; ties: lower flat index first.
    Smallest,
}

/// How a selection is executed. All choices give identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// Parallel (rayon) above [`PARALLEL_MIN_LEN`] entries, serial below.
    #[default]
    Auto,
    /// Always serial.
    Serial,
    /// Always on the rayon pool.
    Parallel,
}

/// Size from which [`Parallelism::Auto`] uses the rayon pool.
pub const PARALLEL_MIN_LEN: usize = 1 << 18;

/// Elements per work chunk (a multiple of 64 so chunks own whole mask words).
const CHUNK: usize = 1 << 16;
const CHUNK_WORDS: usize = CHUNK / 64;

/// Radix digits of the 32-bit key, most significant first: (shift, width).
const DIGITS: [(u32, u32); 3] = [(21, 11), (10, 11), (0, 10)];

/// The `k` largest scores among the candidates, as a mask of `shape`
/// (`scores.len()` must equal the shape's element count).
pub fn top_k(shape: &[usize], scores: &[f32], k: usize, cand: Candidates) -> Result<Mask> {
    select(shape, scores, k, cand, Order::Largest, Parallelism::Auto)
}

/// The `k` smallest scores among the candidates, as a mask of `shape`.
pub fn bottom_k(shape: &[usize], scores: &[f32], k: usize, cand: Candidates) -> Result<Mask> {
    select(shape, scores, k, cand, Order::Smallest, Parallelism::Auto)
}

/// Exact selection of `k` candidates by `order` with the project tie rule.
pub fn select(
    shape: &[usize],
    scores: &[f32],
    k: usize,
    cand: Candidates,
    order: Order,
    par: Parallelism,
) -> Result<Mask> {
    let out = Mask::zeros(shape);
    out.check_len("selection scores", scores.len())?;
    if let Candidates::Set(m) | Candidates::Unset(m) = cand {
        out.check_shape(m, "selection candidate mask")?;
    }
    let parallel = match par {
        Parallelism::Auto => scores.len() >= PARALLEL_MIN_LEN,
        Parallelism::Serial => false,
        Parallelism::Parallel => true,
    };
    let p = Problem {
        scores,
        cand,
        order,
        parallel,
    };
    p.run(out, k)
}

/// Order-preserving map from f32 to u32 (`-0.0` folded onto `+0.0`).
#[inline]
fn ordered_key(x: f32) -> u32 {
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

struct Problem<'a> {
    scores: &'a [f32],
    cand: Candidates<'a>,
    order: Order,
    parallel: bool,
}

impl Problem<'_> {
    fn n_chunks(&self) -> usize {
        self.scores.len().div_ceil(CHUNK)
    }

    /// Rank key: smaller is better.
    #[inline]
    fn key(&self, x: f32) -> u32 {
        match self.order {
            Order::Smallest => ordered_key(x),
            Order::Largest => !ordered_key(x),
        }
    }

    /// Candidate bits of mask word `w`.
    #[inline]
    fn cand_word(&self, w: usize) -> u64 {
        let n = self.scores.len();
        let valid = if (w + 1) * 64 <= n {
            u64::MAX
        } else {
            (1u64 << (n % 64)) - 1
        };
        match self.cand {
            Candidates::All => valid,
            Candidates::Set(m) => m.words()[w],
            Candidates::Unset(m) => !m.words()[w] & valid,
        }
    }

    /// Calls `f(word_index, bit, flat_index)` for each candidate of chunk `c`, in
    /// increasing flat-index order. Full words take a plain (vectorisable) loop.
    #[inline]
    fn for_each_candidate(&self, c: usize, mut f: impl FnMut(usize, u32, usize)) {
        let w0 = c * CHUNK_WORDS;
        let w1 = (w0 + CHUNK_WORDS).min(self.scores.len().div_ceil(64));
        for w in w0..w1 {
            let mut bits = self.cand_word(w);
            if bits == u64::MAX {
                for b in 0..64 {
                    f(w, b, w * 64 + b as usize);
                }
                continue;
            }
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f(w, b, w * 64 + b as usize);
            }
        }
    }

    fn map_chunks<T: Send>(&self, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        if self.parallel {
            (0..self.n_chunks()).into_par_iter().map(f).collect()
        } else {
            (0..self.n_chunks()).map(f).collect()
        }
    }

    /// Pass 1: histogram of the top digit over all candidates, plus the first NaN.
    /// Four interleaved sub-histograms break the store-to-load dependency chains that
    /// clustered keys (many scores in one bucket) would otherwise create.
    fn top_histogram(&self) -> (Vec<u64>, Option<usize>) {
        let (shift, width) = DIGITS[0];
        let buckets = 1usize << width;
        let parts = self.map_chunks(|c| {
            let mut h = vec![0u32; 4 * buckets];
            let mut nan = None;
            self.for_each_candidate(c, |_, b, i| {
                let x = self.scores[i];
                if x.is_nan() {
                    nan.get_or_insert(i);
                    return;
                }
                let lane = (b & 3) as usize * buckets;
                h[lane + (self.key(x) >> shift) as usize] += 1;
            });
            (h, nan)
        });
        let mut hist = vec![0u64; buckets];
        let mut nan = None;
        for (h, n) in parts {
            for lane in h.chunks(buckets) {
                hist.iter_mut().zip(lane).for_each(|(a, &b)| *a += b as u64);
            }
            if nan.is_none() {
                nan = n;
            }
        }
        (hist, nan)
    }

    /// Pass 2: `(key, index)` of every candidate whose top digit is `bucket`, in index order.
    fn gather_bucket(&self, bucket: u32) -> Vec<(u32, u32)> {
        let shift = DIGITS[0].0;
        self.map_chunks(|c| {
            let mut v = Vec::new();
            self.for_each_candidate(c, |_, _, i| {
                let key = self.key(self.scores[i]);
                if key >> shift == bucket {
                    v.push((key, i as u32));
                }
            });
            v
        })
        .concat()
    }

    fn run(&self, mut out: Mask, k: usize) -> Result<Mask> {
        if self.scores.len() > u32::MAX as usize {
            return Err(CoreError::TooLarge {
                what: "selection input".into(),
                size: self.scores.len(),
            });
        }
        let (hist, nan) = self.top_histogram();
        if let Some(index) = nan {
            return Err(CoreError::NanScore { index });
        }
        let available: u64 = hist.iter().sum();
        if k as u64 > available {
            return Err(CoreError::NotEnoughCandidates {
                k,
                available: available as usize,
            });
        }
        if k == 0 {
            return Ok(out);
        }
        let (bucket, mut need) = locate(&hist, k as u64);
        let mut prefix = bucket;
        // The remaining digits only look at the (small) bucket that holds the k-th entry.
        let gathered = self.gather_bucket(bucket);
        for &(shift, width) in &DIGITS[1..] {
            let top = shift + width;
            let mut h = vec![0u64; 1 << width];
            for &(key, _) in &gathered {
                if key >> top == prefix {
                    h[((key >> shift) & ((1 << width) - 1)) as usize] += 1;
                }
            }
            let (b, rest) = locate(&h, need);
            need = rest;
            prefix = (prefix << width) | b;
        }
        self.write_selection(&mut out, prefix, need as usize);
        Ok(out)
    }

    /// Selects every candidate with key < threshold plus the first `take_eq` (by flat index)
    /// candidates with key == threshold.
    fn write_selection(&self, out: &mut Mask, threshold: u32, take_eq: usize) {
        // Per chunk: words of strictly-better candidates, words of tied ones, tie count.
        let parts = self.map_chunks(|c| {
            let w0 = c * CHUNK_WORDS;
            let w1 = (w0 + CHUNK_WORDS).min(self.scores.len().div_ceil(64));
            let mut less = vec![0u64; w1 - w0];
            let mut eq = vec![0u64; w1 - w0];
            let mut n_eq = 0usize;
            for w in w0..w1 {
                let (mut l, mut e) = (0u64, 0u64);
                let mut bits = self.cand_word(w);
                if bits == u64::MAX {
                    let xs = &self.scores[w * 64..w * 64 + 64];
                    for (b, &x) in xs.iter().enumerate() {
                        let key = self.key(x);
                        l |= ((key < threshold) as u64) << b;
                        e |= ((key == threshold) as u64) << b;
                    }
                } else {
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        bits &= bits - 1;
                        let key = self.key(self.scores[w * 64 + b as usize]);
                        l |= ((key < threshold) as u64) << b;
                        e |= ((key == threshold) as u64) << b;
                    }
                }
                less[w - w0] = l;
                eq[w - w0] = e;
                n_eq += e.count_ones() as usize;
            }
            (less, eq, n_eq)
        });
        let mut remaining = take_eq;
        let words = out.words_mut();
        let mut w = 0;
        for (less, eq, n_eq) in parts {
            let mut take = remaining.min(n_eq);
            remaining -= take;
            for (l, e) in less.iter().zip(&eq) {
                let mut e = *e;
                let mut keep = 0u64;
                while take > 0 && e != 0 {
                    let low = e & e.wrapping_neg();
                    keep |= low;
                    e ^= low;
                    take -= 1;
                }
                words[w] = l | keep;
                w += 1;
            }
        }
    }
}

/// The bucket holding the `need`-th smallest entry of a histogram, and how many entries of
/// that bucket are still needed.
fn locate(hist: &[u64], need: u64) -> (u32, u64) {
    let mut below = 0u64;
    for (b, &cnt) in hist.iter().enumerate() {
        if below + cnt >= need {
            return (b as u32, need - below);
        }
        below += cnt;
    }
    unreachable!("need <= total was checked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_ties() {
        let s = [3.0, 1.0, 3.0, -0.0, 0.0, 5.0, 1.0];
        let m = top_k(&[7], &s, 3, Candidates::All).unwrap();
        // 5.0 (idx 5), then the two 3.0s (idx 0, 2).
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![0, 2, 5]);
        let m = top_k(&[7], &s, 4, Candidates::All).unwrap();
        // then the lower-index 1.0.
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![0, 1, 2, 5]);
        let m = bottom_k(&[7], &s, 1, Candidates::All).unwrap();
        // -0.0 ties +0.0; the lower index goes first.
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![3]);
        let active =
            Mask::from_bools(&[7], &[true, false, false, false, true, true, true]).unwrap();
        let m = bottom_k(&[7], &s, 2, Candidates::Set(&active)).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![4, 6]);
        let m = top_k(&[7], &s, 2, Candidates::Unset(&active)).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn errors_instead_of_panics() {
        let s = [1.0, f32::NAN, 2.0];
        assert_eq!(
            top_k(&[3], &s, 1, Candidates::All),
            Err(CoreError::NanScore { index: 1 })
        );
        assert!(matches!(
            top_k(&[3], &[1.0, 2.0, 3.0], 4, Candidates::All),
            Err(CoreError::NotEnoughCandidates { k: 4, available: 3 })
        ));
        assert!(matches!(
            top_k(&[4], &[1.0, 2.0, 3.0], 1, Candidates::All),
            Err(CoreError::ShapeMismatch { .. })
        ));
        let m = Mask::zeros(&[2]);
        assert!(matches!(
            top_k(&[3], &[1.0, 2.0, 3.0], 1, Candidates::Set(&m)),
            Err(CoreError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn infinities_and_extremes() {
        let s = [f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, 0.0];
        let m = top_k(&[5], &s, 2, Candidates::All).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![0, 2]);
        let m = bottom_k(&[5], &s, 2, Candidates::All).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![1, 3]);
    }
}
