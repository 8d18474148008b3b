//! The SpMM inner loops (CSR rows times row-major `X`): AVX-512, AVX2+FMA and portable
//! builds of one generic kernel, dispatched at run time (see [`crate::simd`]).

use crate::simd::{has_avx512, has_fma, madd, TILE};

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
