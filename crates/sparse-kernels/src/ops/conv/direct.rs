//! Direct sparse convolution for stride-1 convolutions with a CSR weight (SparseProp-style):
//! no im2col. Each output plane is the sum, over the active weights of its output channel,
//! of a weight times a shifted plane of the zero-padded input; the gradient to the input is
//! the same computation on the padded output gradient with the transposed structure, and the
//! weight gradient is one plane dot product per active weight. Work is proportional to the
//! number of active weights; every reduction runs in a fixed order.
//!
//! Cache blocking: destination planes are processed in tiles, and within a tile the entries
//! are taken by blocks of source planes small enough for L1, so each source block is loaded
//! once per tile rather than once per entry (the source image itself only fits in L2).

use rayon::prelude::*;
use sparse_core::{Csr, Mask};

use super::plane_simd;
use super::ConvGeom;
use crate::ops::sparse::SparseWeight;
use crate::uninit::{self, assume_written, unwritten};

/// Output planes smaller than this (8x8) run sparse weights batch-minor instead
/// ([`super::batch_minor`], which replaced CSR over the unfolded input there): the direct
/// kernels pay a fixed cost per weight and plane, which small planes cannot amortise. Measured per layer (forward + both gradients, batch 128, 2 threads,
/// 5% density): 512 channels at 4x4 took 475 ms direct against 174 ms through im2col and
/// CSR (dense: 332 ms), and 2x2 took 211 against 59 ms (dense 106); at 8x8 direct wins
/// (95 against 146 ms).
pub(super) const DIRECT_MIN_PLANE: usize = 64;

/// Whether the direct path applies: stride 1, padding no larger than `kernel − 1`, and an
/// output plane of at least [`DIRECT_MIN_PLANE`] positions.
pub(crate) fn applies(g: &ConvGeom) -> bool {
    g.stride == 1 && g.pad < g.kh && g.pad < g.kw && g.oh * g.ow >= DIRECT_MIN_PLANE
}

/// Zero-pads every `h x w` plane of `x` by `top/left` and `bottom/right`. Each padded plane
/// is zeroed and then filled while it is in L1, not in passes of its own over the buffer,
/// and rows are copied inline ([`uninit::copy`]), not by one library call per short row.
fn pad_planes(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    ph: (usize, usize),
    pw: (usize, usize),
) -> Vec<f32> {
    let (hp, wp) = (h + ph.0 + ph.1, w + pw.0 + pw.1);
    let mut out = unwritten(planes * hp * wp);
    if hp * wp > 0 {
        out.par_chunks_mut(hp * wp).enumerate().for_each(|(p, o)| {
            let o = uninit::fill(o, 0.0);
            let src = &x[p * h * w..(p + 1) * h * w];
            for (i, s) in src.chunks_exact(w.max(1)).enumerate() {
                uninit::copy(&mut o[(i + ph.0) * wp + pw.0..][..w], s);
            }
        });
    }
    // SAFETY: every plane was filled with zeros first.
    unsafe { assume_written(out) }
}

/// Flat offset of weight column `(c, ki, kj)` in a padded image of `hp x wp` planes.
#[inline]
fn offset(col: u32, kh: usize, kw: usize, hp: usize, wp: usize) -> u32 {
    let col = col as usize;
    let (c, ki, kj) = (col / (kh * kw), (col / kw) % kh, col % kw);
    ((c * hp + ki) * wp + kj) as u32
}

/// Bytes of source planes (and, separately, of destination planes) one tile keeps in L1
/// (32 KiB on the reference machine): the block of source planes is read by every
/// destination plane of the tile before the next block is loaded.
const L1_TILE_BYTES: usize = 16 * 1024;

/// Fewest average entries per (destination plane, source block) segment: below it the
/// per-segment work (reloading the destination plane, the weight-gradient lane groups)
/// outweighs the cache reuse, so sparser layers use wider blocks.
const MIN_SEGMENT_ENTRIES: usize = 16;

/// Source planes per block for `rows` destination planes reading `src` source planes of
/// `plane_bytes` each through `nnz` entries.
fn src_per_block(src: usize, plane_bytes: usize, rows: usize, nnz: usize) -> usize {
    let by_cache = (L1_TILE_BYTES / plane_bytes.max(1)).max(1);
    let by_work = (MIN_SEGMENT_ENTRIES * rows * src).div_ceil(nnz.max(1));
    by_cache.max(by_work).clamp(1, src.max(1))
}

/// Destination planes per tile.
fn dst_per_tile(plane_bytes: usize) -> usize {
    (L1_TILE_BYTES / plane_bytes.max(1)).max(1)
}

/// The entries of a direct convolution grouped by destination plane and, within it, by
/// block of source planes: segment `row·nblk + blk` holds the entries of destination plane
/// `row` that read source block `blk`, in their original relative order.
pub(super) struct Segments {
    pub(super) nblk: usize,
    /// Segment starts, plus the total at the end.
    seg: Vec<usize>,
    pub(super) offs: Vec<u32>,
    pub(super) vals: Vec<f32>,
}

impl Segments {
    /// Stable counting sort of `(segment, offset, value)` items into `rows · nblk` segments.
    pub(super) fn new(rows: usize, nblk: usize, items: &[(usize, u32, f32)]) -> Segments {
        let mut seg = vec![0usize; rows * nblk + 1];
        for &(k, _, _) in items {
            seg[k + 1] += 1;
        }
        for k in 0..rows * nblk {
            seg[k + 1] += seg[k];
        }
        let mut next = seg.clone();
        let (mut offs, mut vals) = (vec![0u32; items.len()], vec![0f32; items.len()]);
        for &(k, o, v) in items {
            offs[next[k]] = o;
            vals[next[k]] = v;
            next[k] += 1;
        }
        Segments {
            nblk,
            seg,
            offs,
            vals,
        }
    }

    /// Entry range of destination plane `row`, source block `blk`.
    pub(super) fn range(&self, row: usize, blk: usize) -> std::ops::Range<usize> {
        let k = row * self.nblk + blk;
        self.seg[k]..self.seg[k + 1]
    }

    /// Accumulates destination planes `row0..` (the `plane`-sized chunks of `out`) from
    /// `src`: source blocks outer, so each block stays in L1 while the tile's planes read it.
    #[allow(clippy::too_many_arguments)]
    fn accum_tile(
        &self,
        row0: usize,
        out: &mut [f32],
        plane: usize,
        src: &[f32],
        row_stride: usize,
        oh: usize,
        ow: usize,
    ) {
        for blk in 0..self.nblk {
            for (r, dst) in out.chunks_mut(plane).enumerate() {
                let e = self.range(row0 + r, blk);
                if !e.is_empty() {
                    let (o, v) = (&self.offs[e.clone()], &self.vals[e]);
                    plane_simd::plane_accum(o, v, src, row_stride, oh, ow, dst);
                }
            }
        }
    }
}

/// Runs `tile` for every (image, tile of destination planes) of an output of `b` images of
/// `rows` planes of `plane` elements, in parallel, and returns it. Each tile is zeroed just
/// before `tile` accumulates into it, while it is in cache, not in a pass of its own.
fn for_each_tile(
    b: usize,
    rows: usize,
    plane: usize,
    tile: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let per = dst_per_tile(4 * plane);
    let mut out = unwritten(b * rows * plane);
    if rows * plane > 0 {
        out.par_chunks_mut(rows * plane)
            .enumerate()
            .for_each(|(b, image)| {
                image
                    .par_chunks_mut(per * plane)
                    .enumerate()
                    .for_each(|(t, dst)| tile(b, t * per, uninit::fill(dst, 0.0)));
            });
    }
    // SAFETY: the images' tiles cover the whole output, and each was filled with zeros.
    unsafe { assume_written(out) }
}

/// `(segment, offset, value)` for every entry of `csr` in CSR order, with segment and offset
/// given by `place(row, col)`.
pub(super) fn csr_items(
    csr: &Csr,
    place: impl Fn(usize, u32) -> (usize, u32),
) -> Vec<(usize, u32, f32)> {
    let mut items = Vec::with_capacity(csr.nnz());
    for r in 0..csr.rows() {
        let (cols, vals) = csr.row(r);
        for (&col, &v) in cols.iter().zip(vals) {
            let (k, off) = place(r, col);
            items.push((k, off, v));
        }
    }
    items
}

/// Forward: each output plane sums, over its output channel's active weights, the weight
/// times a shifted plane of the padded input.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &SparseWeight) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = pad_planes(x, g.b * g.c, g.h, g.w, (g.pad, g.pad), (g.pad, g.pad));
    let csr = w.csr();
    let kk = g.kh * g.kw;
    let cpb = src_per_block(g.c, 4 * hp * wp, g.o, csr.nnz());
    let nblk = g.c.div_ceil(cpb);
    let items = csr_items(csr, |o, col| {
        let blk = col as usize / kk / cpb;
        (o * nblk + blk, offset(col, g.kh, g.kw, hp, wp))
    });
    let segs = Segments::new(g.o, nblk, &items);
    let (p, img) = (g.p(), g.c * hp * wp);
    for_each_tile(g.b, g.o, p, |b, o0, dst| {
        let src = &xp[b * img..(b + 1) * img];
        segs.accum_tile(o0, dst, p, src, wp, g.oh, g.ow);
    })
}

/// Gradient to the input: `dx[b,c,h,w] = Σ W[o,c,ki,kj] · dyp[b,o,h + kh−1−ki, w + kw−1−kj]`
/// with `dy` padded by `k − 1 − pad` on every side.
pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &SparseWeight) -> Vec<f32> {
    let (th, tw) = (g.kh - 1 - g.pad, g.kw - 1 - g.pad);
    let (hq, wq) = (g.oh + 2 * th, g.ow + 2 * tw);
    let dyp = pad_planes(dy, g.b * g.o, g.oh, g.ow, (th, th), (tw, tw));
    let csr = w.csr();
    let kk = g.kh * g.kw;
    let opb = src_per_block(g.o, 4 * hq * wq, g.c, csr.nnz());
    let nblk = g.o.div_ceil(opb);
    // Destination plane = input channel c; source plane = output channel o.
    let items = csr_items(csr, |o, col| {
        let col = col as usize;
        let (c, ki, kj) = (col / kk, (col / g.kw) % g.kh, col % g.kw);
        let off = (o * hq + (g.kh - 1 - ki)) * wq + (g.kw - 1 - kj);
        (c * nblk + o / opb, off as u32)
    });
    let segs = Segments::new(g.c, nblk, &items);
    let (hw, img) = (g.h * g.w, g.o * hq * wq);
    for_each_tile(g.b, g.c, hw, |b, c0, dst| {
        let src = &dyp[b * img..(b + 1) * img];
        segs.accum_tile(c0, dst, hw, src, wq, g.h, g.w);
    })
}

/// Images per pass of the weight gradient: each entry's lanes stay in registers across them.
const WGRAD_IMAGES: usize = 16;

/// Weight gradient at the mask's active positions (dense layout, exactly 0 elsewhere).
/// Blocks of [`WGRAD_IMAGES`] images are the outer loop so those padded images stay in
/// cache while every output channel's entries read them (tiles of output channels in
/// parallel, input-channel blocks outer within a tile); each entry keeps 8 lanes across all
/// images, in registers within a block, summed once at the end, so the order of every sum
/// is fixed (and does not depend on the block size).
pub(crate) fn backward_weight(g: &ConvGeom, dy: &[f32], x: &[f32], mask: &Mask) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = pad_planes(x, g.b * g.c, g.h, g.w, (g.pad, g.pad), (g.pad, g.pad));
    let (ckk, kk, p, img) = (g.ckk(), g.kh * g.kw, g.p(), g.c * hp * wp);
    let flat: Vec<usize> = mask.iter_ones().collect();
    let cpb = src_per_block(g.c, 4 * hp * wp, g.o, flat.len());
    let nblk = g.c.div_ceil(cpb);
    // Mask order is row-major, so within an output channel the blocks already ascend: the
    // segments keep the entries in `flat` order.
    let items: Vec<(usize, u32, f32)> = flat
        .iter()
        .map(|&i| {
            let (o, col) = (i / ckk, (i % ckk) as u32);
            (
                o * nblk + col as usize / kk / cpb,
                offset(col, g.kh, g.kw, hp, wp),
                0.0,
            )
        })
        .collect();
    let segs = Segments::new(g.o, nblk, &items);
    let mut acc = vec![[0f32; 8]; flat.len()];
    let per = dst_per_tile(4 * p)
        .min(g.o.div_ceil(4 * rayon::current_num_threads()))
        .max(1);
    for b0 in (0..g.b).step_by(WGRAD_IMAGES) {
        let images = WGRAD_IMAGES.min(g.b - b0);
        let blk_of = |o: usize| plane_simd::ImageBlock {
            img: &xp[b0 * img..(b0 + images) * img],
            img_len: img,
            dy: &dy[(b0 * g.o + o) * p..],
            dy_stride: g.o * p,
            images,
        };
        // Tiles of output channels own disjoint slices of `acc`.
        let mut parts = Vec::new();
        let mut rest = acc.as_mut_slice();
        for o0 in (0..g.o).step_by(per) {
            let o1 = (o0 + per).min(g.o);
            let n = segs.seg[o1 * nblk] - segs.seg[o0 * nblk];
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
            parts.push((o0, o1, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(o0, o1, a)| {
            let base = segs.seg[o0 * nblk];
            for blk in 0..nblk {
                for o in o0..o1 {
                    let e = segs.range(o, blk);
                    if e.is_empty() {
                        continue;
                    }
                    plane_simd::plane_dots(
                        &segs.offs[e.clone()],
                        blk_of(o),
                        wp,
                        g.oh,
                        g.ow,
                        &mut a[e.start - base..e.end - base],
                    );
                }
            }
        });
    }
    let mut dw = vec![0f32; g.o * ckk];
    for (&i, lanes) in flat.iter().zip(&acc) {
        dw[i] = plane_simd::hsum8(lanes);
    }
    dw
}
