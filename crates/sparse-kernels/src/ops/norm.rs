//! Batch normalisation over `[B, C, H, W]` (or `[B, C]`) with per-channel affine parameters,
//! batch statistics in training (PyTorch semantics: biased variance to normalise, unbiased
//! variance in the running estimate) and running statistics in evaluation.

use rayon::prelude::*;

use crate::error::{shape_err, KernelError, Result};
use crate::tensor::Tensor;

/// BatchNorm hyperparameters (PyTorch defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// Added to the variance.
    pub eps: f32,
    /// Running-statistics update weight of the new batch.
    pub momentum: f32,
}

impl Default for BatchNormParams {
    fn default() -> Self {
        BatchNormParams {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// What the backward pass needs from a training forward.
#[derive(Debug, Clone)]
pub struct BatchNormCache {
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    shape: Vec<usize>,
}

fn dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    match *x.shape() {
        [b, c, h, w] => Ok((b, c, h * w)),
        [b, c] => Ok((b, c, 1)),
        ref s => shape_err(
            "batch_norm",
            format!("input must be [B,C,H,W] or [B,C], got {s:?}"),
        ),
    }
}

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

fn check_params(c: usize, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        t.expect_shape("batch_norm parameter", &[c])?;
    }
    Ok(())
}

/// Training forward: normalises with batch statistics, updates the running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    p: BatchNormParams,
) -> Result<(Tensor, BatchNormCache)> {
    let (b, c, hw) = dims(x)?;
    check_params(c, &[gamma, beta, running_mean, running_var])?;
    let n = b * hw;
    if n < 2 {
        return Err(KernelError::InvalidArgument(format!(
            "batch_norm training needs more than one value per channel, got {n}"
        )));
    }
    let xs = x.as_slice();
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
    let (g, bt) = (gamma.as_slice(), beta.as_slice());
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
    for (rm, m) in running_mean.as_mut_slice().iter_mut().zip(&mean) {
        *rm = (1.0 - mom) * *rm + mom * *m as f32;
    }
    for (rv, v) in running_var.as_mut_slice().iter_mut().zip(&var) {
        let unbiased = v * n as f64 / (n - 1) as f64;
        *rv = (1.0 - mom) * *rv + mom * unbiased as f32;
    }
    Ok((
        Tensor::from_vec(x.shape(), y, x.device())?,
        BatchNormCache {
            xhat,
            inv_std,
            shape: x.shape().to_vec(),
        },
    ))
}

/// Evaluation forward with the running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (_, c, hw) = dims(x)?;
    check_params(c, &[gamma, beta, running_mean, running_var])?;
    let (g, bt, rm, rv) = (
        gamma.as_slice(),
        beta.as_slice(),
        running_mean.as_slice(),
        running_var.as_slice(),
    );
    let scale: Vec<f32> = (0..c).map(|ch| g[ch] / (rv[ch] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|ch| bt[ch] - rm[ch] * scale[ch]).collect();
    let mut y = x.to_vec();
    y.par_chunks_mut(c * hw).for_each(|yy| {
        for ch in 0..c {
            for v in &mut yy[ch * hw..(ch + 1) * hw] {
                *v = *v * scale[ch] + shift[ch];
            }
        }
    });
    Tensor::from_vec(x.shape(), y, x.device())
}

/// Gradients of batch norm.
#[derive(Debug, Clone)]
pub struct BatchNormGrads {
    /// `∂L/∂x`.
    pub dx: Tensor,
    /// `∂L/∂γ`.
    pub dgamma: Tensor,
    /// `∂L/∂β`.
    pub dbeta: Tensor,
}

/// Backward of [`batch_norm_train`]:
/// `dx = γ·inv_std/N · (N·dy − Σdy − x̂·Σ(dy·x̂))`.
pub fn batch_norm_backward(
    dy: &Tensor,
    cache: &BatchNormCache,
    gamma: &Tensor,
) -> Result<BatchNormGrads> {
    dy.expect_shape("batch_norm backward dY", &cache.shape)?;
    let (b, c, hw) = dims(dy)?;
    gamma.expect_shape("batch_norm gamma", &[c])?;
    let n = (b * hw) as f64;
    let (d, xh) = (dy.as_slice(), &cache.xhat);
    let sum_dy = channel_sums(b, c, hw, |_, i| d[i] as f64);
    let sum_dy_xh = channel_sums(b, c, hw, |_, i| d[i] as f64 * xh[i] as f64);
    let g = gamma.as_slice();
    let mut dx = vec![0f32; d.len()];
    dx.par_chunks_mut(c * hw)
        .zip(d.par_chunks(c * hw))
        .zip(xh.par_chunks(c * hw))
        .for_each(|((dxx, dd), xx)| {
            for ch in 0..c {
                let k = g[ch] * cache.inv_std[ch] / n as f32;
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
