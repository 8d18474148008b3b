//! Batch norm on the CPU: per-channel sums in f64 in a fixed order, element passes in
//! parallel per image, each over channel runs of `HW` elements (`cpu_runs`). With the ReLU
//! fused ([`BatchNormParams::relu`]), the forward writes `max(γ·x̂ + β, 0)` and the backward
//! takes `dy` as zero wherever `γ·x̂ + β <= 0`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::cpu_runs::{dsums_run, dx_run, eval_run, sum_run, train_run, Partial};
use super::{dims, BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

/// Per-channel sums over the `hw`-element runs of a `[B, C, HW]` layout, channels in
/// parallel: `run(ch, range, partials)` adds the run at `range` to the channel's `K`
/// partial sums, images in order, so the totals do not depend on threads.
fn channel_sums<const K: usize>(
    (b, c, hw): (usize, usize, usize),
    run: impl Fn(usize, std::ops::Range<usize>, &mut [Partial; K]) + Sync,
) -> [Vec<f64>; K] {
    let per: Vec<[f64; K]> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut p = [Partial::default(); K];
            for bi in 0..b {
                let base = (bi * c + ch) * hw;
                run(ch, base..base + hw, &mut p);
            }
            p.map(|s| s.total())
        })
        .collect();
    std::array::from_fn(|k| per.iter().map(|s| s[k]).collect())
}

/// `n` elements to be written before [`assume_written`]: the element passes fill every
/// output exactly once, so zeroing them first would be a wasted pass over memory.
fn unwritten(n: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit<f32>` needs no initialisation, and the capacity is `n`.
    unsafe { v.set_len(n) };
    v
}

/// The buffer of [`unwritten`] as f32.
///
/// # Safety
/// Every element must have been written.
unsafe fn assume_written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same allocation, length and capacity; `MaybeUninit<f32>` has f32's layout, and
    // the caller guarantees that every element is initialised.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// `K` outputs of `n = B·C·HW` elements written channel run by channel run, images in
/// parallel: `run(ch, range, out_runs)` writes the run of channel `ch` at `range` (indices
/// into the inputs) of every output.
fn per_run<const K: usize>(
    (c, hw, n): (usize, usize, usize),
    run: impl Fn(usize, std::ops::Range<usize>, [&mut [MaybeUninit<f32>]; K]) + Sync,
) -> [Vec<f32>; K] {
    let mut outs: [Vec<MaybeUninit<f32>>; K] = std::array::from_fn(|_| unwritten(n));
    // Per image, its chunk of every output (`C·HW` is 0 only when `n` is).
    let img = (c * hw).max(1);
    let mut splits = outs.each_mut().map(|o| o.chunks_mut(img));
    let images: Vec<[&mut [MaybeUninit<f32>]; K]> = (0..n / img)
        .map(|_| {
            splits
                .each_mut()
                .map(|s| s.next().expect("outputs of one length"))
        })
        .collect();
    images.into_par_iter().enumerate().for_each(|(bi, img)| {
        let mut runs = img.map(|o| o.chunks_mut(hw));
        for ch in 0..c {
            let at = (bi * c + ch) * hw;
            let parts = runs.each_mut().map(|r| r.next().expect("C runs per image"));
            run(ch, at..at + hw, parts);
        }
    });
    // SAFETY: `n` is `B·C·HW`, so the image chunks and their `C` runs of `HW` cover every
    // element of every output, and each `run` writes its whole runs (the run kernels'
    // contract).
    outs.map(|o| unsafe { assume_written(o) })
}

impl NormOps for CpuBackend {
    fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        p: BatchNormParams,
    ) -> Result<(Tensor, BatchNormCache)> {
        let (b, c, hw) = dims(x)?;
        let n = b * hw;
        let xs = x.cpu_data()?;
        let [sum] = channel_sums((b, c, hw), |_, r, [s]| sum_run(s, &xs[r], None));
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let [sq] = channel_sums((b, c, hw), |ch, r, [s]| sum_run(s, &xs[r], Some(mean[ch])));
        let var: Vec<f64> = sq.iter().map(|s| s / n as f64).collect();
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| (1.0 / (v + p.eps as f64).sqrt()) as f32)
            .collect();
        let (g, bt) = (gamma.cpu_data()?, beta.cpu_data()?);
        // x̂ and y in one pass.
        let [xhat, y] = per_run((c, hw, xs.len()), |ch, r, [xh, yr]| {
            let stats = (mean[ch] as f32, inv_std[ch], g[ch], bt[ch]);
            train_run(&xs[r], (xh, yr), stats, p.relu);
        });
        let mom = p.momentum;
        for (rm, m) in running_mean.cpu_data_mut()?.iter_mut().zip(&mean) {
            *rm = (1.0 - mom) * *rm + mom * *m as f32;
        }
        for (rv, v) in running_var.cpu_data_mut()?.iter_mut().zip(&var) {
            let unbiased = v * n as f64 / (n - 1) as f64;
            *rv = (1.0 - mom) * *rv + mom * unbiased as f32;
        }
        let dev = x.device();
        Ok((
            Tensor::from_vec(x.shape(), y, dev)?,
            BatchNormCache {
                xhat: Tensor::from_vec(x.shape(), xhat, dev)?,
                inv_std: Tensor::from_vec(&[c], inv_std, dev)?,
                relu_beta: None,
            },
        ))
    }

    fn batch_norm_eval(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        relu: bool,
    ) -> Result<Tensor> {
        let (_, c, hw) = dims(x)?;
        let (g, bt, rm, rv) = (
            gamma.cpu_data()?,
            beta.cpu_data()?,
            running_mean.cpu_data()?,
            running_var.cpu_data()?,
        );
        let scale: Vec<f32> = (0..c).map(|ch| g[ch] / (rv[ch] + eps).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|ch| bt[ch] - rm[ch] * scale[ch]).collect();
        let xs = x.cpu_data()?;
        let [y] = per_run((c, hw, xs.len()), |ch, r, [o]| {
            eval_run(&xs[r], o, (scale[ch], shift[ch]), relu)
        });
        Tensor::from_vec(x.shape(), y, x.device())
    }

    fn batch_norm_backward(
        dy: &Tensor,
        cache: &BatchNormCache,
        gamma: &Tensor,
    ) -> Result<BatchNormGrads> {
        let (b, c, hw) = dims(dy)?;
        let n = (b * hw) as f64;
        let (d, xh) = (dy.cpu_data()?, cache.xhat.cpu_data()?);
        let inv_std = cache.inv_std.cpu_data()?;
        let g = gamma.cpu_data()?;
        let relu_beta = cache.relu_beta.as_ref().map(|t| t.cpu_data()).transpose()?;
        let relu = |ch: usize| relu_beta.map(|bt| (g[ch], bt[ch]));
        let [sum_dy, sum_dy_xh] = channel_sums((b, c, hw), |ch, r, [s1, s2]| {
            dsums_run((s1, s2), &d[r.clone()], &xh[r], relu(ch))
        });
        let [dx] = per_run((c, hw, d.len()), |ch, r, [o]| {
            let nf = n as f32;
            let k = g[ch] * inv_std[ch] / nf;
            let coef = (k, nf, sum_dy[ch] as f32, sum_dy_xh[ch] as f32);
            dx_run((&d[r.clone()], &xh[r]), o, coef, relu(ch))
        });
        let dev = dy.device();
        Ok(BatchNormGrads {
            dx: Tensor::from_vec(dy.shape(), dx, dev)?,
            dgamma: Tensor::from_vec(&[c], sum_dy_xh.iter().map(|&v| v as f32).collect(), dev)?,
            dbeta: Tensor::from_vec(&[c], sum_dy.iter().map(|&v| v as f32).collect(), dev)?,
        })
    }
}
