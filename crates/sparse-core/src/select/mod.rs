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
//! Cost: two linear passes over the scores (the top digit's histogram; then the words of
//! candidates above the threshold's top-digit bucket, and a gather of that bucket), plus
//! three passes over that bucket only. When `k` is a small share of many candidates, a
//! sampled threshold and one vectorised pass usually do it instead, with the same result
//! ([`prefilter`]).

mod prefilter;

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

/// Candidate bits from which a mask word is scanned entry by entry (branch-free, masked)
/// rather than bit by bit.
const DENSE_WORD_BITS: u32 = 16;

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
        flip: if order == Order::Largest { !0 } else { 0 },
        parallel,
    };
    p.run(out, k)
}

/// Order-preserving map from f32 to u32 (`-0.0` folded onto `+0.0`).
#[inline]
fn ordered_key(x: f32) -> u32 {
    // Branch-free: negatives flip every bit, non-negatives set the sign bit.
    let b = if x == 0.0 { 0 } else { x.to_bits() };
    b ^ (((b as i32) >> 31) as u32 | 0x8000_0000)
}

/// One chunk's share of pass 2: the words of its candidates that beat the threshold's
/// bucket, and `(key, flat index)` of its candidates in that bucket.
type ChunkSplit = (Vec<u64>, Vec<(u32, u32)>);

struct Problem<'a> {
    scores: &'a [f32],
    cand: Candidates<'a>,
    /// `!0` for [`Order::Largest`] (the key's complement ranks largest first), else 0.
    flip: u32,
    parallel: bool,
}

impl Problem<'_> {
    fn n_chunks(&self) -> usize {
        self.scores.len().div_ceil(CHUNK)
    }

    /// Rank key: smaller is better.
    #[inline]
    fn key(&self, x: f32) -> u32 {
        ordered_key(x) ^ self.flip
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

    /// Mask words of chunk `c`.
    fn chunk_words(&self, c: usize) -> std::ops::Range<usize> {
        let w0 = c * CHUNK_WORDS;
        w0..(w0 + CHUNK_WORDS).min(self.scores.len().div_ceil(64))
    }

    /// Calls `f(bit, score, is_candidate)` for the entries of word `w`: for every entry of a
    /// dense word (a branch-free loop over all 64, the caller masks with the flag), for the
    /// set bits only of a sparse one. Either way in increasing bit order.
    #[inline(always)]
    fn for_each_in_word(&self, w: usize, bits: u64, mut f: impl FnMut(u32, f32, u64)) {
        if bits.count_ones() >= DENSE_WORD_BITS {
            let xs = &self.scores[w * 64..(w * 64 + 64).min(self.scores.len())];
            for (b, &x) in xs.iter().enumerate() {
                f(b as u32, x, (bits >> b) & 1);
            }
        } else {
            let mut bits = bits;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f(b, self.scores[w * 64 + b as usize], 1);
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
            let mut h = vec![[0u32; 1 << DIGITS[0].1]; 4];
            let mut nan = None;
            for w in self.chunk_words(c) {
                let bits = self.cand_word(w);
                let mut any_nan = false;
                self.for_each_in_word(w, bits, |b, x, on| {
                    any_nan |= x.is_nan() & (on == 1);
                    h[(b & 3) as usize][(self.key(x) >> shift) as usize] += on as u32;
                });
                if any_nan && nan.is_none() {
                    nan = (0..64)
                        .find(|&b| (bits >> b) & 1 == 1 && self.scores[w * 64 + b].is_nan())
                        .map(|b| w * 64 + b);
                }
            }
            (h, nan)
        });
        let mut hist = vec![0u64; buckets];
        let mut nan = None;
        for (h, n) in parts {
            for lane in &h {
                hist.iter_mut().zip(lane).for_each(|(a, &b)| *a += b as u64);
            }
            if nan.is_none() {
                nan = n;
            }
        }
        (hist, nan)
    }

    /// Pass 2, per chunk: the words of candidates whose top digit beats `bucket` (all
    /// selected), and `(key, index)` of those in `bucket`, in index order.
    fn split_at_bucket(&self, bucket: u32) -> Vec<ChunkSplit> {
        let shift = DIGITS[0].0;
        self.map_chunks(|c| {
            let words = self.chunk_words(c);
            let mut less = Vec::with_capacity(words.len());
            let mut tied = Vec::new();
            for w in words {
                let mut l = 0u64;
                self.for_each_in_word(w, self.cand_word(w), |b, x, on| {
                    let key = self.key(x);
                    l |= (((key >> shift) < bucket) as u64 & on) << b;
                    if key >> shift == bucket && on == 1 {
                        tied.push((key, (w * 64) as u32 + b));
                    }
                });
                less.push(l);
            }
            (less, tied)
        })
    }

    fn run(&self, out: Mask, k: usize) -> Result<Mask> {
        if self.scores.len() > u32::MAX as usize {
            return Err(CoreError::TooLarge {
                what: "selection input".into(),
                size: self.scores.len(),
            });
        }
        let out = match self.prefiltered(k, out) {
            Ok(selected) => return Ok(selected),
            Err(out) => out,
        };
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
        self.radix(out, k, &hist)
    }

    /// The radix select of `k` candidates given the top digit's histogram.
    fn radix(&self, mut out: Mask, k: usize, hist: &[u64]) -> Result<Mask> {
        let (bucket, mut need) = locate(hist, k as u64);
        let mut prefix = bucket;
        let parts = self.split_at_bucket(bucket);
        // The remaining digits only look at the (small) bucket that holds the k-th entry.
        let gathered = || parts.iter().flat_map(|(_, t)| t.iter());
        for &(shift, width) in &DIGITS[1..] {
            let top = shift + width;
            let mut h = vec![0u64; 1 << width];
            for &(key, _) in gathered() {
                if key >> top == prefix {
                    h[((key >> shift) & ((1 << width) - 1)) as usize] += 1;
                }
            }
            let (b, rest) = locate(&h, need);
            need = rest;
            prefix = (prefix << width) | b;
        }
        // Everything below the threshold key, plus the first `need` (by flat index) equal
        // to it.
        let words = out.words_mut();
        let mut w = 0;
        for (less, _) in &parts {
            words[w..w + less.len()].copy_from_slice(less);
            w += less.len();
        }
        let mut take_eq = need;
        for &(key, i) in gathered() {
            if key < prefix || (key == prefix && take_eq > 0) {
                take_eq -= (key == prefix) as u64;
                words[i as usize / 64] |= 1 << (i % 64);
            }
        }
        Ok(out)
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
    fn nan_in_scanned_words() {
        // 100 entries: the first word is scanned entry by entry (>= DENSE_WORD_BITS
        // candidates), the second (36 entries) too; NaN only counts where it is a candidate.
        let mut s: Vec<f32> = (0..100).map(|i| i as f32).collect();
        s[70] = f32::NAN;
        assert_eq!(
            top_k(&[100], &s, 3, Candidates::All),
            Err(CoreError::NanScore { index: 70 })
        );
        let skip =
            Mask::from_bools(&[100], &(0..100).map(|i| i == 70).collect::<Vec<_>>()).unwrap();
        let m = top_k(&[100], &s, 3, Candidates::Unset(&skip)).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![97, 98, 99]);
        let m = bottom_k(&[100], &s, 2, Candidates::Unset(&skip)).unwrap();
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![0, 1]);
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
