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
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn spmm_rows_generic<const F: bool>(
    row_ptr: &[u32],
    col_idx: &[u32],
    vals: &[f32],
    r0: usize,
    x: &[f32],
    n: usize,
    alpha: f32,
    beta: f32,
    out: &mut [f32],
) {
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
                let mut j0 = p0;
                while j0 < p1 {
                    let w = (p1 - j0).min(TILE);
                    let o = &mut out[lr * n + j0..lr * n + j0 + w];
                    spmm_tile::<F, TILE>(&col_idx[s..e], &vals[s..e], x, n, j0, w, alpha, b, o);
                    j0 += w;
                }
            }
            k0 = k1;
        }
        p0 = p1;
    }
}

dispatch_fma!(
    /// Rows `r0..` of `out = alpha * A·X + beta * out` for CSR `A` and row-major `X` with
    /// `n` columns; `out` holds whole rows.
    pub(crate) fn spmm_rows(
        row_ptr: &[u32],
        col_idx: &[u32],
        vals: &[f32],
        r0: usize,
        x: &[f32],
        n: usize,
        alpha: f32,
        beta: f32,
        out: &mut [f32],
    ) => spmm_rows_generic
);

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
