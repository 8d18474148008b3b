//! Batch norm on the CPU: per-channel sums in f64 in a fixed order (images in order), over
//! channel runs of `HW` elements (`cpu_runs`). Training passes go channel by channel,
//! channels in parallel, so a channel's later passes re-read its runs from L2
//! ([`per_channel`]); evaluation's single pass goes image by image. With the ReLU
//! fused ([`BatchNormParams::relu`]), the forward writes `max(γ·x̂ + β, 0)` and the backward
//! takes `dy` as zero wherever `γ·x̂ + β <= 0`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::cpu_runs::{dsums_run, dx_run, eval_run, sum_run, train_run, Partial};
use super::{dims, BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::uninit::{assume_written, unwritten};

/// Raw output bases that channel tasks write through, each at its own runs.
struct Bases<const K: usize>([*mut MaybeUninit<f32>; K]);
// SAFETY: only shared to hand each channel task the runs of its own channel (see
// `per_channel`), which no other task touches.
unsafe impl<const K: usize> Sync for Bases<K> {}

/// `K` outputs of `n = B·C·HW` elements written channel by channel, channels in parallel.
/// For each channel, `stats(ch)` reads whatever it needs (the channel's runs, images in
/// order, so the sums do not depend on threads), and then `write(ch, &stats, range,
/// out_runs)` writes the run of every image, in order, at `range` (indices into the
/// inputs). A channel's `B` runs are re-read while they are in this core's L2 (512 KiB for
/// 128 images of a 32x32 plane), not streamed again from L3 or memory after every
/// channel's first pass. Returns every channel's stats and the outputs.
fn per_channel<S: Send, const K: usize>(
    (b, c, hw): (usize, usize, usize),
    stats: impl Fn(usize) -> S + Sync,
    write: impl Fn(usize, &S, std::ops::Range<usize>, [&mut [MaybeUninit<f32>]; K]) + Sync,
) -> (Vec<S>, [Vec<f32>; K]) {
    let n = b * c * hw;
    let mut outs: [Vec<MaybeUninit<f32>>; K] = std::array::from_fn(|_| unwritten(n));
    let bases = Bases(outs.each_mut().map(|o| o.as_mut_ptr()));
    let bases = &bases;
    let per: Vec<S> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let st = stats(ch);
            for bi in 0..b {
                let at = (bi * c + ch) * hw;
                // SAFETY: `at + hw <= n`, and the run `(bi, ch)` is handed out once, to
                // this channel's task, so no other reference to it exists.
                let runs = bases
                    .0
                    .map(|p| unsafe { std::slice::from_raw_parts_mut(p.add(at), hw) });
                write(ch, &st, at..at + hw, runs);
            }
            st
        })
        .collect();
    // SAFETY: the channels' runs of every image cover all `n` elements of every output, and
    // each `write` fills its whole runs (the run kernels' contract).
    (per, outs.map(|o| unsafe { assume_written(o) }))
}

/// Adds the `B` runs of channel `ch` (images in order) to `K` partial sums.
fn channel_sum<const K: usize>(
    (b, c, hw): (usize, usize, usize),
    ch: usize,
    mut run: impl FnMut(std::ops::Range<usize>, &mut [Partial; K]),
) -> [f64; K] {
    let mut p = [Partial::default(); K];
    for bi in 0..b {
        let base = (bi * c + ch) * hw;
        run(base..base + hw, &mut p);
    }
    p.map(|s| s.total())
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
        let (g, bt) = (gamma.cpu_data()?, beta.cpu_data()?);
        let nf = n as f64;
        // Per channel: Σx, then Σ(x − mean)² over the same runs, then x̂ and y in one pass.
        let (stats, [xhat, y]) = per_channel(
            (b, c, hw),
            |ch| {
                let [sum] = channel_sum((b, c, hw), ch, |r, [s]| sum_run(s, &xs[r], None));
                let mean = sum / nf;
                let [sq] = channel_sum((b, c, hw), ch, |r, [s]| sum_run(s, &xs[r], Some(mean)));
                let var = sq / nf;
                (mean, var, (1.0 / (var + p.eps as f64).sqrt()) as f32)
            },
            |ch, &(mean, _, is), r, [xh, yr]| {
                train_run(&xs[r], (xh, yr), (mean as f32, is, g[ch], bt[ch]), p.relu);
            },
        );
        let mean: Vec<f64> = stats.iter().map(|s| s.0).collect();
        let var: Vec<f64> = stats.iter().map(|s| s.1).collect();
        let inv_std: Vec<f32> = stats.iter().map(|s| s.2).collect();
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
        // Per channel: Σdy and Σdy·x̂, then dx over the same runs.
        let (sums, [dx]) = per_channel(
            (b, c, hw),
            |ch| {
                channel_sum((b, c, hw), ch, |r, [s1, s2]| {
                    dsums_run((s1, s2), &d[r.clone()], &xh[r], relu(ch))
                })
            },
            |ch, &[s1, s2], r, [o]| {
                let nf = n as f32;
                let k = g[ch] * inv_std[ch] / nf;
                let coef = (k, nf, s1 as f32, s2 as f32);
                dx_run((&d[r.clone()], &xh[r]), o, coef, relu(ch))
            },
        );
        let sum_dy: Vec<f64> = sums.iter().map(|s| s[0]).collect();
        let sum_dy_xh: Vec<f64> = sums.iter().map(|s| s[1]).collect();
        let dev = dy.device();
        Ok(BatchNormGrads {
            dx: Tensor::from_vec(dy.shape(), dx, dev)?,
            dgamma: Tensor::from_vec(&[c], sum_dy_xh.iter().map(|&v| v as f32).collect(), dev)?,
            dbeta: Tensor::from_vec(&[c], sum_dy.iter().map(|&v| v as f32).collect(), dev)?,
        })
    }
}
