//! [`Param`]: one trainable tensor with its gradient, momentum, mask and cached sparse form,
//! the unit the step protocol ([`crate::step`]) and the methods work on.

use sparse_core::Mask;
use sparse_kernels::{DeviceMask, SparseWeight, Tensor};

use crate::error::Result;
use crate::method::Layer;

/// One trainable tensor. Its value, gradient, momentum and mask live on one device.
pub struct Param {
    /// Unique name (`features.3.weight`, ...).
    pub name: String,
    /// Stored values.
    pub value: Tensor,
    /// Gradient of the last backward.
    pub grad: Tensor,
    /// SGD momentum buffer.
    pub momentum: Tensor,
    /// Whether this is a conv / linear weight.
    pub sparsifiable: bool,
    pub(crate) mask: Option<DeviceMask>,
    sparse: Option<SparseWeight>,
    /// `(mask version, value generation, momentum generation)` right after the last
    /// masked optimizer step, which left the inactive weights and momentum exactly zero.
    /// While all three still match, the next step may update the active entries only.
    pub(crate) zero_off_mask: Option<(u64, u64, u64)>,
}

impl Param {
    /// A parameter with zero gradient and momentum on the value's device.
    pub fn new(name: String, value: Tensor, sparsifiable: bool) -> Result<Param> {
        let z = Tensor::zeros(value.shape(), value.device())?;
        Ok(Param {
            name,
            grad: z.clone(),
            momentum: z,
            value,
            sparsifiable,
            mask: None,
            sparse: None,
            zero_off_mask: None,
        })
    }

    /// The mask (sparse runs only).
    pub fn mask(&self) -> Option<&DeviceMask> {
        self.mask.as_ref()
    }

    /// Installs or replaces the mask (shaped like the value). The only way a mask changes
    /// outside a method's [`Layer`] view; either way the mask's version moves on, so the
    /// cached sparse form is rebuilt before its next use.
    pub fn set_mask(&mut self, mask: Mask) -> Result<()> {
        let mask = mask.reshape(self.value.shape())?;
        match &mut self.mask {
            Some(m) => m.set(mask)?,
            None => self.mask = Some(DeviceMask::new(mask, self.value.device())?),
        }
        Ok(())
    }

    /// Zeroes the stored value off the mask (`W ⊙= M`; no-op without a mask).
    pub fn mask_value(&mut self) -> Result<()> {
        if let Some(m) = &self.mask {
            sparse_kernels::ops::mask_update::apply_mask(&mut self.value, m)?;
        }
        Ok(())
    }

    /// Density of the mask (1 without one).
    pub fn density(&self) -> f64 {
        self.mask.as_ref().map_or(1.0, |m| m.density())
    }

    /// Active weights (all without a mask).
    pub fn nnz(&self) -> usize {
        self.mask
            .as_ref()
            .map_or(self.value.numel(), |m| m.count_ones())
    }

    /// Builds the sparse (CSR) form for the current mask, or refreshes its values from the
    /// stored weight when the structure is current.
    pub fn prepare_sparse(&mut self) -> Result<()> {
        let Some(mask) = &self.mask else {
            return Ok(());
        };
        match &mut self.sparse {
            Some(s) if s.mask_version() == mask.version() => s.refresh(&self.value)?,
            _ => self.sparse = Some(SparseWeight::new(&self.value, mask)?),
        }
        Ok(())
    }

    /// The sparse form, when [`prepare_sparse`](Self::prepare_sparse) built it for the
    /// current mask.
    pub fn sparse(&self) -> Option<&SparseWeight> {
        match (&self.sparse, &self.mask) {
            (Some(s), Some(m)) if s.mask_version() == m.version() => Some(s),
            _ => None,
        }
    }

    /// The method's view of this parameter (masked parameters only).
    pub fn layer(&mut self) -> Option<Layer<'_>> {
        let Param {
            name,
            value,
            grad,
            momentum,
            mask,
            ..
        } = self;
        mask.as_mut().map(|mask| Layer {
            name,
            weight: value,
            mask,
            grad,
            momentum,
        })
    }
}
