//! The direct sparse convolution's plane kernels (accumulate and dot products over shifted
//! windows of a padded plane), with AVX2+FMA and portable builds (see [`crate::simd`]).

use crate::simd::{madd, TILE};

/// Checks that every window `offs[e] + i·row_stride + j` (`i < oh`, `j < ow`) lies inside
/// `img`: the plane kernels below read those windows without further bounds checks.
#[inline(always)]
fn check_windows(offs: &[u32], img_len: usize, row_stride: usize, oh: usize, ow: usize) {
    if oh == 0 || ow == 0 {
        return;
    }
    let reach = (oh - 1) * row_stride + ow;
    let max = offs.iter().copied().max().unwrap_or(0) as usize;
    assert!(
        offs.is_empty() || max + reach <= img_len,
        "plane window out of bounds"
    );
}

/// `out[i·ow + j] += Σ_e vals[e] · img[offs[e] + i·row_stride + j]` for an `oh x ow` plane:
/// the direct sparse convolution of one output plane (stride 1, pre-padded input). Each
/// output element continues its running sum from `out` and adds the entries in order, so
/// splitting the entries over several calls gives bitwise the same result as one call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plane_accum_generic<const F: bool>(
    offs: &[u32],
    vals: &[f32],
    img: &[f32],
    row_stride: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
) {
    assert_eq!(offs.len(), vals.len());
    assert!(out.len() >= oh * ow);
    check_windows(offs, img.len(), row_stride, oh, ow);
    // SAFETY (every `get_unchecked` below): `o + i·row_stride + j < img.len()` for `i < oh`,
    // `j < ow`, checked by `check_windows`.
    // R output rows at once: R·W/8 independent accumulator chains share each weight.
    macro_rules! rows_fixed {
        ($w:expr, $r:expr) => {{
            let mut i = 0;
            while i + $r <= oh {
                let mut acc = [[0f32; $w]; $r];
                for rr in 0..$r {
                    acc[rr].copy_from_slice(&out[(i + rr) * ow..(i + rr + 1) * ow]);
                }
                for (&o, &v) in offs.iter().zip(vals) {
                    for rr in 0..$r {
                        let s = o as usize + (i + rr) * row_stride;
                        let src = unsafe { img.get_unchecked(s..s + $w) };
                        for t in 0..$w {
                            acc[rr][t] = madd::<F>(v, src[t], acc[rr][t]);
                        }
                    }
                }
                for rr in 0..$r {
                    out[(i + rr) * ow..(i + rr + 1) * ow].copy_from_slice(&acc[rr]);
                }
                i += $r;
            }
            while i < oh {
                let mut acc = [0f32; $w];
                acc.copy_from_slice(&out[i * ow..(i + 1) * ow]);
                for (&o, &v) in offs.iter().zip(vals) {
                    let s = o as usize + i * row_stride;
                    let src = unsafe { img.get_unchecked(s..s + $w) };
                    for t in 0..$w {
                        acc[t] = madd::<F>(v, src[t], acc[t]);
                    }
                }
                out[i * ow..(i + 1) * ow].copy_from_slice(&acc);
                i += 1;
            }
        }};
    }
    match ow {
        32 => rows_fixed!(32, 2),
        16 => rows_fixed!(16, 4),
        8 => rows_fixed!(8, 8),
        4 => rows_fixed!(4, 8),
        _ => {
            for i in 0..oh {
                let mut j0 = 0;
                while j0 < ow {
                    let w = (ow - j0).min(TILE);
                    let mut acc = [0f32; TILE];
                    let dst = &mut out[i * ow + j0..i * ow + j0 + w];
                    acc[..w].copy_from_slice(dst);
                    let base = i * row_stride + j0;
                    for (&o, &v) in offs.iter().zip(vals) {
                        let s = o as usize + base;
                        let src = unsafe { img.get_unchecked(s..s + w) };
                        for t in 0..w {
                            acc[t] = madd::<F>(v, src[t], acc[t]);
                        }
                    }
                    dst.copy_from_slice(&acc[..w]);
                    j0 += w;
                }
            }
        }
    }
}

dispatch_fma!(
    /// One output plane of a direct sparse convolution, accumulated into `out` (see
    /// `plane_accum_generic`).
    pub(crate) fn plane_accum(
        offs: &[u32],
        vals: &[f32],
        img: &[f32],
        row_stride: usize,
        oh: usize,
        ow: usize,
        out: &mut [f32],
    ) => plane_accum_generic
);

/// Lanes of one plane dot product: lane `t` holds the products of the columns `j` with
/// `j mod 8 = t` in the 8-wide part of each row and of column `full + t` of its tail.
pub(crate) type Lanes = [f32; 8];

/// The fixed-order sum of a [`Lanes`] accumulator.
#[inline]
pub(crate) fn hsum8(v: &Lanes) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// A block of images for [`plane_dots`]: image `b` of the block is `img[b·img_len..]`
/// (`img_len` elements) and its output-gradient plane is `dy[b·dy_stride..][..oh·ow]`.
#[derive(Clone, Copy)]
pub(crate) struct ImageBlock<'a> {
    pub img: &'a [f32],
    pub img_len: usize,
    pub dy: &'a [f32],
    pub dy_stride: usize,
    pub images: usize,
}

/// Plane dot products of `G` entries at once over a block of images: each load of `dy`
/// feeds `G` independent 8-lane accumulator chains, which continue from `acc` and stay in
/// registers across the block's images.
#[inline(always)]
fn plane_dots_group<const F: bool, const G: usize>(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    let mut v: [Lanes; G] = std::array::from_fn(|k| acc[k]);
    for b in 0..blk.images {
        let img = &blk.img[b * blk.img_len..(b + 1) * blk.img_len];
        let dy = &blk.dy[b * blk.dy_stride..][..oh * ow];
        v = plane_dots_image::<F, G>(offs, img, row_stride, dy, oh, ow, v);
    }
    acc[..G].copy_from_slice(&v);
}

/// One image's part of [`plane_dots_group`], continuing from and returning the lanes `v`.
#[inline(always)]
fn plane_dots_image<const F: bool, const G: usize>(
    offs: &[u32],
    img: &[f32],
    row_stride: usize,
    dy: &[f32],
    oh: usize,
    ow: usize,
    mut v: [Lanes; G],
) -> [Lanes; G] {
    let (n8, full) = (ow / 8, ow / 8 * 8);
    let o: [usize; G] = std::array::from_fn(|k| offs[k] as usize);
    for i in 0..oh {
        let d = &dy[i * ow..(i + 1) * ow];
        let base = i * row_stride;
        for q in 0..n8 {
            let dq = &d[q * 8..q * 8 + 8];
            for k in 0..G {
                let s = o[k] + base + q * 8;
                // SAFETY: inside the window checked by the caller (`check_windows`).
                let x = unsafe { img.get_unchecked(s..s + 8) };
                for t in 0..8 {
                    v[k][t] = madd::<F>(dq[t], x[t], v[k][t]);
                }
            }
        }
        for j in full..ow {
            for k in 0..G {
                let x = img[o[k] + base + j];
                v[k][j - full] = madd::<F>(d[j], x, v[k][j - full]);
            }
        }
    }
    v
}

/// `acc[e] += lanes of Σ_b Σ_{i,j} dy_b[i·ow + j] · img_b[offs[e] + i·row_stride + j]`
/// over the images `b` of `blk` in order: the weight gradient of a direct sparse
/// convolution at its active entries, for one output channel, kept in 8 lanes (sum them
/// once at the end with [`hsum8`]). Entries go eight, four, two, one at a time, sharing
/// each load of `dy`. Each entry's lanes add the images, rows and columns in the same order
/// whatever the block size, so splitting the images over several calls gives the same bits.
#[inline(always)]
fn plane_dots_generic<const F: bool>(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    assert_eq!(offs.len(), acc.len());
    assert!(blk.img.len() >= blk.images * blk.img_len);
    if blk.images > 0 {
        assert!(blk.dy.len() >= (blk.images - 1) * blk.dy_stride + oh * ow);
    }
    check_windows(offs, blk.img_len, row_stride, oh, ow);
    let n = offs.len();
    let mut e = 0;
    while e + 8 <= n {
        plane_dots_group::<F, 8>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 8;
    }
    if n - e >= 4 {
        plane_dots_group::<F, 4>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 4;
    }
    if n - e >= 2 {
        plane_dots_group::<F, 2>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
        e += 2;
    }
    if n - e >= 1 {
        plane_dots_group::<F, 1>(&offs[e..], blk, row_stride, oh, ow, &mut acc[e..]);
    }
}

dispatch_fma!(
    /// Weight-gradient dots of a direct sparse convolution (see `plane_dots_generic`).
    fn plane_dots_any(
        offs: &[u32],
        blk: ImageBlock,
        row_stride: usize,
        oh: usize,
        ow: usize,
        acc: &mut [Lanes],
    ) => plane_dots_generic
);

/// Weight-gradient dots of a direct sparse convolution (see `plane_dots_generic`): the
/// AVX2 intrinsics of [`dots8`] for planes a multiple of 8 wide on CPUs with FMA (the
/// compiler spills the generic code's accumulators there), which give the generic build's
/// bits, else the generic build.
pub(crate) fn plane_dots(
    offs: &[u32],
    blk: ImageBlock,
    row_stride: usize,
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    #[cfg(target_arch = "x86_64")]
    if ow.is_multiple_of(8) && crate::simd::has_fma() {
        dots8::checked(offs, blk, row_stride, oh, ow, acc);
        return;
    }
    plane_dots_any(offs, blk, row_stride, oh, ow, acc)
}

#[cfg(target_arch = "x86_64")]
mod dots8;

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::test_util::lcg;

    /// The AVX-512 build of the plane kernels gives the AVX2 build's bits, on every plane
    /// width the kernels special-case and on a ragged one.
    #[test]
    fn avx512_and_avx2_plane_kernels_give_the_same_bits() {
        if !crate::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (accum_wide, accum_avx2) = both_builds!(plane_accum_generic(
            offs: &[u32],
            vals: &[f32],
            img: &[f32],
            row_stride: usize,
            oh: usize,
            ow: usize,
            out: &mut [f32],
        ));
        let (dots_wide, dots_avx2) = both_builds!(plane_dots_generic(
            offs: &[u32],
            blk: ImageBlock,
            row_stride: usize,
            oh: usize,
            ow: usize,
            acc: &mut [Lanes],
        ));
        let mut s = 11u64;
        for w in [4, 8, 13, 16, 32] {
            let stride = w + 2;
            let img: Vec<f32> = (0..stride * (w + 2)).map(|_| lcg(&mut s)).collect();
            // A 3x3 kernel's window offsets, 9 entries, plus a repeated one (15 in all).
            let offs: Vec<u32> = (0..15)
                .map(|e| ((e % 3) + (e / 3 % 3) * stride) as u32)
                .collect();
            let vals: Vec<f32> = offs.iter().map(|_| lcg(&mut s)).collect();
            let dy: Vec<f32> = (0..w * w).map(|_| lcg(&mut s)).collect();
            let start: Vec<f32> = (0..w * w).map(|_| lcg(&mut s)).collect();
            let (mut o1, mut o2) = (start.clone(), start);
            let (mut a1, mut a2) = (vec![[0.5f32; 8]; 15], vec![[0.5f32; 8]; 15]);
            // SAFETY: the CPU has AVX-512 (checked above), hence avx2 and fma too.
            unsafe {
                accum_wide(&offs, &vals, &img, stride, w, w, &mut o1);
                accum_avx2(&offs, &vals, &img, stride, w, w, &mut o2);
                let blk = ImageBlock {
                    img: &img,
                    img_len: img.len(),
                    dy: &dy,
                    dy_stride: 0,
                    images: 1,
                };
                dots_wide(&offs, blk, stride, w, w, &mut a1);
                dots_avx2(&offs, blk, stride, w, w, &mut a2);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "plane_accum, width {w}");
            assert_eq!(
                bits(a1.as_flattened()),
                bits(a2.as_flattened()),
                "plane_dots, width {w}"
            );
        }
    }

    /// The AVX2 intrinsics of `dots8` give the generic fused build's bits over blocks of
    /// images, and one call over a block gives the bits of one call per image.
    #[test]
    fn intrinsic_plane_dots_match_the_generic_build_over_image_blocks() {
        if !crate::simd::has_fma() {
            eprintln!("skipped: this CPU has no AVX2/FMA");
            return;
        }
        let (_, generic_avx2) = both_builds!(plane_dots_generic(
            offs: &[u32],
            blk: ImageBlock,
            row_stride: usize,
            oh: usize,
            ow: usize,
            acc: &mut [Lanes],
        ));
        let mut s = 5u64;
        for w in [8, 16, 32] {
            let (stride, images, planes) = (w + 2, 5, 3);
            let img_len = stride * (w + 2);
            let img: Vec<f32> = (0..images * img_len).map(|_| lcg(&mut s)).collect();
            // dY of `planes` channels per image; the block reads channel 1.
            let dy: Vec<f32> = (0..images * planes * w * w).map(|_| lcg(&mut s)).collect();
            let offs: Vec<u32> = (0..15)
                .map(|e| ((e % 3) + (e / 3 % 3) * stride) as u32)
                .collect();
            let blk = |b0: usize, n: usize| ImageBlock {
                img: &img[b0 * img_len..(b0 + n) * img_len],
                img_len,
                dy: &dy[(b0 * planes + 1) * w * w..],
                dy_stride: planes * w * w,
                images: n,
            };
            let start = vec![[0.25f32; 8]; 15];
            let (mut fast, mut generic, mut split) = (start.clone(), start.clone(), start);
            dots8::checked(&offs, blk(0, images), stride, w, w, &mut fast);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { generic_avx2(&offs, blk(0, images), stride, w, w, &mut generic) };
            for b in 0..images {
                dots8::checked(&offs, blk(b, 1), stride, w, w, &mut split);
            }
            let bits = |v: &[Lanes]| {
                v.as_flattened()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&fast), bits(&generic), "width {w}");
            assert_eq!(bits(&fast), bits(&split), "width {w}, image by image");
            // And against a naive f64 sum of each entry's products.
            for (e, &o) in offs.iter().enumerate() {
                let mut want = 0.25f64 * 8.0;
                for b in 0..images {
                    for i in 0..w {
                        for j in 0..w {
                            let x = img[b * img_len + o as usize + i * stride + j] as f64;
                            want += x * dy[(b * planes + 1) * w * w + i * w + j] as f64;
                        }
                    }
                }
                let got = hsum8(&fast[e]) as f64;
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "entry {e}: {got} vs {want}"
                );
            }
        }
    }
}
