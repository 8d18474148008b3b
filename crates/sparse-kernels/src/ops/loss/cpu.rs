//! Cross-entropy and accuracy on the CPU (f64 per row, rows in parallel, summed in order).

use rayon::prelude::*;

use super::{CrossEntropy, LossOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor};

impl LossOps for CpuBackend {
    fn softmax_cross_entropy(
        logits: &Tensor,
        labels: &IndexTensor,
        smoothing: f32,
    ) -> Result<CrossEntropy> {
        let (b, k) = (logits.shape()[0], logits.shape()[1]);
        let mut grad = vec![0f32; b * k];
        let off = smoothing as f64 / k as f64;
        let on = 1.0 - smoothing as f64 + off;
        let losses: Vec<f64> = grad
            .par_chunks_mut(k)
            .zip(logits.cpu_data()?.par_chunks(k))
            .zip(labels.cpu_data()?.par_iter())
            .map(|((g, z), &y)| {
                let max = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
                let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
                let lse = max + sum.ln();
                let mut loss = 0f64;
                for (j, (gj, &zj)) in g.iter_mut().zip(z).enumerate() {
                    let q = if j == y as usize { on } else { off };
                    let logp = zj as f64 - lse;
                    loss -= q * logp;
                    *gj = ((logp.exp() - q) / b as f64) as f32;
                }
                loss
            })
            .collect();
        Ok(CrossEntropy {
            loss: losses.iter().sum::<f64>() / b as f64,
            dlogits: Tensor::from_vec(&[b, k], grad, logits.device())?,
        })
    }

    fn topk_correct(logits: &Tensor, labels: &IndexTensor, top: usize) -> Result<usize> {
        let k = logits.shape()[1];
        Ok(logits
            .cpu_data()?
            .chunks(k.max(1))
            .zip(labels.cpu_data()?)
            .filter(|(z, &y)| {
                let zy = z[y as usize];
                let rank = z
                    .iter()
                    .enumerate()
                    .filter(|&(j, &v)| v > zy || (v == zy && j < y as usize))
                    .count();
                rank < top
            })
            .count())
    }

    fn max_label(labels: &IndexTensor) -> Result<u32> {
        Ok(labels.cpu_data()?.iter().copied().max().unwrap_or(0))
    }
}
