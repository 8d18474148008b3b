//! Batch norm on the CPU: per-channel sums in f64 in a fixed order, element passes in
//! parallel per image.

use rayon::prelude::*;

use super::{dims, BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

/// Per-channel sums of `f(ch, i)` over the channel's elements `i`, in f64, in a fixed order
/// (eight interleaved partial sums per contiguous `hw` run, so the loop vectorises).
fn channel_sums(b: usize, c: usize, hw: usize, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
    const LANES: usize = 8;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = [0f64; LANES];
            let mut tail = 0f64;
            for bi in 0..b {
                let base = (bi * c + ch) * hw;
                let full = hw / LANES * LANES;
                for j in (base..base + full).step_by(LANES) {
                    for (l, a) in acc.iter_mut().enumerate() {
                        *a += f(ch, j + l);
                    }
                }
                for i in base + full..base + hw {
                    tail += f(ch, i);
                }
            }
            acc.iter().sum::<f64>() + tail
        })
        .collect()
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
        let mean: Vec<f64> = channel_sums(b, c, hw, |_, i| xs[i] as f64)
            .iter()
            .map(|s| s / n as f64)
            .collect();
        let var: Vec<f64> = channel_sums(b, c, hw, |ch, i| {
            let d = xs[i] as f64 - mean[ch];
            d * d
        })
        .iter()
        .map(|s| s / n as f64)
        .collect();
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| (1.0 / (v + p.eps as f64).sqrt()) as f32)
            .collect();
        let (g, bt) = (gamma.cpu_data()?, beta.cpu_data()?);
        let mut xhat = vec![0f32; xs.len()];
        let mut y = vec![0f32; xs.len()];
        xhat.par_chunks_mut(c * hw)
            .zip(y.par_chunks_mut(c * hw))
            .zip(xs.par_chunks(c * hw))
            .for_each(|((xh, yy), xx)| {
                for ch in 0..c {
                    let (m, is) = (mean[ch] as f32, inv_std[ch]);
                    for i in ch * hw..(ch + 1) * hw {
                        let v = (xx[i] - m) * is;
                        xh[i] = v;
                        yy[i] = g[ch] * v + bt[ch];
                    }
                }
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
        let mut y = x.cpu_data()?.to_vec();
        y.par_chunks_mut(c * hw).for_each(|yy| {
            for ch in 0..c {
                for v in &mut yy[ch * hw..(ch + 1) * hw] {
                    *v = *v * scale[ch] + shift[ch];
                }
            }
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
        let sum_dy = channel_sums(b, c, hw, |_, i| d[i] as f64);
        let sum_dy_xh = channel_sums(b, c, hw, |_, i| d[i] as f64 * xh[i] as f64);
        let g = gamma.cpu_data()?;
        let mut dx = vec![0f32; d.len()];
        dx.par_chunks_mut(c * hw)
            .zip(d.par_chunks(c * hw))
            .zip(xh.par_chunks(c * hw))
            .for_each(|((dxx, dd), xx)| {
                for ch in 0..c {
                    let k = g[ch] * inv_std[ch] / n as f32;
                    let (s1, s2) = (sum_dy[ch] as f32, sum_dy_xh[ch] as f32);
                    for i in ch * hw..(ch + 1) * hw {
                        dxx[i] = k * (n as f32 * dd[i] - s1 - xx[i] * s2);
                    }
                }
            });
        let dev = dy.device();
        Ok(BatchNormGrads {
            dx: Tensor::from_vec(dy.shape(), dx, dev)?,
            dgamma: Tensor::from_vec(&[c], sum_dy_xh.iter().map(|&v| v as f32).collect(), dev)?,
            dbeta: Tensor::from_vec(&[c], sum_dy.iter().map(|&v| v as f32).collect(), dev)?,
        })
    }
}
