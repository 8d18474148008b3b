//! [`Mask`]: a packed bitmask over a tensor's flat (row-major) index space.

use crate::error::{CoreError, Result};

const WORD_BITS: usize = 64;

/// A binary mask stored as packed `u64` words (bit `i % 64` of word `i / 64` is flat index `i`).
///
/// Invariant: bits past `len` in the last word are always zero, so word-level operations
/// (popcount, equality, and/or) never see stray bits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mask {
    shape: Vec<usize>,
    len: usize,
    words: Vec<u64>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mask {{ shape: {:?}, ones: {}/{} }}",
            self.shape,
            self.count_ones(),
            self.len
        )
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Mask {
    /// An all-zero mask of the given shape.
    pub fn zeros(shape: &[usize]) -> Self {
        let len = numel(shape);
        Mask {
            shape: shape.to_vec(),
            len,
            words: vec![0; len.div_ceil(WORD_BITS)],
        }
    }

    /// An all-one mask of the given shape.
    pub fn ones(shape: &[usize]) -> Self {
        let mut m = Self::zeros(shape);
        m.words.iter_mut().for_each(|w| *w = u64::MAX);
        m.clear_tail();
        m
    }

    /// The mask of the nonzero entries of a dense tensor (`-0.0` counts as zero, NaN as nonzero).
    pub fn from_dense(shape: &[usize], values: &[f32]) -> Result<Self> {
        Self::from_fn_checked(shape, values.len(), |i| values[i] != 0.0)
    }

    /// A mask from its 64-bit words (bit `j` of word `w` is entry `64w + j`), as kernels
    /// produce them: the word count must fit the shape and bits past the end must be clear.
    pub fn from_words(shape: &[usize], words: Vec<u64>) -> Result<Self> {
        let mut m = Self::zeros(shape);
        if words.len() != m.words.len() {
            return Err(CoreError::InvalidArgument(format!(
                "{} mask words for {} entries (expected {})",
                words.len(),
                m.len,
                m.words.len()
            )));
        }
        m.words = words;
        let before = m.words.last().copied();
        m.clear_tail();
        if m.words.last().copied() != before {
            return Err(CoreError::InvalidArgument(
                "mask words set bits past the last entry".into(),
            ));
        }
        Ok(m)
    }

    /// A mask from a boolean slice.
    pub fn from_bools(shape: &[usize], bits: &[bool]) -> Result<Self> {
        Self::from_fn_checked(shape, bits.len(), |i| bits[i])
    }

    /// A mask whose set bits are `indices` (duplicates allowed; out-of-range indices are an error).
    pub fn from_indices(shape: &[usize], indices: &[u32]) -> Result<Self> {
        let mut m = Self::zeros(shape);
        for &i in indices {
            let i = i as usize;
            if i >= m.len {
                return Err(CoreError::InvalidArgument(format!(
                    "index {i} out of range for a mask of {} entries",
                    m.len
                )));
            }
            m.set(i);
        }
        Ok(m)
    }

    fn from_fn_checked(shape: &[usize], given: usize, f: impl Fn(usize) -> bool) -> Result<Self> {
        let mut m = Self::zeros(shape);
        if given != m.len {
            return Err(CoreError::ShapeMismatch {
                context: "mask from dense data".into(),
                expected: vec![m.len],
                found: vec![given],
            });
        }
        for (w, word) in m.words.iter_mut().enumerate() {
            let base = w * WORD_BITS;
            let end = (base + WORD_BITS).min(given);
            let mut bits = 0u64;
            for i in base..end {
                bits |= (f(i) as u64) << (i - base);
            }
            *word = bits;
        }
        Ok(m)
    }

    /// The tensor shape this mask covers.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of entries (set or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a mask over zero entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed words (bits past `len()` are zero).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Tests entry `i`. Panics if `i >= len()`, like slice indexing.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        (self.words[i / WORD_BITS] >> (i % WORD_BITS)) & 1 == 1
    }

    /// Sets entry `i`. Panics if `i >= len()`.
    #[inline]
    pub fn set(&mut self, i: usize) {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        self.words[i / WORD_BITS] |= 1 << (i % WORD_BITS);
    }

    /// Clears entry `i`. Panics if `i >= len()`.
    #[inline]
    pub fn clear(&mut self, i: usize) {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        self.words[i / WORD_BITS] &= !(1 << (i % WORD_BITS));
    }

    /// Number of set entries.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Number of unset entries.
    pub fn count_zeros(&self) -> usize {
        self.len - self.count_ones()
    }

    /// Number of set entries with flat index in `start..end` (clamped to `len()`).
    pub fn count_ones_in(&self, start: usize, end: usize) -> usize {
        let end = end.min(self.len);
        if start >= end {
            return 0;
        }
        let (ws, we) = (start / WORD_BITS, (end - 1) / WORD_BITS);
        let lo_mask = u64::MAX << (start % WORD_BITS);
        let hi_mask = u64::MAX >> (WORD_BITS - 1 - (end - 1) % WORD_BITS);
        if ws == we {
            return (self.words[ws] & lo_mask & hi_mask).count_ones() as usize;
        }
        let mut c = (self.words[ws] & lo_mask).count_ones() as usize;
        c += self.words[ws + 1..we]
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>();
        c + (self.words[we] & hi_mask).count_ones() as usize
    }

    /// Fraction of set entries (1.0 for an empty mask).
    pub fn density(&self) -> f64 {
        if self.len == 0 {
            1.0
        } else {
            self.count_ones() as f64 / self.len as f64
        }
    }

    /// Iterates the flat indices of set entries in increasing order.
    pub fn iter_ones(&self) -> BitIter<'_> {
        BitIter::new(&self.words, false, self.len)
    }

    /// Iterates the flat indices of unset entries in increasing order.
    pub fn iter_zeros(&self) -> BitIter<'_> {
        BitIter::new(&self.words, true, self.len)
    }

    /// Set entries with flat index in `start..end`, in increasing order.
    pub fn iter_ones_in(&self, start: usize, end: usize) -> impl Iterator<Item = usize> + '_ {
        let end = end.min(self.len);
        let first_word = start / WORD_BITS;
        BitIter {
            words: &self.words[first_word.min(self.words.len())..],
            invert: false,
            len: self.len,
            base: first_word * WORD_BITS,
            cur: 0,
            next_word: 0,
        }
        .skip_while(move |&i| i < start)
        .take_while(move |&i| i < end)
    }

    /// The mask as 0.0/1.0 values.
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.len).map(|i| self.get(i) as u8 as f32).collect()
    }

    /// The mask as booleans.
    pub fn to_bools(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// Zeroes `values[i]` wherever the mask is unset (`values ⊙ mask` in place).
    pub fn apply(&self, values: &mut [f32]) -> Result<()> {
        self.check_len("apply mask", values.len())?;
        for (chunk, &w) in values.chunks_mut(WORD_BITS).zip(&self.words) {
            if w == u64::MAX {
                continue;
            }
            for (b, v) in chunk.iter_mut().enumerate() {
                if (w >> b) & 1 == 0 {
                    *v = 0.0;
                }
            }
        }
        Ok(())
    }

    /// The complement (`!self`).
    pub fn not(&self) -> Mask {
        let mut m = self.clone();
        m.words.iter_mut().for_each(|w| *w = !*w);
        m.clear_tail();
        m
    }

    /// Entry-wise AND. Errors if the shapes differ.
    pub fn and(&self, other: &Mask) -> Result<Mask> {
        self.zip_words(other, "mask and", |a, b| a & b)
    }

    /// Entry-wise OR. Errors if the shapes differ.
    pub fn or(&self, other: &Mask) -> Result<Mask> {
        self.zip_words(other, "mask or", |a, b| a | b)
    }

    /// Entries set in `self` and not in `other`. Errors if the shapes differ.
    pub fn and_not(&self, other: &Mask) -> Result<Mask> {
        self.zip_words(other, "mask and-not", |a, b| a & !b)
    }

    /// True when no entry is set in both masks. Errors if the shapes differ.
    pub fn is_disjoint(&self, other: &Mask) -> Result<bool> {
        self.check_shape(other, "mask disjointness")?;
        Ok(self.words.iter().zip(&other.words).all(|(a, b)| a & b == 0))
    }

    /// Errors with a `ShapeMismatch` unless `other` has the same shape.
    pub fn check_shape(&self, other: &Mask, context: &str) -> Result<()> {
        if self.shape == other.shape {
            Ok(())
        } else {
            Err(CoreError::ShapeMismatch {
                context: context.into(),
                expected: self.shape.clone(),
                found: other.shape.clone(),
            })
        }
    }

    /// Errors with a `ShapeMismatch` unless `len` equals `self.len()`.
    pub fn check_len(&self, context: &str, len: usize) -> Result<()> {
        if len == self.len {
            Ok(())
        } else {
            Err(CoreError::ShapeMismatch {
                context: context.into(),
                expected: vec![self.len],
                found: vec![len],
            })
        }
    }

    fn zip_words(&self, other: &Mask, ctx: &str, f: impl Fn(u64, u64) -> u64) -> Result<Mask> {
        self.check_shape(other, ctx)?;
        let mut m = self.clone();
        for (a, b) in m.words.iter_mut().zip(&other.words) {
            *a = f(*a, *b);
        }
        m.clear_tail();
        Ok(m)
    }

    /// The same bits under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Mask> {
        self.check_len("mask reshape", numel(shape))?;
        Ok(Mask {
            shape: shape.to_vec(),
            len: self.len,
            words: self.words.clone(),
        })
    }

    /// Mutable access to the words for crate-internal bulk builders.
    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    fn clear_tail(&mut self) {
        let rem = self.len % WORD_BITS;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }
}

/// Iterator over the set (or unset) bit positions of a packed word slice.
pub struct BitIter<'a> {
    words: &'a [u64],
    invert: bool,
    len: usize,
    base: usize,
    cur: u64,
    next_word: usize,
}

impl<'a> BitIter<'a> {
    fn new(words: &'a [u64], invert: bool, len: usize) -> Self {
        BitIter {
            words,
            invert,
            len,
            base: 0,
            cur: 0,
            next_word: 0,
        }
    }
}

impl Iterator for BitIter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.cur != 0 {
                let bit = self.cur.trailing_zeros() as usize;
                self.cur &= self.cur - 1;
                let i = self.base - WORD_BITS + bit;
                return (i < self.len).then_some(i);
            }
            let w = *self.words.get(self.next_word)?;
            self.next_word += 1;
            self.base += WORD_BITS;
            self.cur = if self.invert { !w } else { w };
        }
    }
}
