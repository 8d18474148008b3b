//! Batch norm's inner loops over one channel run (`HW` contiguous elements of one image),
//! built for AVX2 when the CPU has it ([`dispatch_fma!`](crate::simd)). No multiply-add is
//! fused here, so the portable and the AVX2 build give the same bits: the f64 sums keep
//! their eight lanes in element order either way, which only the vector width changes.
//!
//! A fused ReLU (`relu = Some((γ, β))` of the channel) passes `dy` only where the forward's
//! `γ·x̂ + β` is positive: the forward's expression, so the mask is `relu`'s bit for bit.

use std::mem::MaybeUninit;

/// Lanes of the per-channel partial sums: lane `l` of a run takes its elements `l, l+8, ...`
/// (so the loop vectorises); the last `len % 8` elements go to a sequential tail.
pub(super) const LANES: usize = 8;

/// Partial sums of one channel: eight lanes and a tail, summed by [`Partial::total`].
#[derive(Clone, Copy, Default)]
pub(super) struct Partial {
    lanes: [f64; LANES],
    tail: f64,
}

impl Partial {
    /// The lanes in order, then the tail.
    pub(super) fn total(&self) -> f64 {
        self.lanes.iter().sum::<f64>() + self.tail
    }
}

/// `y = relu(v)` when `RELU` (`f32::max`, as [`crate::ops::activation::relu`]), else `v`.
#[inline(always)]
fn act<const RELU: bool>(v: f32) -> f32 {
    if RELU {
        v.max(0.0)
    } else {
        v
    }
}

/// `dy` through the fused ReLU of a channel with affine `(γ, β)`.
#[inline(always)]
fn masked(dv: f32, hv: f32, relu: Option<(f32, f32)>) -> f32 {
    match relu {
        Some((g, b)) => {
            if g * hv + b > 0.0 {
                dv
            } else {
                0.0
            }
        }
        None => dv,
    }
}

#[inline(always)]
fn sum_generic<const F: bool>(p: &mut Partial, xs: &[f32], mean: Option<f64>) {
    let ch = xs.chunks_exact(LANES);
    let tail = ch.remainder();
    match mean {
        None => {
            for x in ch {
                for (a, &v) in p.lanes.iter_mut().zip(x) {
                    *a += v as f64;
                }
            }
            for &x in tail {
                p.tail += x as f64;
            }
        }
        Some(m) => {
            for x in ch {
                for (a, &v) in p.lanes.iter_mut().zip(x) {
                    let d = v as f64 - m;
                    *a += d * d;
                }
            }
            for &x in tail {
                let d = x as f64 - m;
                p.tail += d * d;
            }
        }
    }
}

dispatch_fma!(
    /// Adds one run to a channel's `Σx` (`mean` None) or `Σ(x − mean)²`.
    pub(super) fn sum_run(p: &mut Partial, xs: &[f32], mean: Option<f64>) => sum_generic
);

#[inline(always)]
fn dsums_generic<const F: bool>(
    (s1, s2): (&mut Partial, &mut Partial),
    d: &[f32],
    xh: &[f32],
    relu: Option<(f32, f32)>,
) {
    let (cd, cx) = (d.chunks_exact(LANES), xh.chunks_exact(LANES));
    let (td, tx) = (cd.remainder(), cx.remainder());
    for (dv, hv) in cd.zip(cx) {
        for l in 0..LANES {
            let v = masked(dv[l], hv[l], relu) as f64;
            s1.lanes[l] += v;
            s2.lanes[l] += v * hv[l] as f64;
        }
    }
    for (&dv, &hv) in td.iter().zip(tx) {
        let v = masked(dv, hv, relu) as f64;
        s1.tail += v;
        s2.tail += v * hv as f64;
    }
}

dispatch_fma!(
    /// Adds one run to a channel's `Σdy` and `Σdy·x̂` (`dy` masked by a fused ReLU).
    pub(super) fn dsums_run(
        s: (&mut Partial, &mut Partial),
        d: &[f32],
        xh: &[f32],
        relu: Option<(f32, f32)>,
    ) => dsums_generic
);

#[inline(always)]
fn train_generic<const F: bool>(
    xs: &[f32],
    (xh, y): (&mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]),
    (m, is, g, b): (f32, f32, f32, f32),
    relu: bool,
) {
    fn body<const RELU: bool>(
        xs: &[f32],
        xh: &mut [MaybeUninit<f32>],
        y: &mut [MaybeUninit<f32>],
        (m, is, g, b): (f32, f32, f32, f32),
    ) {
        for ((h, o), &v) in xh.iter_mut().zip(y.iter_mut()).zip(xs) {
            let v = (v - m) * is;
            h.write(v);
            o.write(act::<RELU>(g * v + b));
        }
    }
    if relu {
        body::<true>(xs, xh, y, (m, is, g, b))
    } else {
        body::<false>(xs, xh, y, (m, is, g, b))
    }
}

dispatch_fma!(
    /// Writes one run of `x̂ = (x − mean)·inv_std` and `y = γ·x̂ + β` (ReLU'd when `relu`);
    /// all three slices have the run's length.
    pub(super) fn train_run(
        xs: &[f32],
        out: (&mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]),
        stats: (f32, f32, f32, f32),
        relu: bool,
    ) => train_generic
);

#[inline(always)]
fn eval_generic<const F: bool>(
    xs: &[f32],
    y: &mut [MaybeUninit<f32>],
    (scale, shift): (f32, f32),
    relu: bool,
) {
    fn body<const RELU: bool>(xs: &[f32], y: &mut [MaybeUninit<f32>], (s, t): (f32, f32)) {
        for (o, &v) in y.iter_mut().zip(xs) {
            o.write(act::<RELU>(v * s + t));
        }
    }
    if relu {
        body::<true>(xs, y, (scale, shift))
    } else {
        body::<false>(xs, y, (scale, shift))
    }
}

dispatch_fma!(
    /// Writes one run of `y = x·scale + shift` (ReLU'd when `relu`).
    pub(super) fn eval_run(
        xs: &[f32],
        y: &mut [MaybeUninit<f32>],
        affine: (f32, f32),
        relu: bool,
    ) => eval_generic
);

#[inline(always)]
fn dx_generic<const F: bool>(
    (d, xh): (&[f32], &[f32]),
    dx: &mut [MaybeUninit<f32>],
    (k, nf, s1, s2): (f32, f32, f32, f32),
    relu: Option<(f32, f32)>,
) {
    for ((o, &dv), &hv) in dx.iter_mut().zip(d).zip(xh) {
        let dv = masked(dv, hv, relu);
        o.write(k * (nf * dv - s1 - hv * s2));
    }
}

dispatch_fma!(
    /// Writes one run of `dx = k·(N·dy − Σdy − x̂·Σdy·x̂)` (`dy` masked by a fused ReLU).
    pub(super) fn dx_run(
        inputs: (&[f32], &[f32]),
        dx: &mut [MaybeUninit<f32>],
        coef: (f32, f32, f32, f32),
        relu: Option<(f32, f32)>,
    ) => dx_generic
);
