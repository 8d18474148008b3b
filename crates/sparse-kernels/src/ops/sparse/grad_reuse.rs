//! Reusing a layer's previous at-mask weight gradient as the next one's output buffer.
//!
//! An at-mask gradient ([`WeightGrad::AtMask`]) is dense in layout but nonzero only on the
//! mask, and the next step with the same mask overwrites exactly those entries. So when the
//! previous gradient is still the one the layer produced (same tensor
//! [`generation`](Tensor::generation)) and the mask is still the one it was produced for
//! (same [`DeviceMask::version`](crate::DeviceMask::version)), it can be written in place:
//! a 98%-sparse layer then no longer clears a dense buffer every step.

use super::WeightGrad;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::Device;

/// What a layer remembers of the at-mask gradient it last produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtMaskGradMemo {
    /// `(tensor generation, mask version)` of the last at-mask gradient.
    last: Option<(u64, u64)>,
}

impl AtMaskGradMemo {
    /// The mask version an at-mask gradient is computed for (`None` for dense gradients).
    pub fn version_of(wgrad: &WeightGrad) -> Option<u64> {
        match wgrad {
            WeightGrad::AtMask(m) => Some(m.version()),
            WeightGrad::Dense => None,
        }
    }

    /// Takes `grad` out (leaving an empty tensor) when it is, unchanged, the host at-mask
    /// gradient recorded for mask version `version`, so zero off that mask. Otherwise
    /// leaves it and returns `None`.
    pub fn take(&mut self, grad: &mut Tensor, version: Option<u64>) -> Option<Tensor> {
        let last = self.last.take()?;
        let ok =
            version.is_some_and(|v| last == (grad.generation(), v)) && grad.device() == Device::Cpu;
        if !ok {
            return None;
        }
        let empty = Tensor::zeros(&[0], Device::Cpu).ok()?;
        Some(std::mem::replace(grad, empty))
    }

    /// Records `grad` as the gradient a backward with mask version `version` produced
    /// (`None`: a dense gradient, which is never reused).
    pub fn record(&mut self, grad: &Tensor, version: Option<u64>) {
        self.last = version.map(|v| (grad.generation(), v));
    }
}

/// `buf` when it is a host tensor of `shape` (a reusable gradient buffer), else a fresh
/// zero host tensor of that shape.
pub(crate) fn host_buffer(buf: Option<Tensor>, shape: &[usize]) -> Result<Tensor> {
    match buf {
        Some(t) if t.shape() == shape && t.device() == Device::Cpu => Ok(t),
        _ => Tensor::zeros(shape, Device::Cpu),
    }
}
