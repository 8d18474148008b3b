//! Softmax cross-entropy with label smoothing (fused forward + backward) and accuracy.

mod cpu;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, KernelError, Result};
use crate::tensor::{IndexTensor, Tensor};

/// Loss value and gradient of [`softmax_cross_entropy`].
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    /// Mean loss over the batch (a host scalar, for logging and AGC's regression).
    pub loss: f64,
    /// `∂loss/∂logits = (softmax − q) / B`, with `q = (1−ε)·onehot + ε/K`.
    pub dlogits: Tensor,
}

/// What a backend provides for the loss family (labels already checked in range).
pub trait LossOps {
    /// See [`softmax_cross_entropy`].
    fn softmax_cross_entropy(
        logits: &Tensor,
        labels: &IndexTensor,
        smoothing: f32,
    ) -> Result<CrossEntropy>;
    /// See [`topk_correct`].
    fn topk_correct(logits: &Tensor, labels: &IndexTensor, top: usize) -> Result<usize>;
    /// The largest label (0 when there are none), for the range check.
    fn max_label(labels: &IndexTensor) -> Result<u32>;
}

fn check(logits: &Tensor, labels: &IndexTensor) -> Result<(usize, usize)> {
    let &[b, k] = logits.shape() else {
        return shape_err(
            "cross_entropy",
            format!("logits must be [B, K], got {:?}", logits.shape()),
        );
    };
    logits.same_device("cross_entropy", labels)?;
    if labels.shape() != [b] {
        return shape_err(
            "cross_entropy",
            format!("labels {:?} for a batch of {b}", labels.shape()),
        );
    }
    if b > 0 {
        let l = dispatch!(logits.device(), LossOps::max_label(labels))?;
        if l as usize >= k {
            return Err(KernelError::InvalidArgument(format!(
                "label {l} out of range for {k} classes"
            )));
        }
    }
    Ok((b, k))
}

/// Mean softmax cross-entropy with label smoothing `smoothing ∈ [0, 1)` and its gradient.
pub fn softmax_cross_entropy(
    logits: &Tensor,
    labels: &IndexTensor,
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
    dispatch!(
        logits.device(),
        LossOps::softmax_cross_entropy(logits, labels, smoothing)
    )
}

/// Number of rows whose label is among the `top` highest logits (a class ranks above the
/// label if its logit is larger, or equal with a lower class index).
pub fn topk_correct(logits: &Tensor, labels: &IndexTensor, top: usize) -> Result<usize> {
    check(logits, labels)?;
    dispatch!(logits.device(), LossOps::topk_correct(logits, labels, top))
}
