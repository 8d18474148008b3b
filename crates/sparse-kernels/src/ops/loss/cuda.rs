//! Cross-entropy on CUDA: not implemented yet (the CUDA backend issue adds `kernels/loss.cu`).

use super::{CrossEntropy, LossOps};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor};

impl LossOps for CudaBackend {
    fn softmax_cross_entropy(
        logits: &Tensor,
        _labels: &IndexTensor,
        _smoothing: f32,
    ) -> Result<CrossEntropy> {
        Err(unsupported("softmax_cross_entropy", logits.device()))
    }
    fn topk_correct(logits: &Tensor, _labels: &IndexTensor, _top: usize) -> Result<usize> {
        Err(unsupported("topk_correct", logits.device()))
    }
    fn max_label(labels: &IndexTensor) -> Result<u32> {
        Err(unsupported("max_label", labels.device()))
    }
}
