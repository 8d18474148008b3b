//! Softmax cross-entropy with label smoothing (fused forward + backward) and accuracy.

use rayon::prelude::*;

use crate::error::{shape_err, KernelError, Result};
use crate::tensor::Tensor;

/// Loss value and gradient of [`softmax_cross_entropy`].
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    /// Mean loss over the batch.
    pub loss: f64,
    /// `∂loss/∂logits = (softmax − q) / B`, with `q = (1−ε)·onehot + ε/K`.
    pub dlogits: Tensor,
}

fn check(logits: &Tensor, labels: &[u32]) -> Result<(usize, usize)> {
    let &[b, k] = logits.shape() else {
        return shape_err(
            "cross_entropy",
            format!("logits must be [B, K], got {:?}", logits.shape()),
        );
    };
    if labels.len() != b {
        return shape_err(
            "cross_entropy",
            format!("{} labels for a batch of {b}", labels.len()),
        );
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(KernelError::InvalidArgument(format!(
            "label {l} out of range for {k} classes"
        )));
    }
    Ok((b, k))
}

/// Mean softmax cross-entropy with label smoothing `smoothing ∈ [0, 1)` and its gradient.
pub fn softmax_cross_entropy(
    logits: &Tensor,
    labels: &[u32],
    smoothing: f32,
) -> Result<CrossEntropy> {
    let (b, k) = check(logits, labels)?;
    if !(0.0..1.0).contains(&smoothing) {
        return Err(KernelError::InvalidArgument(format!(
            "label smoothing {smoothing} outside [0, 1)"
        )));
    }
    if b == 0 || k == 0 {
        return shape_err("cross_entropy", "empty batch or no classes");
    }
    let mut grad = vec![0f32; b * k];
    let off = smoothing as f64 / k as f64;
    let on = 1.0 - smoothing as f64 + off;
    let losses: Vec<f64> = grad
        .par_chunks_mut(k)
        .zip(logits.as_slice().par_chunks(k))
        .zip(labels.par_iter())
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

/// Number of rows whose label is among the `top` highest logits (a class ranks above the
/// label if its logit is larger, or equal with a lower class index).
pub fn topk_correct(logits: &Tensor, labels: &[u32], top: usize) -> Result<usize> {
    let (_, k) = check(logits, labels)?;
    Ok(logits
        .as_slice()
        .chunks(k.max(1))
        .zip(labels)
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
