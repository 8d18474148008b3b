//! Sparse convolution of small planes with the batch as the vector dimension. Inputs and
//! gradients are laid out `[channel][row][column][image]` (zero-padded rows and columns),
//! so a weight entry `(o, c, ki, kj)` adds `w · x[c][i + ki][j + kj][..]` to
//! `y[o][i][j][..]`: a contiguous run of one value per image, for every output position. A
//! 4x4 plane has too few positions for the direct plane kernels to amortise their per-entry
//! cost, and the unfolding (CSR over im2col) writes and reads nine copies of the input; here
//! each entry's work is a run of `B` multiply-adds with no unfolded copy. Every output
//! element adds its entries in CSR order (the weight gradient: fixed lanes over positions
//! and images), whatever the blocking and threads.

use rayon::prelude::*;
use sparse_core::Mask;

use super::direct::{csr_items, Segments, DIRECT_MIN_PLANE};
use super::ConvGeom;
use crate::ops::sparse::SparseWeight;
use crate::ops::transpose::transpose_par;
use crate::simd::madd;

/// Bytes of source channels one block keeps in L2 while a tile of destination channels
/// reads it.
const L2_BLOCK_BYTES: usize = 512 * 1024;

/// Destination channels per parallel task.
const TILE: usize = 16;

/// Whether this path applies: stride 1, a square kernel, padding no larger than
/// `kernel − 1`, an output plane smaller than [`DIRECT_MIN_PLANE`] (the direct kernels
/// take larger ones), and offsets that fit in `u32`.
pub(crate) fn applies(g: &ConvGeom) -> bool {
    let padded = (g.h + 2 * g.pad) * (g.w + 2 * g.pad);
    let big = g.b * padded * g.c.max(g.o);
    g.stride == 1
        && g.kh == g.kw
        && g.pad < g.kh
        && g.pad < g.kw
        && g.oh * g.ow < DIRECT_MIN_PLANE
        && g.b > 0
        && big < u32::MAX as usize
}

/// `x` (`B x planes x h x w`, NCHW) as `[plane][h + 2·pad][w + 2·pad][B]`, zero-padded.
fn to_batch_minor(x: &[f32], b: usize, planes: usize, h: usize, w: usize, pad: usize) -> Vec<f32> {
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let t = transpose_par(x, b, planes * h * w);
    let mut out = vec![0f32; planes * hp * wp * b];
    if planes * hp * wp * b == 0 {
        return out;
    }
    out.par_chunks_mut(hp * wp * b)
        .zip(t.par_chunks(h * w * b))
        .for_each(|(o, s)| {
            for i in 0..h {
                let dst = ((i + pad) * wp + pad) * b;
                o[dst..dst + w * b].copy_from_slice(&s[i * w * b..(i + 1) * w * b]);
            }
        });
    out
}

/// Source channels per block for `src` channels of `chan_bytes` each.
fn per_block(src: usize, chan_bytes: usize) -> usize {
    (L2_BLOCK_BYTES / chan_bytes.max(1)).clamp(1, src.max(1))
}

/// `out[t] += Σ_e vals[e] · src[offs[e] + t]` for every image `t` of one output position, the
/// entries in order: the inner kernel.
#[inline(always)]
fn accum_generic<const F: bool>(offs: &[u32], vals: &[f32], src: &[f32], out: &mut [f32]) {
    const L: usize = 64;
    let b = out.len();
    let reach = offs.iter().copied().max().unwrap_or(0) as usize + b;
    assert!(offs.len() == vals.len() && (offs.is_empty() || reach <= src.len()));
    let mut t0 = 0;
    while t0 + L <= b {
        let mut acc = [0f32; L];
        acc.copy_from_slice(&out[t0..t0 + L]);
        for (&o, &v) in offs.iter().zip(vals) {
            let s = o as usize + t0;
            // SAFETY: `s + L <= reach <= src.len()` (asserted above).
            let x = unsafe { src.get_unchecked(s..s + L) };
            for t in 0..L {
                acc[t] = madd::<F>(v, x[t], acc[t]);
            }
        }
        out[t0..t0 + L].copy_from_slice(&acc);
        t0 += L;
    }
    if t0 < b {
        for (&o, &v) in offs.iter().zip(vals) {
            let x = &src[o as usize + t0..o as usize + b];
            for (y, &x) in out[t0..].iter_mut().zip(x) {
                *y = madd::<F>(v, x, *y);
            }
        }
    }
}

dispatch_fma!(
    /// One output position of a batch-minor sparse convolution (see `accum_generic`).
    fn accum(offs: &[u32], vals: &[f32], src: &[f32], out: &mut [f32]) => accum_generic
);

/// The shared loop of the forward and the input gradient: `dst` planes (`oh x ow`
/// positions of `B`) accumulate their segments' entries from `src` (`[plane][hs][ws][B]`),
/// tiles of destination planes in parallel, source blocks outer within a tile. Returns the
/// result in NCHW.
fn accumulate(
    g: &ConvGeom,
    dst: usize,
    segs: &Segments,
    src: &[f32],
    oh: usize,
    ow: usize,
    ws: usize,
) -> Vec<f32> {
    let b = g.b;
    let p = oh * ow;
    let mut out = vec![0f32; dst * p * b];
    if !out.is_empty() {
        out.par_chunks_mut(TILE * p * b)
            .enumerate()
            .for_each(|(t, tile)| {
                for blk in 0..segs.nblk {
                    for (r, plane) in tile.chunks_mut(p * b).enumerate() {
                        let e = segs.range(t * TILE + r, blk);
                        if e.is_empty() {
                            continue;
                        }
                        let (offs, vals) = (&segs.offs[e.clone()], &segs.vals[e]);
                        for i in 0..oh {
                            for j in 0..ow {
                                let at = (i * ws + j) * b;
                                let y = &mut plane[(i * ow + j) * b..(i * ow + j + 1) * b];
                                accum(offs, vals, &src[at..], y);
                            }
                        }
                    }
                }
            });
    }
    transpose_par(&out, dst * p, b)
}

/// The input channel and kernel tap `(c, ki, kj)` of weight column `col`.
fn tap(g: &ConvGeom, col: usize) -> (usize, usize, usize) {
    (col / (g.kh * g.kw), (col / g.kw) % g.kh, col % g.kw)
}

/// Forward: `y[b,o,i,j] = Σ W[o,c,ki,kj] · xp[c][i+ki][j+kj][b]`.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &SparseWeight) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = to_batch_minor(x, g.b, g.c, g.h, g.w, g.pad);
    let cpb = per_block(g.c, 4 * hp * wp * g.b);
    let nblk = g.c.div_ceil(cpb);
    let items = csr_items(w.csr(), |o, col| {
        let (c, ki, kj) = tap(g, col as usize);
        let off = ((c * hp + ki) * wp + kj) * g.b;
        (o * nblk + c / cpb, off as u32)
    });
    let segs = Segments::new(g.o, nblk, &items);
    accumulate(g, g.o, &segs, &xp, g.oh, g.ow, wp)
}

/// Gradient to the input: `dx[b,c,h,w] = Σ W[o,c,ki,kj] · dyp[o][h + kh−1−ki][w + kw−1−kj][b]`
/// with `dy` padded by `k − 1 − pad` on every side.
pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &SparseWeight) -> Vec<f32> {
    let (th, tw) = (g.kh - 1 - g.pad, g.kw - 1 - g.pad);
    let (hq, wq) = (g.oh + 2 * th, g.ow + 2 * tw);
    debug_assert_eq!(th, tw, "square kernels only (see `applies`)");
    let dyp = to_batch_minor(dy, g.b, g.o, g.oh, g.ow, th);
    let opb = per_block(g.o, 4 * hq * wq * g.b);
    let nblk = g.o.div_ceil(opb);
    let items = csr_items(w.csr(), |o, col| {
        let (c, ki, kj) = tap(g, col as usize);
        let off = ((o * hq + (g.kh - 1 - ki)) * wq + (g.kw - 1 - kj)) * g.b;
        (c * nblk + o / opb, off as u32)
    });
    let segs = Segments::new(g.c, nblk, &items);
    accumulate(g, g.c, &segs, &dyp, g.h, g.w, wq)
}

/// Lanes of one weight-gradient dot product: lane `t` adds the images `b ≡ t (mod 16)` of
/// every position, positions in order.
type Lanes = [f32; 16];

/// The fixed-order sum of [`Lanes`].
fn hsum16(v: &Lanes) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|t| v[t] + v[t + 8]);
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// `acc[e] += lanes of Σ_{i,j,b} dy[(i·ow + j)·B + b] · xp[offs[e] + (i·wp + j)·B + b]`,
/// `G` entries at once so that each load of `dy` feeds `G` accumulators.
#[inline(always)]
fn dots_group<const F: bool, const G: usize>(
    offs: &[u32],
    dy: &[f32],
    xp: &[f32],
    (oh, ow, wp, b): (usize, usize, usize, usize),
    acc: &mut [Lanes],
) {
    let mut v: [Lanes; G] = std::array::from_fn(|k| acc[k]);
    let o: [usize; G] = std::array::from_fn(|k| offs[k] as usize);
    let full = b / 16 * 16;
    for i in 0..oh {
        for j in 0..ow {
            let d = &dy[(i * ow + j) * b..(i * ow + j + 1) * b];
            let base = (i * wp + j) * b;
            for q in (0..full).step_by(16) {
                let dq = &d[q..q + 16];
                for k in 0..G {
                    let s = o[k] + base + q;
                    // SAFETY: inside the reach checked by `dots_generic`.
                    let x = unsafe { xp.get_unchecked(s..s + 16) };
                    for t in 0..16 {
                        v[k][t] = madd::<F>(dq[t], x[t], v[k][t]);
                    }
                }
            }
            for k in 0..G {
                for t in 0..b - full {
                    let x = xp[o[k] + base + full + t];
                    v[k][t] = madd::<F>(d[full + t], x, v[k][t]);
                }
            }
        }
    }
    acc[..G].copy_from_slice(&v);
}

/// `acc[e] += lanes of Σ_{i,j,b} dy[(i·ow + j)·B + b] · xp[offs[e] + (i·wp + j)·B + b]`
/// for every entry `e` of one output channel, four entries at a time. Each lane adds the
/// positions in order and, within a position, its images in order, so the bits do not
/// depend on the grouping.
#[inline(always)]
fn dots_generic<const F: bool>(
    offs: &[u32],
    dy: &[f32],
    xp: &[f32],
    dims: (usize, usize, usize, usize),
    acc: &mut [Lanes],
) {
    let (oh, ow, wp, b) = dims;
    assert!(offs.len() == acc.len() && oh > 0 && ow > 0 && dy.len() >= oh * ow * b);
    let reach = offs.iter().copied().max().unwrap_or(0) as usize + ((oh - 1) * wp + ow) * b;
    assert!(offs.is_empty() || reach <= xp.len());
    let n = offs.len();
    let mut e = 0;
    while e + 4 <= n {
        dots_group::<F, 4>(&offs[e..], dy, xp, dims, &mut acc[e..]);
        e += 4;
    }
    while e < n {
        dots_group::<F, 1>(&offs[e..], dy, xp, dims, &mut acc[e..]);
        e += 1;
    }
}

dispatch_fma!(
    /// Weight-gradient dots of one output channel (see `dots_generic`).
    fn dots(offs: &[u32], dy: &[f32], xp: &[f32], dims: (usize, usize, usize, usize), acc: &mut [Lanes]) => dots_generic
);

/// Weight gradient at the mask's active positions (dense layout, exactly 0 elsewhere).
pub(crate) fn backward_weight(g: &ConvGeom, dy: &[f32], x: &[f32], mask: &Mask) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = to_batch_minor(x, g.b, g.c, g.h, g.w, g.pad);
    let p = g.oh * g.ow;
    let dyt = transpose_par(dy, g.b, g.o * p);
    let ckk = g.ckk();
    let flat: Vec<usize> = mask.iter_ones().collect();
    let offs: Vec<u32> = flat
        .iter()
        .map(|&i| {
            let (c, ki, kj) = tap(g, i % ckk);
            (((c * hp + ki) * wp + kj) * g.b) as u32
        })
        .collect();
    // Entry ranges per output channel (mask order is row-major).
    let mut starts = vec![0usize; g.o + 1];
    for &i in &flat {
        starts[i / ckk + 1] += 1;
    }
    for o in 0..g.o {
        starts[o + 1] += starts[o];
    }
    let mut acc = vec![[0f32; 16]; flat.len()];
    let mut parts = Vec::new();
    let mut rest = acc.as_mut_slice();
    for o in 0..g.o {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(starts[o + 1] - starts[o]);
        parts.push((o, head));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(o, a)| {
        let e = starts[o]..starts[o + 1];
        if !e.is_empty() {
            let d = &dyt[o * p * g.b..(o + 1) * p * g.b];
            dots(&offs[e], d, &xp, (g.oh, g.ow, wp, g.b), a);
        }
    });
    let mut dw = vec![0f32; g.o * ckk];
    for (&i, lanes) in flat.iter().zip(&acc) {
        dw[i] = hsum16(lanes);
    }
    dw
}
