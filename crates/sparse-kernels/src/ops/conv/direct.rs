//! Direct sparse convolution for stride-1 convolutions with a CSR weight (SparseProp-style):
//! no im2col. Each output plane is the sum, over the active weights of its output channel,
//! of a weight times a shifted plane of the zero-padded input; the gradient to the input is
//! the same computation on the padded output gradient with the transposed structure, and the
//! weight gradient is one plane dot product per active weight. Work is proportional to the
//! number of active weights; every reduction runs in a fixed order.

use rayon::prelude::*;
use sparse_core::Mask;

use super::ConvGeom;
use crate::ops::sparse::SparseWeight;
use crate::simd;

/// Whether the direct path applies: stride 1 and padding no larger than `kernel − 1`.
pub(crate) fn applies(g: &ConvGeom) -> bool {
    g.stride == 1 && g.pad < g.kh && g.pad < g.kw
}

/// Zero-pads every `h x w` plane of `x` by `top/left` and `bottom/right`.
fn pad_planes(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    ph: (usize, usize),
    pw: (usize, usize),
) -> Vec<f32> {
    let (hp, wp) = (h + ph.0 + ph.1, w + pw.0 + pw.1);
    let mut out = vec![0f32; planes * hp * wp];
    out.par_chunks_mut(hp * wp).enumerate().for_each(|(p, o)| {
        let src = &x[p * h * w..(p + 1) * h * w];
        for i in 0..h {
            o[(i + ph.0) * wp + pw.0..][..w].copy_from_slice(&src[i * w..(i + 1) * w]);
        }
    });
    out
}

/// Flat offset of weight column `(c, ki, kj)` in a padded image of `hp x wp` planes.
#[inline]
fn offset(col: u32, kh: usize, kw: usize, hp: usize, wp: usize) -> u32 {
    let col = col as usize;
    let (c, ki, kj) = (col / (kh * kw), (col / kw) % kh, col % kw);
    ((c * hp + ki) * wp + kj) as u32
}

pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &SparseWeight) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = pad_planes(x, g.b * g.c, g.h, g.w, (g.pad, g.pad), (g.pad, g.pad));
    let csr = w.csr();
    let offs: Vec<u32> = csr
        .col_idx()
        .iter()
        .map(|&c| offset(c, g.kh, g.kw, hp, wp))
        .collect();
    let p = g.p();
    let mut y = vec![0f32; g.b * g.o * p];
    let img = g.c * hp * wp;
    y.par_chunks_mut(p).enumerate().for_each(|(plane, out)| {
        let (b, o) = (plane / g.o, plane % g.o);
        let (s, e) = (csr.row_ptr()[o] as usize, csr.row_ptr()[o + 1] as usize);
        simd::plane_accum(
            &offs[s..e],
            &csr.values()[s..e],
            &xp[b * img..(b + 1) * img],
            wp,
            g.oh,
            g.ow,
            out,
        );
    });
    y
}

pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &SparseWeight) -> Vec<f32> {
    // dx[b,c,h,w] = Σ W[o,c,ki,kj] · dyp[b,o,h + kh−1−ki, w + kw−1−kj], dy padded by
    // (k − 1 − pad) on every side.
    let (th, tw) = (g.kh - 1 - g.pad, g.kw - 1 - g.pad);
    let (hq, wq) = (g.oh + 2 * th, g.ow + 2 * tw);
    let dyp = pad_planes(dy, g.b * g.o, g.oh, g.ow, (th, th), (tw, tw));
    let t = w.csr_t();
    let kk = g.kh * g.kw;
    // Entries of channel c are the transposed rows c·kk .. (c+1)·kk (row = (c, ki, kj)).
    let offs: Vec<u32> = (0..t.rows())
        .flat_map(|r| {
            let (ki, kj) = ((r / g.kw) % g.kh, r % g.kw);
            t.row(r)
                .0
                .iter()
                .map(move |&o| ((o as usize * hq + (g.kh - 1 - ki)) * wq + (g.kw - 1 - kj)) as u32)
        })
        .collect();
    let hw = g.h * g.w;
    let img = g.o * hq * wq;
    let mut dx = vec![0f32; g.b * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
        let (b, c) = (plane / g.c, plane % g.c);
        let (s, e) = (
            t.row_ptr()[c * kk] as usize,
            t.row_ptr()[(c + 1) * kk] as usize,
        );
        simd::plane_accum(
            &offs[s..e],
            &t.values()[s..e],
            &dyp[b * img..(b + 1) * img],
            wq,
            g.h,
            g.w,
            out,
        );
    });
    dx
}

/// Weight gradient at the mask's active positions (dense layout, exactly 0 elsewhere).
/// Images are the outer loop so one padded image stays in cache while every output
/// channel's entries read it; each output channel's sum runs over images in order.
pub(crate) fn backward_weight(g: &ConvGeom, dy: &[f32], x: &[f32], mask: &Mask) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let xp = pad_planes(x, g.b * g.c, g.h, g.w, (g.pad, g.pad), (g.pad, g.pad));
    let (ckk, p, img) = (g.ckk(), g.p(), g.c * hp * wp);
    // CSR-like structure of the mask: entry order = flat order.
    let mut row_ptr = vec![0usize; g.o + 1];
    for o in 0..g.o {
        row_ptr[o + 1] = row_ptr[o] + mask.count_ones_in(o * ckk, (o + 1) * ckk);
    }
    let flat: Vec<usize> = mask.iter_ones().collect();
    let offs: Vec<u32> = flat
        .iter()
        .map(|&i| offset((i % ckk) as u32, g.kh, g.kw, hp, wp))
        .collect();
    let mut acc = vec![0f32; flat.len()];
    // Output-channel blocks own disjoint slices of `acc`.
    let block = g.o.div_ceil(4 * rayon::current_num_threads()).max(1);
    for b in 0..g.b {
        let image = &xp[b * img..(b + 1) * img];
        let mut parts = Vec::new();
        let mut rest = acc.as_mut_slice();
        for o0 in (0..g.o).step_by(block) {
            let o1 = (o0 + block).min(g.o);
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(row_ptr[o1] - row_ptr[o0]);
            parts.push((o0, o1, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(o0, o1, a)| {
            let base = row_ptr[o0];
            for o in o0..o1 {
                let (s, e) = (row_ptr[o], row_ptr[o + 1]);
                let dplane = &dy[(b * g.o + o) * p..][..p];
                simd::plane_dots(
                    &offs[s..e],
                    image,
                    wp,
                    dplane,
                    g.oh,
                    g.ow,
                    &mut a[s - base..e - base],
                );
            }
        });
    }
    let mut dw = vec![0f32; g.o * ckk];
    for (&i, &v) in flat.iter().zip(&acc) {
        dw[i] = v;
    }
    dw
}
