//! Batch norm on the CPU: per-channel sums in f64 in a fixed order, element passes in
//! parallel per image.

use rayon::prelude::*;

use super::{dims, BatchNormCache, BatchNormGrads, BatchNormParams, NormOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

/// Lanes of the per-channel partial sums: lane `l` of a run takes its elements `l, l+8, ...`
/// (so the loop vectorises); the last `len % 8` elements go to a sequential tail.
const LANES: usize = 8;

/// Per-channel sums over the `hw`-element runs of `[B, C, HW]` tensors, in f64 and in a
/// fixed order: `K` sums at once, `f(ch, a, b)` giving the `K` terms of one element from
/// the runs' values in `a` and `b` (the same tensor twice when there is one input). The
/// order (eight lanes in image order, then their total, then the tail) does not depend on
/// threads.
fn channel_sums<const K: usize>(
    (b, c, hw): (usize, usize, usize),
    a: &[f32],
    bs: &[f32],
    f: impl Fn(usize, f32, f32) -> [f64; K] + Sync,
) -> [Vec<f64>; K] {
    let per: Vec<[f64; K]> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = [[0f64; LANES]; K];
            let mut tail = [0f64; K];
            for bi in 0..b {
                let base = (bi * c + ch) * hw;
                let (ra, rb) = (&a[base..base + hw], &bs[base..base + hw]);
                let (ca, cb) = (ra.chunks_exact(LANES), rb.chunks_exact(LANES));
                let (ta, tb) = (ca.remainder(), cb.remainder());
                for (xa, xb) in ca.zip(cb) {
                    for l in 0..LANES {
                        let v = f(ch, xa[l], xb[l]);
                        for k in 0..K {
                            acc[k][l] += v[k];
                        }
                    }
                }
                for (&xa, &xb) in ta.iter().zip(tb) {
                    let v = f(ch, xa, xb);
                    for k in 0..K {
                        tail[k] += v[k];
                    }
                }
            }
            std::array::from_fn(|k| acc[k].iter().sum::<f64>() + tail[k])
        })
        .collect();
    std::array::from_fn(|k| per.iter().map(|s| s[k]).collect())
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
        let [sum] = channel_sums((b, c, hw), xs, xs, |_, v, _| [v as f64]);
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let [sq] = channel_sums((b, c, hw), xs, xs, |ch, v, _| {
            let d = v as f64 - mean[ch];
            [d * d]
        });
        let var: Vec<f64> = sq.iter().map(|s| s / n as f64).collect();
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
                    let (m, is, gc, bc) = (mean[ch] as f32, inv_std[ch], g[ch], bt[ch]);
                    let r = ch * hw..(ch + 1) * hw;
                    for ((h, o), &v) in xh[r.clone()].iter_mut().zip(&mut yy[r.clone()]).zip(&xx[r])
                    {
                        let v = (v - m) * is;
                        *h = v;
                        *o = gc * v + bc;
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
        let [sum_dy, sum_dy_xh] = channel_sums((b, c, hw), d, xh, |_, dv, hv| {
            [dv as f64, dv as f64 * hv as f64]
        });
        let g = gamma.cpu_data()?;
        let mut dx = vec![0f32; d.len()];
        dx.par_chunks_mut(c * hw)
            .zip(d.par_chunks(c * hw))
            .zip(xh.par_chunks(c * hw))
            .for_each(|((dxx, dd), xx)| {
                for ch in 0..c {
                    let k = g[ch] * inv_std[ch] / n as f32;
                    let (s1, s2) = (sum_dy[ch] as f32, sum_dy_xh[ch] as f32);
                    let (nf, r) = (n as f32, ch * hw..(ch + 1) * hw);
                    for ((o, &dv), &hv) in dxx[r.clone()].iter_mut().zip(&dd[r.clone()]).zip(&xx[r])
                    {
                        *o = k * (nf * dv - s1 - hv * s2);
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
