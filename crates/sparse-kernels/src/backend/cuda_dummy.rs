//! The CUDA storage of a build without the `cuda` feature: an uninhabited type, so no CUDA
//! tensor can be created and every match arm on it is statically unreachable.

use std::marker::PhantomData;

use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::tensor::Elem;

/// The message every CUDA request gets in a build without the `cuda` feature.
pub const CUDA_UNAVAILABLE: &str =
    "CUDA not available: this build of sparse-kernels has no CUDA backend (rebuild with `--features cuda`)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Never {}

/// Device memory on a CUDA GPU (none can exist in this build).
#[derive(Debug, Clone, PartialEq)]
pub struct CudaStorage<T> {
    never: Never,
    _t: PhantomData<T>,
}

impl<T: Elem> CudaStorage<T> {
    /// Uploads host data (always an error in this build).
    pub fn from_host(_data: &[T], _ordinal: usize) -> Result<Self> {
        Err(KernelError::DeviceUnavailable(CUDA_UNAVAILABLE.into()))
    }
    /// Copies to the host.
    pub fn to_host(&self) -> Result<Vec<T>> {
        match self.never {}
    }
    /// The device.
    pub fn device(&self) -> Device {
        match self.never {}
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self.never {}
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        match self.never {}
    }
}

/// Whether CUDA device `ordinal` can be used (never, in this build).
pub fn probe(_ordinal: usize) -> Result<()> {
    Err(KernelError::DeviceUnavailable(CUDA_UNAVAILABLE.into()))
}
