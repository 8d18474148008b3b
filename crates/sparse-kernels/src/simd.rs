//! Hot inner loops with runtime dispatch: an AVX2+FMA build of each kernel when the CPU has
//! it, a portable build otherwise. Both are the same generic code; only `madd` differs
//! (fused on the fast path), so results are reproducible on a given machine.

/// True when the running CPU has AVX2 and FMA (checked once).
#[inline]
pub(crate) fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a * b + c`, fused when `F`.
#[inline(always)]
pub(crate) fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Defines `$name(args)` that runs `$generic::<true>` under `avx2,fma` when available.
macro_rules! dispatch_fma {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    $generic::<true>($($arg),*)
                }
                if $crate::simd::has_fma() {
                    // SAFETY: the CPU supports avx2 and fma (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}

#[inline(always)]
fn dot_generic<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] = madd::<F>(x[i], y[i], acc[i]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail = madd::<F>(*x, *y, tail);
    }
    // Fixed pairwise reduction: deterministic.
    let mut w = 16;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0] + tail
}

dispatch_fma!(
    /// Dot product with a fixed summation order.
    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 => dot_generic
);

/// Column tile of the SpMM kernel: 64 f32 accumulators = 8 AVX registers.
const TILE: usize = 64;

/// `out[lr, j0..j0+w] = alpha · Σ_e v_e · X[c_e, j0..j0+w] + beta · out[..]` for one row.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn spmm_tile<const F: bool, const W: usize>(
    cols: &[u32],
    vs: &[f32],
    x: &[f32],
    n: usize,
    j0: usize,
    w: usize,
    alpha: f32,
    beta: f32,
    o: &mut [f32],
) {
    let mut acc = [0f32; W];
    if w == W {
        // Compile-time width: the accumulators live in registers.
        for (&c, &v) in cols.iter().zip(vs) {
            let xr = &x[c as usize * n + j0..][..W];
            for t in 0..W {
                acc[t] = madd::<F>(v, xr[t], acc[t]);
            }
        }
    } else {
        for (&c, &v) in cols.iter().zip(vs) {
            let xr = &x[c as usize * n + j0..][..w];
            for t in 0..w {
                acc[t] = madd::<F>(v, xr[t], acc[t]);
            }
        }
    }
    if beta == 0.0 {
        for t in 0..w {
            o[t] = alpha * acc[t];
        }
    } else {
        for t in 0..w {
            o[t] = alpha * acc[t] + beta * o[t];
        }
    }
}

/// Bytes of `X` one pass may stream per column panel before it is split along `K`: a
/// quarter of this machine's L2, so the panel's rows stay cached while every row of the
/// block reads them.
const X_BLOCK_BYTES: usize = 256 * 1024;

/// Fewest average entries per row in one `K` block: below it the per-block bookkeeping
/// (cursor search, output tile rewrite) costs more than the cache reuse gains, so very
/// sparse matrices use fewer, longer blocks (measured on 4096x4096 · 4096x256: blocking
/// speeds 90% sparsity up 1.25x and would slow 99% down 1.5x).
const MIN_BLOCK_ENTRIES: usize = 24;

/// Rows `r0..` of `out = alpha · A·X + beta · out` for CSR `A` and row-major `X` with `n`
/// columns; `out` holds whole rows. Loop order: column panels of `X`, then blocks of `X`
/// rows (`K`) sized so a panel block stays in L2, then the rows of `A`, whose entries in the
/// `K` block are found by a per-row cursor (columns are sorted). Each output tile is
/// written once per `K` block; the summation order is fixed, so results are deterministic.
/// `Z` (set only by the AVX-512 build) takes 16-lane-multiple tiles through
/// [`zmm::row_tiles`], which computes the same per-element FMA chain, so both builds agree
/// bitwise.
#[inline(always)]
fn spmm_rows_generic<const F: bool, const Z: bool>(a: &SpmmRows, out: &mut [f32]) {
    let SpmmRows {
        row_ptr,
        col_idx,
        vals,
        r0,
        x,
        n,
        alpha,
        beta,
    } = *a;
    let rows = out.len() / n;
    let k = x.len() / n;
    // Short X rows are read whole (contiguous, prefetch friendly); long ones a tile at a time.
    let panel = if n <= 4 * TILE { n } else { TILE };
    let nnz = (row_ptr[r0 + rows] - row_ptr[r0]) as usize;
    let kb = (X_BLOCK_BYTES / (4 * panel))
        .max((k * rows * MIN_BLOCK_ENTRIES).div_ceil(nnz.max(1)))
        .max(1);
    let mut cursor = vec![0usize; rows];
    let mut p0 = 0;
    while p0 < n {
        let p1 = (p0 + panel).min(n);
        for (lr, c) in cursor.iter_mut().enumerate() {
            *c = row_ptr[r0 + lr] as usize;
        }
        let mut k0 = 0;
        while k0 < k.max(1) {
            let k1 = (k0 + kb).min(k);
            // The first K block applies beta; later ones accumulate.
            let b = if k0 == 0 { beta } else { 1.0 };
            for (lr, c) in cursor.iter_mut().enumerate() {
                let (s, end) = (*c, row_ptr[r0 + lr + 1] as usize);
                let e = s + col_idx[s..end].partition_point(|&ci| (ci as usize) < k1);
                *c = e;
                if e == s && k0 > 0 {
                    continue;
                }
                let (cols, vs) = (&col_idx[s..e], &vals[s..e]);
                let orow = &mut out[lr * n..(lr + 1) * n];
                let mut j0 = p0;
                #[cfg(target_arch = "x86_64")]
                if Z {
                    // SAFETY: `Z` is only instantiated inside the avx512f build (`spmm_rows`).
                    j0 = unsafe { zmm::row_tiles(cols, vs, x, n, j0, p1, alpha, b, orow) };
                }
                while j0 < p1 {
                    let w = (p1 - j0).min(TILE);
                    let o = &mut orow[j0..j0 + w];
                    spmm_tile::<F, TILE>(cols, vs, x, n, j0, w, alpha, b, o);
                    j0 += w;
                }
            }
            k0 = k1;
        }
        p0 = p1;
    }
}

/// True when the running CPU has AVX-512F besides AVX2 and FMA (checked once).
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| has_fma() && is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows `r0..` of a CSR `A` times a row-major `X` with `n` columns: the operands of
/// [`spmm_rows`].
#[derive(Clone, Copy)]
pub(crate) struct SpmmRows<'a> {
    pub row_ptr: &'a [u32],
    pub col_idx: &'a [u32],
    pub vals: &'a [f32],
    /// First row of `A` that `out` holds.
    pub r0: usize,
    pub x: &'a [f32],
    pub n: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// `out = alpha · A·X + beta · out` for the rows of `a` that `out` holds (whole rows).
/// AVX-512, AVX2+FMA and portable builds; the first two give bitwise-identical results.
pub(crate) fn spmm_rows(a: &SpmmRows, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports avx512f, avx2 and fma (checked at run time).
            return unsafe { spmm_rows_avx512(a, out) };
        }
        if has_fma() {
            // SAFETY: the CPU supports avx2 and fma (checked at run time).
            return unsafe { spmm_rows_avx2(a, out) };
        }
    }
    spmm_rows_generic::<false, false>(a, out)
}

/// The AVX-512 build of [`spmm_rows`].
///
/// # Safety
/// The CPU must support avx512f, avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn spmm_rows_avx512(a: &SpmmRows, out: &mut [f32]) {
    spmm_rows_generic::<true, true>(a, out)
}

/// The AVX2+FMA build of [`spmm_rows`].
///
/// # Safety
/// The CPU must support avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn spmm_rows_avx2(a: &SpmmRows, out: &mut [f32]) {
    spmm_rows_generic::<true, false>(a, out)
}

/// AVX-512 SpMM tiles: 16·R output columns in R zmm accumulators, so one pass over a row's
/// entries covers up to 256 columns of `X` (a whole 1 KiB row for `n = 256`).
#[cfg(target_arch = "x86_64")]
mod zmm {
    use std::arch::x86_64::*;

    /// Consumes the 16-column multiples of `orow[j0..p1]`; returns the first column left.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn row_tiles(
        cols: &[u32],
        vs: &[f32],
        x: &[f32],
        n: usize,
        mut j0: usize,
        p1: usize,
        alpha: f32,
        beta: f32,
        orow: &mut [f32],
    ) -> usize {
        while p1 - j0 >= 256 {
            tile::<16>(cols, vs, x, n, j0, alpha, beta, &mut orow[j0..]);
            j0 += 256;
        }
        if p1 - j0 >= 128 {
            tile::<8>(cols, vs, x, n, j0, alpha, beta, &mut orow[j0..]);
            j0 += 128;
        }
        if p1 - j0 >= 64 {
            tile::<4>(cols, vs, x, n, j0, alpha, beta, &mut orow[j0..]);
            j0 += 64;
        }
        if p1 - j0 >= 32 {
            tile::<2>(cols, vs, x, n, j0, alpha, beta, &mut orow[j0..]);
            j0 += 32;
        }
        if p1 - j0 >= 16 {
            tile::<1>(cols, vs, x, n, j0, alpha, beta, &mut orow[j0..]);
            j0 += 16;
        }
        j0
    }

    /// `o[..16R] = alpha · Σ_e v_e · X[c_e, j0..j0+16R] + beta · o[..16R]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    fn tile<const R: usize>(
        cols: &[u32],
        vs: &[f32],
        x: &[f32],
        n: usize,
        j0: usize,
        alpha: f32,
        beta: f32,
        o: &mut [f32],
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        for (&c, &v) in cols.iter().zip(vs) {
            let xr = &x[c as usize * n + j0..][..16 * R];
            let vb = _mm512_set1_ps(v);
            for (t, a) in acc.iter_mut().enumerate() {
                // SAFETY: `xr` holds 16·R floats.
                let xv = unsafe { _mm512_loadu_ps(xr.as_ptr().add(16 * t)) };
                *a = _mm512_fmadd_ps(vb, xv, *a);
            }
        }
        let o = &mut o[..16 * R];
        let (va, vbeta) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (t, a) in acc.iter().enumerate() {
            // SAFETY: `o` holds 16·R floats.
            let p = unsafe { o.as_mut_ptr().add(16 * t) };
            let mut r = _mm512_mul_ps(va, *a);
            if beta != 0.0 {
                // Same rounding as the portable tile: alpha·acc + beta·o, unfused.
                r = _mm512_add_ps(r, _mm512_mul_ps(vbeta, unsafe { _mm512_loadu_ps(p) }));
            }
            unsafe { _mm512_storeu_ps(p, r) };
        }
    }
}

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

/// Plane dot products of `G` entries at once: each load of `dy` feeds `G` independent
/// 8-lane accumulator chains, which continue from `acc`.
#[inline(always)]
fn plane_dots_group<const F: bool, const G: usize>(
    offs: &[u32],
    img: &[f32],
    row_stride: usize,
    dy: &[f32],
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    let (n8, full) = (ow / 8, ow / 8 * 8);
    let o: [usize; G] = std::array::from_fn(|k| offs[k] as usize);
    let mut v: [Lanes; G] = std::array::from_fn(|k| acc[k]);
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
    acc[..G].copy_from_slice(&v);
}

/// `acc[e] += lanes of Σ_{i,j} dy[i·ow + j] · img[offs[e] + i·row_stride + j]`: the weight
/// gradient of a direct sparse convolution at its active entries, for one (image, output
/// channel), kept in 8 lanes (sum them once at the end with [`hsum8`]). Entries go eight,
/// four, two, one at a time, sharing each load of `dy`.
#[inline(always)]
fn plane_dots_generic<const F: bool>(
    offs: &[u32],
    img: &[f32],
    row_stride: usize,
    dy: &[f32],
    oh: usize,
    ow: usize,
    acc: &mut [Lanes],
) {
    assert_eq!(offs.len(), acc.len());
    assert!(dy.len() >= oh * ow);
    check_windows(offs, img.len(), row_stride, oh, ow);
    let n = offs.len();
    let mut e = 0;
    while e + 8 <= n {
        plane_dots_group::<F, 8>(&offs[e..], img, row_stride, dy, oh, ow, &mut acc[e..]);
        e += 8;
    }
    if n - e >= 4 {
        plane_dots_group::<F, 4>(&offs[e..], img, row_stride, dy, oh, ow, &mut acc[e..]);
        e += 4;
    }
    if n - e >= 2 {
        plane_dots_group::<F, 2>(&offs[e..], img, row_stride, dy, oh, ow, &mut acc[e..]);
        e += 2;
    }
    if n - e >= 1 {
        plane_dots_group::<F, 1>(&offs[e..], img, row_stride, dy, oh, ow, &mut acc[e..]);
    }
}

dispatch_fma!(
    /// Weight-gradient dots of a direct sparse convolution (see `plane_dots_generic`).
    pub(crate) fn plane_dots(
        offs: &[u32],
        img: &[f32],
        row_stride: usize,
        dy: &[f32],
        oh: usize,
        ow: usize,
        acc: &mut [Lanes],
    ) => plane_dots_generic
);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::{lcg, random_csr};

    /// The AVX-512 SpMM (zmm tiles of 256/128/64/32/16 columns plus a narrow tail) equals the
    /// AVX2 build bit for bit, and both match an f64 reference, for widths that exercise
    /// every tile size, with alpha/beta and several `K` blocks.
    #[test]
    fn spmm_builds_agree_bitwise_and_match_f64() {
        let (rows, k) = (9, 3000);
        for (n, density) in [
            (1, 0.5),
            (17, 0.3),
            (48, 0.2),
            (256, 0.05),
            (300, 0.1),
            (511, 0.02),
        ] {
            let (ptr, cols, vals) = random_csr(rows, k, density, n as u64);
            let mut st = 7 + n as u64;
            let x: Vec<f32> = (0..k * n).map(|_| lcg(&mut st)).collect();
            let init: Vec<f32> = (0..rows * n).map(|_| lcg(&mut st)).collect();
            let (alpha, beta) = (1.5f32, 0.5f32);
            let a = SpmmRows {
                row_ptr: &ptr,
                col_idx: &cols,
                vals: &vals,
                r0: 0,
                x: &x,
                n,
                alpha,
                beta,
            };
            let mut got = init.clone();
            spmm_rows(&a, &mut got);
            for r in 0..rows {
                for j in 0..n {
                    let mut s = 0f64;
                    for e in ptr[r] as usize..ptr[r + 1] as usize {
                        s += vals[e] as f64 * x[cols[e] as usize * n + j] as f64;
                    }
                    let want = alpha as f64 * s + beta as f64 * init[r * n + j] as f64;
                    let g = got[r * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "n={n} ({r},{j}): {g} vs {want}"
                    );
                }
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                let (mut wide, mut narrow) = (init.clone(), init.clone());
                // SAFETY: features checked just above (avx512 implies avx2+fma here).
                unsafe {
                    spmm_rows_avx512(&a, &mut wide);
                    spmm_rows_avx2(&a, &mut narrow);
                }
                assert!(
                    wide.iter()
                        .zip(&narrow)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n={n}: AVX-512 and AVX2 SpMM differ"
                );
            } else {
                eprintln!("no AVX-512 on this CPU: bitwise comparison skipped");
            }
        }
    }
}
