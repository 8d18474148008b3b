//! CPU convolution: grouped im2col + GEMM / SpMM, col2im, SDDMM weight gradient.

use rayon::prelude::*;

use super::ConvGeom;
use crate::ops::gemm::cpu::sgemm;
use crate::ops::sparse::{cpu as sp, WeightGrad, WeightRef};

/// Target number of unfolded columns per image group (bounds scratch memory per task).
const GROUP_COLS: usize = 2048;

/// Images per group.
fn group_size(g: &ConvGeom) -> usize {
    GROUP_COLS.div_ceil(g.p().max(1)).clamp(1, g.b.max(1))
}

/// Unfolds images `b0..b0+gb` into `col` (`CKK x gb·P`).
fn im2col(g: &ConvGeom, x: &[f32], b0: usize, gb: usize, col: &mut [f32]) {
    let (p, n) = (g.p(), gb * g.p());
    for (row, out) in col.chunks_mut(n).enumerate() {
        let c = row / (g.kh * g.kw);
        let ki = (row / g.kw) % g.kh;
        let kj = row % g.kw;
        for bi in 0..gb {
            let img = &x[((b0 + bi) * g.c + c) * g.h * g.w..][..g.h * g.w];
            let o = &mut out[bi * p..(bi + 1) * p];
            for oh in 0..g.oh {
                let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                let orow = &mut o[oh * g.ow..(oh + 1) * g.ow];
                if ih < 0 || ih >= g.h as isize {
                    orow.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
                let irow = &img[ih as usize * g.w..(ih as usize + 1) * g.w];
                if g.stride == 1 {
                    // Contiguous run with zero borders.
                    for (ow, v) in orow.iter_mut().enumerate() {
                        let iw = (ow + kj) as isize - g.pad as isize;
                        *v = if iw >= 0 && (iw as usize) < g.w {
                            irow[iw as usize]
                        } else {
                            0.0
                        };
                    }
                } else {
                    for (ow, v) in orow.iter_mut().enumerate() {
                        let iw = (ow * g.stride + kj) as isize - g.pad as isize;
                        *v = if iw >= 0 && (iw as usize) < g.w {
                            irow[iw as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// Folds `dcol` (`CKK x gb·P`) back onto images `0..gb` of `dx` (accumulating).
fn col2im(g: &ConvGeom, dcol: &[f32], gb: usize, dx: &mut [f32]) {
    let (p, n) = (g.p(), gb * g.p());
    let hw = g.h * g.w;
    for bi in 0..gb {
        for c in 0..g.c {
            let img = &mut dx[(bi * g.c + c) * hw..][..hw];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let row = (c * g.kh + ki) * g.kw + kj;
                    let src = &dcol[row * n + bi * p..][..p];
                    for oh in 0..g.oh {
                        let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let irow = &mut img[ih as usize * g.w..][..g.w];
                        for ow in 0..g.ow {
                            let iw = (ow * g.stride + kj) as isize - g.pad as isize;
                            if iw >= 0 && (iw as usize) < g.w {
                                irow[iw as usize] += src[oh * g.ow + ow];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Groups of the batch: `(first image, images)`.
fn groups(g: &ConvGeom) -> Vec<(usize, usize)> {
    let gs = group_size(g);
    (0..g.b)
        .step_by(gs)
        .map(|b0| (b0, gs.min(g.b - b0)))
        .collect()
}

/// Whether groups run in parallel (inner products serial) or in sequence (inner parallel).
fn parallel_groups(n_groups: usize) -> bool {
    n_groups >= rayon::current_num_threads() && n_groups > 1
}

pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &WeightRef) -> Vec<f32> {
    let (p, o, ckk) = (g.p(), g.o, g.ckk());
    let mut y = vec![0f32; g.b * o * p];
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let gs = group_size(g);
    let body = |(gi, yg): (usize, &mut [f32])| {
        let (b0, gb) = grs[gi];
        let n = gb * p;
        let mut col = vec![0f32; ckk * n];
        im2col(g, x, b0, gb, &mut col);
        let mut ymat = vec![0f32; o * n];
        w.mul(&col, n, &mut ymat, !par);
        // [O, gb·P] -> [gb, O, P]
        for bi in 0..gb {
            for oc in 0..o {
                yg[(bi * o + oc) * p..][..p].copy_from_slice(&ymat[oc * n + bi * p..][..p]);
            }
        }
    };
    sp::for_each_chunk(&mut y, gs * o * p, par, body);
    y
}

pub(crate) fn backward(
    g: &ConvGeom,
    dy: &[f32],
    x: &[f32],
    w: &WeightRef,
    need_dx: bool,
    wgrad: WeightGrad,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (p, o, ckk) = (g.p(), g.o, g.ckk());
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let gs = group_size(g);
    let mut dx = need_dx.then(|| vec![0f32; g.b * g.c * g.h * g.w]);
    let img = g.c * g.h * g.w;

    let group_work = |gi: usize, dxg: Option<&mut [f32]>| -> Vec<f32> {
        let (b0, gb) = grs[gi];
        let n = gb * p;
        let mut col = vec![0f32; ckk * n];
        im2col(g, x, b0, gb, &mut col);
        // [gb, O, P] -> [O, gb·P]
        let mut dymat = vec![0f32; o * n];
        for bi in 0..gb {
            for oc in 0..o {
                dymat[oc * n + bi * p..][..p].copy_from_slice(&dy[((b0 + bi) * o + oc) * p..][..p]);
            }
        }
        let mut dw = vec![0f32; o * ckk];
        match wgrad {
            WeightGrad::Dense => sgemm(
                o, ckk, n, 1.0, &dymat, false, &col, true, 0.0, &mut dw, !par,
            ),
            WeightGrad::AtMask(m) => sp::sddmm_mask(m, o, ckk, &dymat, &col, n, &mut dw, !par),
        }
        if let Some(dxg) = dxg {
            // Reuse the unfolding buffer for dcol = Wᵀ·dY.
            w.mul_t(&dymat, n, &mut col, !par);
            col2im(g, &col, gb, dxg);
        }
        dw
    };

    let partials: Vec<Vec<f32>> = match (&mut dx, par) {
        (Some(d), true) => d
            .par_chunks_mut(gs * img)
            .enumerate()
            .map(|(gi, dxg)| group_work(gi, Some(dxg)))
            .collect(),
        (Some(d), false) => d
            .chunks_mut(gs * img)
            .enumerate()
            .map(|(gi, dxg)| group_work(gi, Some(dxg)))
            .collect(),
        (None, true) => (0..grs.len())
            .into_par_iter()
            .map(|gi| group_work(gi, None))
            .collect(),
        (None, false) => (0..grs.len()).map(|gi| group_work(gi, None)).collect(),
    };
    // Fixed-order reduction over groups.
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; o * ckk]);
    for part in parts {
        dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    (dx, dw)
}
