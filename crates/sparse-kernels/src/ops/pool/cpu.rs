//! Pooling on the CPU: one rayon task per (image, channel) plane.

use rayon::prelude::*;

use super::{nchw, PoolOps};
use crate::backend::CpuBackend;
use crate::error::{shape_err, Result};
use crate::tensor::{IndexTensor, Tensor};

impl PoolOps for CpuBackend {
    fn max_pool2x2(x: &Tensor) -> Result<(Tensor, IndexTensor)> {
        let (b, c, h, w) = nchw("max_pool2x2", x.shape())?;
        let (oh, ow) = (h / 2, w / 2);
        let xs = x.cpu_data()?;
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
        let shape = [b, c, oh, ow];
        Ok((
            Tensor::from_vec(&shape, y, x.device())?,
            IndexTensor::from_vec(&shape, arg, x.device())?,
        ))
    }

    fn max_pool2x2_backward(
        dy: &Tensor,
        argmax: &IndexTensor,
        input_shape: &[usize],
    ) -> Result<Tensor> {
        let n: usize = input_shape.iter().product();
        let mut dx = vec![0f32; n];
        // Windows do not overlap (stride = kernel): plain scatter.
        for (&a, &g) in argmax.cpu_data()?.iter().zip(dy.cpu_data()?) {
            if a as usize >= n {
                return shape_err("max_pool2x2_backward", "argmax index out of range");
            }
            dx[a as usize] += g;
        }
        Tensor::from_vec(input_shape, dx, dy.device())
    }

    fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
        let (b, c, h, w) = nchw("avg_pool", x.shape())?;
        let (oh, ow) = (h / k, w / k);
        let xs = x.cpu_data()?;
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

    fn avg_pool_backward(dy: &Tensor, k: usize, input_shape: &[usize]) -> Result<Tensor> {
        let (b, c, h, w) = nchw("avg_pool_backward", input_shape)?;
        let (oh, ow) = (h / k, w / k);
        let inv = 1.0 / (k * k) as f32;
        let g = dy.cpu_data()?;
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

    fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = nchw("global_avg_pool", x.shape())?;
        let hw = h * w;
        let y: Vec<f32> = x
            .cpu_data()?
            .par_chunks(hw.max(1))
            .map(|p| p.iter().sum::<f32>() / hw as f32)
            .collect();
        Tensor::from_vec(&[b, c], y, x.device())
    }

    fn global_avg_pool_backward(dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
        let (b, c, h, w) = nchw("global_avg_pool_backward", input_shape)?;
        let hw = h * w;
        let g = dy.cpu_data()?;
        let mut dx = vec![0f32; b * c * hw];
        dx.par_chunks_mut(hw.max(1))
            .enumerate()
            .for_each(|(i, p)| p.iter_mut().for_each(|v| *v = g[i] / hw as f32));
        Tensor::from_vec(input_shape, dx, dy.device())
    }
}
