//! Plane dots in AVX2 intrinsics for planes a multiple of 8 wide: one 8-lane register per
//! entry, each lane fused-multiply-adding the same products in the same order as
//! `plane_dots_generic::<true>`, so the bits are the same.

use super::{check_windows, ImageBlock, Lanes};
use std::arch::x86_64::*;

/// Checks the windows and block, then runs the AVX2 kernel. The CPU must have AVX2 and
/// FMA, and `ow` must be a multiple of 8.
pub(super) fn checked(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    assert!(ow.is_multiple_of(8) && crate::simd::has_fma());
    assert_eq!(offs.len(), acc.len());
    assert!(blk.img.len() >= blk.images * blk.img_len);
    if blk.images > 0 {
        assert!(blk.dy.len() >= (blk.images - 1) * blk.dy_stride + oh * ow);
    }
    check_windows(offs, blk.img_len, row_stride, oh, ow);
    // SAFETY: the CPU has AVX2 and FMA, and every window and `dy` plane read lies
    // inside the slices (checked above).
    unsafe { run(offs, blk, row_stride, oh, ow, acc) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    let n = offs.len();
    let mut e = 0;
    while e + 8 <= n {
        group::<8>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 8;
    }
    if n - e >= 4 {
        group::<4>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 4;
    }
    if n - e >= 2 {
        group::<2>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 2;
    }
    if n - e >= 1 {
        group::<1>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
    }
}

#[inline(always)]
unsafe fn group<const G: usize>(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    let mut v = [_mm256_setzero_ps(); G];
    let mut o = [0usize; G];
    for k in 0..G {
        v[k] = _mm256_loadu_ps(acc[k].as_ptr());
        o[k] = offs[k] as usize;
    }
    for b in 0..blk.images {
        let img = blk.img.as_ptr().add(b * blk.img_len);
        let dy = blk.dy.as_ptr().add(b * blk.dy_stride);
        for i in 0..oh {
            let base = img.add(i * row_stride);
            let d_row = dy.add(i * ow);
            for q in (0..ow).step_by(8) {
                let d = _mm256_loadu_ps(d_row.add(q));
                for k in 0..G {
                    let x = _mm256_loadu_ps(base.add(o[k] + q));
                    v[k] = _mm256_fmadd_ps(d, x, v[k]);
                }
            }
        }
    }
    for k in 0..G {
        _mm256_storeu_ps(acc[k].as_mut_ptr(), v[k]);
    }
}
