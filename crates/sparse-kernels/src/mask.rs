//! [`DeviceMask`]: a layer's mask as ops see it. sparse-core's host [`Mask`] stays the exact
//! source of truth; on a GPU the bitmask words are mirrored in device memory so kernels can
//! read them. Every change goes through [`DeviceMask::set`], which re-mirrors the words and
//! takes a new [`version`](DeviceMask::version), so caches built from a mask (CSR forms)
//! know when they are stale.

use std::sync::atomic::{AtomicU64, Ordering};

use sparse_core::Mask;

use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::tensor::TensorOf;

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// A mask with a device copy of its words (none on the CPU, where ops read the host mask).
#[derive(Debug, Clone)]
pub struct DeviceMask {
    host: Mask,
    words: Option<TensorOf<u64>>,
    device: Device,
    version: u64,
    /// Set entries of `host` (counted once per mask: layers ask for the density on every
    /// pass).
    ones: usize,
}

impl DeviceMask {
    /// Places `mask` on `device`.
    pub fn new(mask: Mask, device: Device) -> Result<Self> {
        let words = Self::mirror(&mask, device)?;
        Ok(DeviceMask {
            ones: mask.count_ones(),
            host: mask,
            words,
            device,
            version: next_version(),
        })
    }

    /// A CPU mask.
    pub fn cpu(mask: Mask) -> Self {
        DeviceMask {
            ones: mask.count_ones(),
            host: mask,
            words: None,
            device: Device::Cpu,
            version: next_version(),
        }
    }

    fn mirror(mask: &Mask, device: Device) -> Result<Option<TensorOf<u64>>> {
        match device {
            Device::Cpu => Ok(None),
            d => Ok(Some(TensorOf::from_vec(
                &[mask.words().len()],
                mask.words().to_vec(),
                d,
            )?)),
        }
    }

    /// Replaces the mask (same shape), refreshing the device copy and the version.
    pub fn set(&mut self, mask: Mask) -> Result<()> {
        if mask.shape() != self.host.shape() {
            return shape_err(
                "mask set",
                format!("new mask {:?} vs {:?}", mask.shape(), self.host.shape()),
            );
        }
        self.words = Self::mirror(&mask, self.device)?;
        self.ones = mask.count_ones();
        self.host = mask;
        self.version = next_version();
        Ok(())
    }

    /// The host mask (exact source of truth).
    pub fn mask(&self) -> &Mask {
        &self.host
    }

    /// The device copy of the bitmask words (`None` on the CPU).
    pub fn device_words(&self) -> Option<&TensorOf<u64>> {
        self.words.as_ref()
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A process-unique id of the current contents; changes on every [`set`](Self::set).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of set entries ([`Mask::count_ones`], counted when the mask was set).
    pub fn count_ones(&self) -> usize {
        self.ones
    }

    /// Fraction of set entries ([`Mask::density`], from the count kept with the mask).
    pub fn density(&self) -> f64 {
        if self.host.is_empty() {
            1.0
        } else {
            self.ones as f64 / self.host.len() as f64
        }
    }
}

/// Reads go to the host mask (the source of truth); writes only through [`DeviceMask::set`].
impl std::ops::Deref for DeviceMask {
    type Target = Mask;
    fn deref(&self) -> &Mask {
        &self.host
    }
}
