//! Row-major matrix transpose on the CPU: 8x8 AVX register tiles where the CPU has AVX,
//! cache-blocked scalar loops otherwise and at the edges. Pure data movement, so every path
//! gives the same bits.

use std::mem::MaybeUninit;

/// Side of the cache blocks (in elements) both paths walk.
const BLOCK: usize = 32;

/// The transpose (`c x r`) of a row-major `r x c` matrix.
pub(crate) fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = crate::uninit::unwritten(r * c);
    transpose_uninit(a, c, r, c, &mut t, r);
    // SAFETY: `c` rows of `r` elements, `r` apart, are every element, and all were written.
    unsafe { crate::uninit::assume_written(t) }
}

/// [`transpose`] on the rayon pool: bands of 64 output rows (64 columns of `a`) in
/// parallel. Same result as [`transpose`].
pub(crate) fn transpose_par(a: &[f32], r: usize, c: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const BAND: usize = 64;
    let mut t = crate::uninit::unwritten(r * c);
    if r > 0 {
        t.par_chunks_mut(BAND * r)
            .enumerate()
            .for_each(|(k, band)| {
                let j0 = k * BAND;
                let cols = band.len() / r;
                transpose_uninit(&a[j0..], c, r, cols, band, r);
            });
    }
    // SAFETY: the bands cover all `c` output rows, and each band wrote its rows whole.
    unsafe { crate::uninit::assume_written(t) }
}

/// Writes the transpose of the row-major `r x c` matrix `a` into `t` (`c x r`).
pub(crate) fn transpose_into(a: &[f32], r: usize, c: usize, t: &mut [f32]) {
    transpose_strided(a, c, r, c, t, r);
}

/// The strided transpose: `t[j·ldt + i] = a[i·lda + j]` for `i < r`, `j < c`. `a` holds `r`
/// rows of `c` elements, `lda` apart; `t` receives `c` rows of `r`, `ldt` apart (elements
/// of `t` between those rows are left alone). This is how a layout change (NCHW to NHWC and
/// back) is written one image row at a time.
pub(crate) fn transpose_strided(
    a: &[f32],
    lda: usize,
    r: usize,
    c: usize,
    t: &mut [f32],
    ldt: usize,
) {
    // SAFETY: same layout, and the transpose only stores initialised values, so `t` stays
    // initialised.
    let t = unsafe { &mut *(t as *mut [f32] as *mut [MaybeUninit<f32>]) };
    transpose_uninit(a, lda, r, c, t, ldt);
}

/// [`transpose_strided`] into a buffer that may not be initialised yet: it stores the
/// addressed elements and reads none of `t`.
fn transpose_uninit(
    a: &[f32],
    lda: usize,
    r: usize,
    c: usize,
    t: &mut [MaybeUninit<f32>],
    ldt: usize,
) {
    if r == 0 || c == 0 {
        return;
    }
    assert!(
        lda >= c && ldt >= r && a.len() >= (r - 1) * lda + c && t.len() >= (c - 1) * ldt + r,
        "transpose: buffers too short for their strides"
    );
    let m = Mat { lda, ldt };
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available (checked above) and the buffers hold every element
            // the strides address (asserted above), which bounds every tile's loads and
            // stores.
            unsafe { avx::transpose(a, r, c, t, m) };
            return;
        }
    }
    scalar(a, t, m, 0..r, 0..c);
}

/// The strides of one transpose.
#[derive(Clone, Copy)]
struct Mat {
    lda: usize,
    ldt: usize,
}

/// Scalar transpose of rows `is` and columns `js`, in cache blocks.
fn scalar(
    a: &[f32],
    t: &mut [MaybeUninit<f32>],
    m: Mat,
    is: std::ops::Range<usize>,
    js: std::ops::Range<usize>,
) {
    for ib in is.clone().step_by(BLOCK) {
        for jb in js.clone().step_by(BLOCK) {
            for i in ib..(ib + BLOCK).min(is.end) {
                let row = &a[i * m.lda..];
                for j in jb..(jb + BLOCK).min(js.end) {
                    t[j * m.ldt + i] = MaybeUninit::new(row[j]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::{scalar, Mat, MaybeUninit, BLOCK};

    /// Tiles of 8x8 through registers, in `BLOCK`-sized cache blocks; the ragged right and
    /// bottom edges go through the scalar loop.
    ///
    /// # Safety
    /// The CPU must have AVX, and `a` and `t` must hold every element that `m`'s strides
    /// address for an `r x c` transpose.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose(
        a: &[f32],
        r: usize,
        c: usize,
        t: &mut [MaybeUninit<f32>],
        m: Mat,
    ) {
        let (r8, c8) = (r / 8 * 8, c / 8 * 8);
        let (src, dst) = (a.as_ptr(), t.as_mut_ptr().cast::<f32>());
        for ib in (0..r8).step_by(BLOCK) {
            for jb in (0..c8).step_by(BLOCK) {
                for i in (ib..(ib + BLOCK).min(r8)).step_by(8) {
                    for j in (jb..(jb + BLOCK).min(c8)).step_by(8) {
                        // SAFETY: i + 8 <= r and j + 8 <= c, so the tile's rows
                        // `src[(i + k)·lda + j ..][..8]` and `dst[(j + k)·ldt + i ..][..8]`
                        // lie inside the buffers the caller guarantees.
                        unsafe {
                            tile(src.add(i * m.lda + j), m.lda, dst.add(j * m.ldt + i), m.ldt)
                        };
                    }
                }
            }
        }
        scalar(a, t, m, 0..r8, c8..c);
        scalar(a, t, m, r8..r, 0..c);
    }

    /// Transposes one 8x8 tile (`src` rows `ls` apart into `dst` rows `ld` apart).
    ///
    /// # Safety
    /// AVX, and eight readable rows of 8 at `src` and eight writable rows of 8 at `dst`.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn tile(src: *const f32, ls: usize, dst: *mut f32, ld: usize) {
        // SAFETY: the caller guarantees the eight rows at `src` and at `dst`.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(src.add(k * ls)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (k, v) in out.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(k * ld), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_on_ragged_shapes() {
        for (r, c) in [
            (1, 1),
            (8, 8),
            (3, 17),
            (64, 784),
            (300, 64),
            (41, 9),
            (9, 41),
            (0, 5),
        ] {
            let a: Vec<f32> = (0..r * c).map(|v| v as f32 * 0.5 - 7.0).collect();
            let t = transpose(&a, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(
                        t[j * r + i].to_bits(),
                        a[i * c + j].to_bits(),
                        "{r}x{c} at {i},{j}"
                    );
                }
            }
            let mut s = crate::uninit::unwritten(r * c);
            scalar(&a, &mut s, Mat { lda: c, ldt: r }, 0..r, 0..c);
            // SAFETY: the scalar path writes every element of an `r x c` transpose.
            let s = unsafe { crate::uninit::assume_written(s) };
            assert_eq!(s, t, "{r}x{c}: scalar and vector paths differ");
        }
        // The parallel bands give the same matrix, with a ragged last band and none.
        for (r, c) in [(3, 17), (128, 200), (5, 64), (7, 129), (0, 5), (4, 0)] {
            let a: Vec<f32> = (0..r * c).map(|v| v as f32 * 0.25 - 3.0).collect();
            assert_eq!(
                transpose_par(&a, r, c),
                transpose(&a, r, c),
                "{r}x{c} in bands"
            );
        }
    }

    #[test]
    fn strided_writes_exactly_the_addressed_elements() {
        // (rows, cols, lda, ldt): tiles, ragged edges, and gaps on both sides.
        for (r, c, lda, ldt) in [
            (16, 32, 40, 19),
            (3, 17, 17, 5),
            (9, 41, 1024, 9),
            (8, 8, 8, 8),
        ] {
            let a: Vec<f32> = (0..(r - 1) * lda + c).map(|v| v as f32 + 0.25).collect();
            let len = (c - 1) * ldt + r;
            let mut t = vec![-1.0f32; len];
            transpose_strided(&a, lda, r, c, &mut t, ldt);
            let mut want = vec![-1.0f32; len];
            for i in 0..r {
                for j in 0..c {
                    want[j * ldt + i] = a[i * lda + j];
                }
            }
            assert_eq!(t, want, "{r}x{c} lda {lda} ldt {ldt}");
        }
    }
}
