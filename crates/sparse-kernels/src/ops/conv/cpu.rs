//! CPU convolution: grouped im2col + GEMM / SpMM, col2im, SDDMM weight gradient.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::{batch_minor, direct, shifted, ConvGeom};
use crate::ops::gemm::cpu::sgemm;
use crate::ops::transpose::{transpose, transpose_into};
use sparse_core::Mask;

use crate::ops::sparse::cpu as sp;
use crate::ops::sparse::weight::CpuWeight;
use crate::profile::{self, Phase};

/// Target number of unfolded columns per image group (bounds scratch memory per task).
const GROUP_COLS: usize = 1024;

thread_local! {
    /// Per-thread unfolding buffer, reused across calls (large allocations would otherwise
    /// be fresh zeroed pages every group).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a per-thread scratch slice of `len` elements with unspecified contents
/// (callers overwrite every element before reading it). Re-entrant: a nested call on the
/// same thread (rayon work stealing) gets its own buffer.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        let other = s.take();
        s.set(if other.len() > buf.len() { other } else { buf });
    });
    r
}

/// Images per group.
pub(super) fn group_size(g: &ConvGeom) -> usize {
    GROUP_COLS.div_ceil(g.p().max(1)).clamp(1, g.b.max(1))
}

/// The output columns `lo..hi` whose input column `ow·stride + k - pad` lies inside the row
/// (the rest read padding).
fn valid_cols(g: &ConvGeom, k: usize) -> (usize, usize) {
    let s = g.stride;
    // ow·s + k >= pad  <=>  ow >= ceil((pad - k) / s)
    let lo = g.pad.saturating_sub(k).div_ceil(s).min(g.ow);
    // ow·s + k < w + pad  <=>  ow < ceil((w + pad - k) / s)
    let hi = (g.w + g.pad).saturating_sub(k).div_ceil(s).clamp(lo, g.ow);
    (lo, hi)
}

/// Unfolds images `b0..b0+gb` into `col` (`CKK x gb·P`); every element is written.
fn im2col(g: &ConvGeom, x: &[f32], b0: usize, gb: usize, col: &mut [f32]) {
    let (p, n) = (g.p(), gb * g.p());
    for (row, out) in col.chunks_mut(n).enumerate() {
        let c = row / (g.kh * g.kw);
        let ki = (row / g.kw) % g.kh;
        let kj = row % g.kw;
        let (lo, hi) = valid_cols(g, kj);
        for bi in 0..gb {
            let img = &x[((b0 + bi) * g.c + c) * g.h * g.w..][..g.h * g.w];
            let o = &mut out[bi * p..(bi + 1) * p];
            for oh in 0..g.oh {
                let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                let orow = &mut o[oh * g.ow..(oh + 1) * g.ow];
                if ih < 0 || ih >= g.h as isize {
                    orow.fill(0.0);
                    continue;
                }
                let irow = &img[ih as usize * g.w..(ih as usize + 1) * g.w];
                orow[..lo].fill(0.0);
                orow[hi..].fill(0.0);
                // Input column of output column `lo`.
                let i0 = lo * g.stride + kj - g.pad;
                if g.stride == 1 {
                    orow[lo..hi].copy_from_slice(&irow[i0..i0 + hi - lo]);
                } else if hi > lo {
                    // Indexed, not `step_by`, whose `nth` per element was most of the time.
                    let (s, n) = (g.stride, hi - lo);
                    let src = &irow[i0..=i0 + (n - 1) * s];
                    let (body, last) = orow[lo..hi].split_at_mut(n - 1);
                    if s == 2 {
                        gather_every::<2>(body, src);
                    } else {
                        gather_every::<0>(body, &src[..(n - 1) * s]);
                    }
                    last[0] = src[(n - 1) * s];
                }
            }
        }
    }
}

/// `dst[t] = src[t·S]` over whole strides of `src` (`S` = 0: stride `src.len() / dst.len()`).
/// A constant `S` lets the loop be vectorised as a shuffle.
#[inline]
fn gather_every<const S: usize>(dst: &mut [f32], src: &[f32]) {
    if dst.is_empty() {
        return;
    }
    let s = if S == 0 { src.len() / dst.len() } else { S };
    for (v, ch) in dst.iter_mut().zip(src.chunks_exact(s)) {
        *v = ch[0];
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
                    let (lo, hi) = valid_cols(g, kj);
                    if lo == hi {
                        continue;
                    }
                    let i0 = lo * g.stride + kj - g.pad;
                    for oh in 0..g.oh {
                        let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let irow = &mut img[ih as usize * g.w..][..g.w];
                        let srow = &src[oh * g.ow + lo..oh * g.ow + hi];
                        if g.stride == 1 {
                            for (d, &s) in irow[i0..i0 + hi - lo].iter_mut().zip(srow) {
                                *d += s;
                            }
                        } else {
                            let s = g.stride;
                            let dst = &mut irow[i0..=i0 + (hi - lo - 1) * s];
                            for (t, &v) in srow.iter().enumerate() {
                                dst[t * s] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Groups of the batch: `(first image, images)`.
pub(super) fn groups(g: &ConvGeom) -> Vec<(usize, usize)> {
    let gs = group_size(g);
    (0..g.b)
        .step_by(gs)
        .map(|b0| (b0, gs.min(g.b - b0)))
        .collect()
}

/// Whether groups run in parallel (inner products serial) or in sequence (inner parallel).
pub(super) fn parallel_groups(n_groups: usize) -> bool {
    n_groups >= rayon::current_num_threads() && n_groups > 1
}

pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &CpuWeight) -> Vec<f32> {
    if shifted::applies(g, w) {
        return shifted::forward(g, x, w);
    }
    forward_with(g, x, &|col, n, out, par| w.mul(col, n, out, par))
}

/// `mul(col, n, out, parallel)`: `out (O x n) = W · col (CKK x n)`.
type MulFn<'a> = dyn Fn(&[f32], usize, &mut [f32], bool) + Sync + 'a;

/// Forward through `mul(col, n, out, parallel)`: `out (O x n) = W · col (CKK x n)`.
fn forward_with(g: &ConvGeom, x: &[f32], mul: &MulFn) -> Vec<f32> {
    let (p, o, ckk) = (g.p(), g.o, g.ckk());
    let mut y = vec![0f32; g.b * o * p];
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let gs = group_size(g);
    let body = |(gi, yg): (usize, &mut [f32])| {
        let (b0, gb) = grs[gi];
        let n = gb * p;
        with_scratch((ckk + o) * n, |buf| {
            let (col, ymat) = buf.split_at_mut(ckk * n);
            im2col(g, x, b0, gb, col);
            mul(col, n, ymat, !par);
            // [O, gb·P] -> [gb, O, P]
            for bi in 0..gb {
                for oc in 0..o {
                    yg[(bi * o + oc) * p..][..p].copy_from_slice(&ymat[oc * n + bi * p..][..p]);
                }
            }
        })
    };
    sp::for_each_chunk(&mut y, gs * o * p, par, body);
    y
}

/// Whether the input gradient of a stride-1 convolution can run as a forward convolution
/// of `dY` with the flipped, transposed kernel (`pad' = k - 1 - pad`), which unfolds `dY`
/// instead of folding a `CKK x N` matrix back (col2im). It pays when the `dcol = Wᵀ·dY`
/// product has a short inner dimension (`O < 32`: writing `dcol` dominates; ResNet-20's first
/// stage runs 1.6x faster) and the flipped product is not tiny (`C >= 16`); otherwise the
/// shared unfolding of the GEMM + col2im path wins (measured at ResNet-20's stage shapes:
/// `cargo xtask bench conv3x3_resnet20`).
fn flipped_dx_applies(g: &ConvGeom, w: &CpuWeight) -> bool {
    g.stride == 1
        && g.kh == g.kw
        && g.pad < g.kh
        && g.o < 32
        && g.c >= 16
        && !matches!(w, CpuWeight::Sparse(_))
}

/// The effective weight (`W ⊙ M` for a masked one) with element `[oc, ci, i, j]` moved to
/// `to(oc, ci, i, j)` (a permutation of the `O·C·kh·kw` positions).
pub(super) fn permuted_weight(
    g: &ConvGeom,
    w: &CpuWeight,
    to: impl Fn(usize, usize, usize, usize) -> usize,
) -> Vec<f32> {
    let (o, c, kh, kw) = (g.o, g.c, g.kh, g.kw);
    let (src, mask) = match w {
        CpuWeight::Dense(t, _) => (*t, None),
        CpuWeight::Masked(t, m, _) => (*t, Some(*m)),
        CpuWeight::Sparse(_) => unreachable!("sparse weights run CSR or direct kernels"),
    };
    let mut dst = vec![0f32; o * c * kh * kw];
    for oc in 0..o {
        for ci in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let f = ((oc * c + ci) * kh + i) * kw + j;
                    if mask.is_none_or(|m| m.get(f)) {
                        dst[to(oc, ci, i, j)] = src[f];
                    }
                }
            }
        }
    }
    dst
}

/// `dx` of a stride-1 convolution as `conv(dY, flip(W)ᵀ)` (see [`flipped_dx_applies`]).
fn backward_input_flipped(g: &ConvGeom, dy: &[f32], w: &CpuWeight) -> Vec<f32> {
    let (o, c, kh, kw) = (g.o, g.c, g.kh, g.kw);
    // wf[ci, oc, kh-1-i, kw-1-j] = W[oc, ci, i, j] (· mask)
    let wf = permuted_weight(g, w, |oc, ci, i, j| {
        ((ci * o + oc) * kh + kh - 1 - i) * kw + kw - 1 - j
    });
    let gt = ConvGeom {
        b: g.b,
        c: o,
        h: g.oh,
        w: g.ow,
        o: c,
        kh,
        kw,
        stride: 1,
        pad: kh - 1 - g.pad,
        oh: g.h,
        ow: g.w,
    };
    // Dense O' x CKK' = C x (O·kh·kw) weight.
    forward_with(&gt, dy, &|col, n, out, par| {
        sgemm(
            c,
            n,
            o * kh * kw,
            1.0,
            &wf,
            false,
            col,
            false,
            0.0,
            out,
            par,
        )
    })
}

/// At-mask weight gradients at these densities or more come from the dense product, masked
/// afterwards (the shifted GEMM, or the GEMM over the unfolding), instead of one dot per
/// active weight (the direct convolution's plane dots, or the SDDMM over the unfolding). The
/// dense products run near the GEMM's peak; the dots are bound by memory.
///
/// The direct path's thresholds, by output plane: criterion's
/// `conv3x3_resnet18_b128_wgrad` (weight gradient alone, batch 128, 2 threads; plane dots
/// in AVX2 intrinsics over blocks of 16 images) gave, dense against plane dots at densities
/// 0.1 / 0.2 / 0.3 / 0.5: 64 channels at 32x32 28.8 ms against 23.6 / 33.5 / 42.5 / 57.8;
/// 128 at 16x16 30.9 against 12.4 / 22.1 / 27.6 / 42.7; 256 at 8x8 29.5 against 15.0 /
/// 25.7 / 33.5 / 53.8 (ResNet-18's 8x8 stage at its ERK 0.116: 17.0).
const DIRECT_DENSE_WGRAD_FROM: f64 = 0.25;
/// [`DIRECT_DENSE_WGRAD_FROM`] for output planes of [`LARGE_PLANE`] positions or more.
const DIRECT_DENSE_WGRAD_FROM_LARGE: f64 = 0.15;
/// See [`DIRECT_DENSE_WGRAD_FROM_LARGE`].
const LARGE_PLANE: usize = 1024;

/// Whether a direct-path weight's at-mask gradient comes from the dense product.
fn direct_dense_wgrad(g: &ConvGeom, m: &Mask) -> bool {
    let from = if g.p() >= LARGE_PLANE {
        DIRECT_DENSE_WGRAD_FROM_LARGE
    } else {
        DIRECT_DENSE_WGRAD_FROM
    };
    m.density() >= from
}

/// The SDDMM over the unfolding took 239 ms against 61 dense on ResNet-18's stride-2
/// layer2.0.conv1 at 0.35, 134 against 47 on layer3.0.conv1 at 0.17, and 48–72 against 7–14
/// on its 1x1 shortcuts (ordinary RigL 90% step, ΔT 100, batch 128, 2 threads,
/// `sparse-train train --profile`).
const UNFOLDED_DENSE_WGRAD_FROM: f64 = 0.1;

/// Whether an at-mask weight gradient over the unfolding comes from the dense product (for
/// any weight: a dense-executed masked weight is above the threshold too).
fn dense_wgrad(m: &Mask) -> bool {
    m.density() >= UNFOLDED_DENSE_WGRAD_FROM
}

/// `dw` zero off the mask.
fn mask_in_place(dw: &mut [f32], m: &Mask) {
    dw.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = if m.get(i) { *v } else { 0.0 });
}

pub(crate) fn backward(
    g: &ConvGeom,
    dy: &[f32],
    x: &[f32],
    w: &CpuWeight,
    need_dx: bool,
    wgrad: Option<&Mask>,
) -> (Option<Vec<f32>>, Vec<f32>) {
    if shifted::applies(g, w) {
        let dx =
            need_dx.then(|| profile::time(Phase::InputGrad, || shifted::backward_input(g, dy, w)));
        let dw = profile::time(Phase::WeightGrad, || {
            // A dense-executed weight's gradient at the mask: the dense product costs less
            // than the SDDMM over an unfolding at the densities that run dense.
            let mut dw = shifted::backward_weight(g, dy, x);
            if let Some(m) = wgrad {
                mask_in_place(&mut dw, m);
            }
            dw
        });
        return (dx, dw);
    }
    if need_dx && flipped_dx_applies(g, w) {
        let dx = profile::time(Phase::InputGrad, || backward_input_flipped(g, dy, w));
        return (Some(dx), backward(g, dy, x, w, false, wgrad).1);
    }
    let (p, o, ckk) = (g.p(), g.o, g.ckk());
    let grs = groups(g);
    let par = parallel_groups(grs.len());
    let gs = group_size(g);
    let mut dx = need_dx.then(|| vec![0f32; g.b * g.c * g.h * g.w]);
    let img = g.c * g.h * g.w;
    // The dense product (masked afterwards) rather than the SDDMM at the mask.
    let dense = wgrad.is_none_or(dense_wgrad);

    // With profiling on, each group's weight-gradient part (unfold, products) and
    // input-gradient part (dcol, fold) are timed on its worker thread.
    let (wg_ns, ig_ns) = (AtomicU64::new(0), AtomicU64::new(0));
    let prof = profile::enabled();
    let group_work = |gi: usize, dxg: Option<&mut [f32]>| -> Vec<f32> {
        let t0 = prof.then(Instant::now);
        let (b0, gb) = grs[gi];
        let n = gb * p;
        let dyt_len = if dense { n * o } else { 0 };
        with_scratch((ckk + o) * n + dyt_len, |buf| {
            let (col, rest) = buf.split_at_mut(ckk * n);
            let (dymat, dyt) = rest.split_at_mut(o * n);
            im2col(g, x, b0, gb, col);
            // [gb, O, P] -> [O, gb·P]
            for bi in 0..gb {
                for oc in 0..o {
                    dymat[oc * n + bi * p..][..p]
                        .copy_from_slice(&dy[((b0 + bi) * o + oc) * p..][..p]);
                }
            }
            let mut dw = vec![0f32; o * ckk];
            if dense {
                // dWᵀ (CKK x O) = col · dYᵀ, both row-major: with `colᵀ` as the right
                // operand instead, the GEMM packs it against its stride and runs 3-5x
                // slower at these shapes (ResNet-20's 8x8 stage: 55 against 226 GFLOP/s
                // on one core).
                transpose_into(dymat, o, n, dyt);
                sgemm(ckk, o, n, 1.0, col, false, dyt, false, 0.0, &mut dw, !par);
            } else if let Some(m) = wgrad {
                sp::sddmm_mask(m, o, ckk, dymat, col, n, &mut dw, !par);
            }
            let t1 = prof.then(Instant::now);
            if let Some(dxg) = dxg {
                // Reuse the unfolding buffer for dcol = Wᵀ·dY.
                w.mul_t(dymat, n, col, !par);
                col2im(g, col, gb, dxg);
            }
            if let (Some(t0), Some(t1)) = (t0, t1) {
                wg_ns.fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
                ig_ns.fetch_add(t1.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            dw
        })
    };
    let start = prof.then(Instant::now);

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
    if dense {
        dw = transpose(&dw, ckk, o);
        if let Some(m) = wgrad {
            mask_in_place(&mut dw, m);
        }
    }
    if let Some(start) = start {
        let (w, i) = (wg_ns.into_inner() as f64, ig_ns.into_inner() as f64);
        profile::record_split(
            start.elapsed().as_secs_f64(),
            &[(Phase::WeightGrad, w), (Phase::InputGrad, i)],
        );
    }
    (dx, dw)
}

impl super::ConvOps for crate::backend::CpuBackend {
    fn conv2d_forward(
        g: &ConvGeom,
        x: &crate::Tensor,
        w: crate::WeightRef,
    ) -> crate::Result<crate::Tensor> {
        let xs = x.cpu_data()?;
        let y = match w {
            crate::WeightRef::Sparse(sw) if direct::applies(g) => direct::forward(g, xs, sw),
            crate::WeightRef::Sparse(sw) if batch_minor::applies(g) => {
                batch_minor::forward(g, xs, sw)
            }
            _ => forward(g, xs, &w.cpu()?),
        };
        crate::Tensor::from_vec(&g.out_shape(), y, x.device())
    }

    fn conv2d_backward(
        g: &ConvGeom,
        dy: &crate::Tensor,
        x: &crate::Tensor,
        w: crate::WeightRef,
        need_dx: bool,
        wgrad: crate::WeightGrad,
    ) -> crate::Result<super::ConvGrads> {
        let (dys, xs) = (dy.cpu_data()?, x.cpu_data()?);
        let cw = w.cpu()?;
        let (dx, dw) = match (w, wgrad.host_mask()) {
            (crate::WeightRef::Sparse(sw), Some(m)) if direct::applies(g) => (
                need_dx.then(|| {
                    profile::time(Phase::InputGrad, || direct::backward_input(g, dys, sw))
                }),
                profile::time(Phase::WeightGrad, || {
                    if shifted::fits(g) && direct_dense_wgrad(g, m) {
                        let mut dw = shifted::backward_weight(g, dys, xs);
                        mask_in_place(&mut dw, m);
                        dw
                    } else {
                        direct::backward_weight(g, dys, xs, m)
                    }
                }),
            ),
            (crate::WeightRef::Sparse(sw), Some(m)) if batch_minor::applies(g) => (
                need_dx.then(|| {
                    profile::time(Phase::InputGrad, || batch_minor::backward_input(g, dys, sw))
                }),
                profile::time(Phase::WeightGrad, || {
                    batch_minor::backward_weight(g, dys, xs, m)
                }),
            ),
            (crate::WeightRef::Sparse(sw), None) if direct::applies(g) => (
                need_dx.then(|| {
                    profile::time(Phase::InputGrad, || direct::backward_input(g, dys, sw))
                }),
                // The dense gradient of a grow step: the shifted GEMM where it fits.
                if shifted::fits(g) {
                    profile::time(Phase::WeightGrad, || shifted::backward_weight(g, dys, xs))
                } else {
                    backward(g, dys, xs, &cw, false, None).1
                },
            ),
            (_, m) => backward(g, dys, xs, &cw, need_dx, m),
        };
        Ok(super::ConvGrads {
            dx: dx
                .map(|d| crate::Tensor::from_vec(x.shape(), d, x.device()))
                .transpose()?,
            dw: crate::Tensor::from_vec(w.shape(), dw, x.device())?,
        })
    }
}
