//! Pooling: 2x2 max-pool, k x k average pool, global average pool (NCHW).

use rayon::prelude::*;

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

fn nchw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.shape() {
        [b, c, h, w] => Ok((b, c, h, w)),
        ref s => shape_err(op, format!("input must be [B,C,H,W], got {s:?}")),
    }
}

/// Max-pool with kernel 2 and stride 2 (odd trailing rows/cols dropped, as PyTorch).
/// Returns the output and, per output, the flat input index of its maximum (first on ties).
pub fn max_pool2x2(x: &Tensor) -> Result<(Tensor, Vec<u32>)> {
    let (b, c, h, w) = nchw("max_pool2x2", x)?;
    let (oh, ow) = (h / 2, w / 2);
    if oh == 0 || ow == 0 {
        return shape_err(
            "max_pool2x2",
            format!("input {h}x{w} smaller than the 2x2 window"),
        );
    }
    let xs = x.as_slice();
    let mut y = vec![0f32; b * c * oh * ow];
    let mut arg = vec![0u32; y.len()];
    y.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(plane, (yp, ap))| {
            let base = plane * h * w;
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = base + 2 * i * w + 2 * j;
                    for (di, dj) in [(0, 1), (1, 0), (1, 1)] {
                        let idx = base + (2 * i + di) * w + 2 * j + dj;
                        if xs[idx] > xs[best] {
                            best = idx;
                        }
                    }
                    yp[i * ow + j] = xs[best];
                    ap[i * ow + j] = best as u32;
                }
            }
        });
    Ok((Tensor::from_vec(&[b, c, oh, ow], y, x.device())?, arg))
}

/// Backward of [`max_pool2x2`]: routes each output gradient to its argmax.
pub fn max_pool2x2_backward(dy: &Tensor, argmax: &[u32], input_shape: &[usize]) -> Result<Tensor> {
    if argmax.len() != dy.numel() {
        return shape_err("max_pool2x2_backward", "argmax and dY lengths differ");
    }
    let n: usize = input_shape.iter().product();
    let mut dx = vec![0f32; n];
    // Windows do not overlap (stride = kernel): plain scatter.
    for (&a, &g) in argmax.iter().zip(dy.as_slice()) {
        if a as usize >= n {
            return shape_err("max_pool2x2_backward", "argmax index out of range");
        }
        dx[a as usize] += g;
    }
    Tensor::from_vec(input_shape, dx, dy.device())
}

/// Average pool with kernel = stride = `k`.
pub fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    let (b, c, h, w) = nchw("avg_pool", x)?;
    if k == 0 || h < k || w < k {
        return shape_err("avg_pool", format!("kernel {k} does not fit {h}x{w}"));
    }
    let (oh, ow) = (h / k, w / k);
    let xs = x.as_slice();
    let inv = 1.0 / (k * k) as f32;
    let mut y = vec![0f32; b * c * oh * ow];
    y.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, yp)| {
            let p = &xs[plane * h * w..][..h * w];
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = 0f32;
                    for di in 0..k {
                        for dj in 0..k {
                            s += p[(i * k + di) * w + j * k + dj];
                        }
                    }
                    yp[i * ow + j] = s * inv;
                }
            }
        });
    Tensor::from_vec(&[b, c, oh, ow], y, x.device())
}

/// Backward of [`avg_pool`].
pub fn avg_pool_backward(dy: &Tensor, k: usize, input_shape: &[usize]) -> Result<Tensor> {
    let &[b, c, h, w] = input_shape else {
        return shape_err("avg_pool_backward", "input shape must be [B,C,H,W]");
    };
    let (oh, ow) = (h / k.max(1), w / k.max(1));
    dy.expect_shape("avg_pool_backward dY", &[b, c, oh, ow])?;
    let inv = 1.0 / (k * k) as f32;
    let g = dy.as_slice();
    let mut dx = vec![0f32; b * c * h * w];
    dx.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, dp)| {
            let gp = &g[plane * oh * ow..][..oh * ow];
            for i in 0..oh * k {
                for j in 0..ow * k {
                    dp[i * w + j] = gp[(i / k) * ow + j / k] * inv;
                }
            }
        });
    Tensor::from_vec(input_shape, dx, dy.device())
}

/// Global average pool `[B,C,H,W] -> [B,C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = nchw("global_avg_pool", x)?;
    let hw = h * w;
    let y: Vec<f32> = x
        .as_slice()
        .par_chunks(hw.max(1))
        .map(|p| p.iter().sum::<f32>() / hw as f32)
        .collect();
    Tensor::from_vec(&[b, c], y, x.device())
}

/// Backward of [`global_avg_pool`].
pub fn global_avg_pool_backward(dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
    let &[b, c, h, w] = input_shape else {
        return shape_err("global_avg_pool_backward", "input shape must be [B,C,H,W]");
    };
    dy.expect_shape("global_avg_pool_backward dY", &[b, c])?;
    let hw = h * w;
    let g = dy.as_slice();
    let mut dx = vec![0f32; b * c * hw];
    dx.par_chunks_mut(hw.max(1))
        .enumerate()
        .for_each(|(i, p)| p.iter_mut().for_each(|v| *v = g[i] / hw as f32));
    Tensor::from_vec(input_shape, dx, dy.device())
}
