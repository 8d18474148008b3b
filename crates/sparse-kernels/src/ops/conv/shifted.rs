//! Dense "same" convolutions with stride 1 (3x3, pad 1 and the like) without im2col.
//!
//! A group of images is copied once into a zero-padded NHWC buffer (`Hp x Wp x C` per image,
//! `Hp = H + 2·pad`, `Wp = W + 2·pad`). On that buffer, kernel row `ki` of the convolution is
//! one GEMM over a strided view: with output position `p = oh·Wp + ow` (the padded width, so
//! rows of the output grid follow rows of the buffer), the `kw·C` inputs that kernel row `ki`
//! reads for `p` are the contiguous run starting at `(p + ki·Wp)·C`. So
//!
//! `Y[o, p] = Σ_ki W_ki[o, :] · Xpad[(p + ki·Wp)·C ..][..kw·C]`,
//!
//! where `W_ki` is the weight reordered to `[ki][o][kj·C + c]`. The view has row stride 1 and
//! column stride `C` (its columns overlap), which the GEMM packs directly: no `C·kh·kw x P`
//! unfolding is written or read. Grid positions with `ow >= W`, and the padding rows between
//! images, are computed and dropped (6% extra work at 32x32, 12% at 16x16).
//!
//! The weight gradient is the same view transposed, `dW_ki = dYpad · viewᵀ`, with `dY` laid
//! out on the padded grid and zero at the dropped positions. The input gradient is the
//! forward of `dY` with the flipped, transposed kernel (a same convolution again).
//! Per-group weight gradients are summed in group order, so results do not depend on threads.

use super::cpu::{group_size, groups, parallel_groups, permuted_weight, with_scratch};
use super::ConvGeom;
use crate::ops::gemm::cpu::{sgemm_view, View};
use crate::ops::sparse::cpu::for_each_chunk;
use crate::ops::sparse::weight::CpuWeight;
use crate::ops::transpose::transpose_strided;

/// Output planes below this many positions keep im2col. At 8x8 the dropped grid positions
/// and the padding rows between images (56% extra work) cancel what the unfolding costs:
/// ResNet-20's 8x8 stage measured the same either way (`sparse-train train --profile`).
pub(super) const SHIFTED_MIN_PLANE: usize = 256;

/// Whether a convolution runs here: a dense or masked weight, stride 1, a square odd kernel
/// larger than 1x1 with "same" padding, and an output plane of at least
/// [`SHIFTED_MIN_PLANE`] positions.
pub(super) fn applies(g: &ConvGeom, w: &CpuWeight) -> bool {
    fits(g) && !matches!(w, CpuWeight::Sparse(_))
}

/// The geometry half of [`applies`] (the weight gradient needs no weight).
pub(super) fn fits(g: &ConvGeom) -> bool {
    g.stride == 1
        && g.kh == g.kw
        && g.kh > 1
        && g.kh == 2 * g.pad + 1
        && g.h * g.w >= SHIFTED_MIN_PLANE
}

/// The padded grid of one geometry.
#[derive(Clone, Copy)]
struct Grid {
    /// Padded width (the output grid's row length).
    wp: usize,
    /// Padded plane (`Hp·Wp`, the distance between images on the grid).
    plane: usize,
}

impl Grid {
    fn new(g: &ConvGeom) -> Grid {
        let wp = g.w + 2 * g.pad;
        Grid {
            wp,
            plane: (g.h + 2 * g.pad) * wp,
        }
    }

    /// Grid columns of a group of `gb` images: up to the last image's last output position.
    fn cols(&self, g: &ConvGeom, gb: usize) -> usize {
        (gb - 1) * self.plane + (g.h - 1) * self.wp + g.w
    }

    /// Grid column of output position `(oh, 0)` of image `bi` of the group.
    fn at(&self, bi: usize, oh: usize) -> usize {
        bi * self.plane + oh * self.wp
    }
}

/// Copies images `b0..b0+gb` of `x` (NCHW) into `out` (`gb x Hp x Wp x C`, zero borders);
/// every element is written.
fn pad_nhwc(g: &ConvGeom, x: &[f32], b0: usize, gb: usize, out: &mut [f32]) {
    let (c, pad, gr) = (g.c, g.pad, Grid::new(g));
    let row = gr.wp * c;
    for (bi, img) in out.chunks_mut(gr.plane * c).take(gb).enumerate() {
        let src = &x[(b0 + bi) * c * g.h * g.w..][..c * g.h * g.w];
        for (r, orow) in img.chunks_mut(row).enumerate() {
            if r < pad || r >= pad + g.h {
                orow.fill(0.0);
                continue;
            }
            orow[..pad * c].fill(0.0);
            orow[(pad + g.w) * c..].fill(0.0);
            // Input row `ih` of every channel (`C x W`, `H·W` apart) as `W x C`.
            let ih = r - pad;
            let inner = &mut orow[pad * c..(pad + g.w) * c];
            transpose_strided(&src[ih * g.w..], g.h * g.w, c, g.w, inner, c);
        }
    }
}

/// The effective weight (`W ⊙ M` for a masked one) reordered to `[ki][o][kj·C + c]`.
fn reorder(g: &ConvGeom, w: &CpuWeight) -> Vec<f32> {
    let (o, c, k) = (g.o, g.c, g.kh);
    permuted_weight(g, w, |oc, ch, ki, kj| (ki * o + oc) * k * c + kj * c + ch)
}

/// `Y = conv(x, W)` for a geometry where [`applies`] holds.
pub(super) fn forward(g: &ConvGeom, x: &[f32], w: &CpuWeight) -> Vec<f32> {
    forward_reordered(g, x, &reorder(g, w))
}

fn forward_reordered(g: &ConvGeom, x: &[f32], wr: &[f32]) -> Vec<f32> {
    let (o, c, k, gr) = (g.o, g.c, g.kh, Grid::new(g));
    let (kc, p) = (k * c, g.p());
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let mut y = vec![0f32; g.b * o * p];
    for_each_chunk(&mut y, group_size(g) * o * p, par, |(gi, yg)| {
        let (b0, gb) = grs[gi];
        let n = gr.cols(g, gb);
        with_scratch(gb * gr.plane * c + o * n, |buf| {
            let (xp, ymat) = buf.split_at_mut(gb * gr.plane * c);
            pad_nhwc(g, x, b0, gb, xp);
            // Yᵀ (n x O) = Σ_ki view_ki (n x kC) · W_kiᵀ (kC x O).
            for ki in 0..k {
                let a = View {
                    data: &xp[ki * gr.wp * c..],
                    rs: c,
                    cs: 1,
                };
                let b = View {
                    data: &wr[ki * o * kc..(ki + 1) * o * kc],
                    rs: 1,
                    cs: kc,
                };
                let beta = if ki == 0 { 0.0 } else { 1.0 };
                sgemm_view((n, o, kc), 1.0, a, b, beta, ymat, !par);
            }
            // Output row `oh` of the grid (`OW x O`) into every channel's plane (`O x OW`).
            for bi in 0..gb {
                for oh in 0..g.oh {
                    let dst = &mut yg[(bi * o * g.oh + oh) * g.ow..];
                    let src = &ymat[gr.at(bi, oh) * o..];
                    transpose_strided(src, o, g.ow, o, dst, g.oh * g.ow);
                }
            }
        })
    });
    y
}

/// `∂L/∂x` as the forward of `dY` with the flipped, transposed kernel
/// (`W'[c, o, k-1-i, k-1-j] = W[o, c, i, j]`), itself a same convolution.
pub(super) fn backward_input(g: &ConvGeom, dy: &[f32], w: &CpuWeight) -> Vec<f32> {
    let (o, c, k) = (g.o, g.c, g.kh);
    let gt = ConvGeom { c: o, o: c, ..*g };
    // Reordered flipped weight: W'_ki[ci][kj·O + oc] = W[oc, ci, k-1-ki, k-1-kj].
    let wf = permuted_weight(g, w, |oc, ci, i, j| {
        ((k - 1 - i) * c + ci) * k * o + (k - 1 - j) * o + oc
    });
    forward_reordered(&gt, dy, &wf)
}

/// The dense weight gradient `∂L/∂W` (`[O, C, k, k]`) for a geometry where [`applies`]
/// holds.
pub(super) fn backward_weight(g: &ConvGeom, dy: &[f32], x: &[f32]) -> Vec<f32> {
    let (o, c, k, gr) = (g.o, g.c, g.kh, Grid::new(g));
    let kc = k * c;
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let part = |gi: usize| -> Vec<f32> {
        let (b0, gb) = grs[gi];
        let n = gr.cols(g, gb);
        with_scratch(gb * gr.plane * c + o * n, |buf| {
            let (xp, dymat) = buf.split_at_mut(gb * gr.plane * c);
            pad_nhwc(g, x, b0, gb, xp);
            dymat.fill(0.0);
            for bi in 0..gb {
                for oc in 0..o {
                    for oh in 0..g.oh {
                        dymat[oc * n + gr.at(bi, oh)..][..g.ow].copy_from_slice(
                            &dy[(((b0 + bi) * o + oc) * g.oh + oh) * g.ow..][..g.ow],
                        );
                    }
                }
            }
            let mut dwr = vec![0f32; k * o * kc];
            for (ki, dwk) in dwr.chunks_mut(o * kc).enumerate() {
                let b = View {
                    data: &xp[ki * gr.wp * c..],
                    rs: c,
                    cs: 1,
                };
                sgemm_view((o, kc, n), 1.0, View::rows(dymat, n), b, 0.0, dwk, !par);
            }
            dwr
        })
    };
    let partials: Vec<Vec<f32>> = if par {
        use rayon::prelude::*;
        (0..grs.len()).into_par_iter().map(part).collect()
    } else {
        (0..grs.len()).map(part).collect()
    };
    // Fixed-order reduction over groups, then back to [o][c][ki][kj].
    let mut parts = partials.into_iter();
    let mut dwr = parts.next().unwrap_or_else(|| vec![0f32; k * o * kc]);
    for part in parts {
        dwr.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    let mut dw = vec![0f32; o * c * k * k];
    for ki in 0..k {
        for oc in 0..o {
            for kj in 0..k {
                for ch in 0..c {
                    dw[((oc * c + ch) * k + ki) * k + kj] = dwr[(ki * o + oc) * kc + kj * c + ch];
                }
            }
        }
    }
    dw
}
