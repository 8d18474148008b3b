//! Devices: where a tensor lives and its ops run.

use std::str::FromStr;

use crate::backend::cuda;
use crate::error::{KernelError, Result};

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU (rayon backend).
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
}

impl Device {
    /// The CUDA device `ordinal`, or a clear error when CUDA cannot be used (no `cuda`
    /// feature in this build, no driver, no such GPU).
    pub fn cuda(ordinal: usize) -> Result<Device> {
        cuda::probe(ordinal)?;
        Ok(Device::Cuda(ordinal))
    }

    /// Whether a CUDA device can be used by this build on this machine.
    pub fn cuda_available() -> bool {
        cuda::probe(0).is_ok()
    }

    /// Every device the per-device test harness ([`crate::test_device!`]) runs on: the CPU,
    /// and GPU 0 when this build and machine can use it.
    pub fn test_devices() -> Vec<Device> {
        let mut v = vec![Device::Cpu];
        if let Ok(d) = Device::cuda(0) {
            v.push(d);
        }
        v
    }

    /// Short name used in test names and messages (`cpu`, `cuda`).
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }
}

/// What the user asked for (`--device cpu|cuda|auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// CPU.
    Cpu,
    /// CUDA, or an error when unavailable.
    Cuda,
    /// CUDA when available, else CPU with a notice.
    #[default]
    Auto,
}

impl FromStr for DeviceRequest {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda),
            "auto" => Ok(DeviceRequest::Auto),
            other => Err(KernelError::InvalidArgument(format!(
                "unknown device `{other}` (expected cpu, cuda or auto)"
            ))),
        }
    }
}

impl DeviceRequest {
    /// Resolves the request: the device plus, when `Auto` fell back to CPU, a one-line notice.
    pub fn resolve(self) -> Result<(Device, Option<String>)> {
        match self {
            DeviceRequest::Cpu => Ok((Device::Cpu, None)),
            DeviceRequest::Cuda => Device::cuda(0).map(|d| (d, None)),
            DeviceRequest::Auto => match Device::cuda(0) {
                Ok(d) if crate::backend::CUDA_KERNELS_READY => Ok((d, None)),
                Ok(_) => Ok((
                    Device::Cpu,
                    Some(
                        "a GPU is available, but the CUDA backend's kernels are not written yet; \
                         running on the CPU"
                            .into(),
                    ),
                )),
                Err(e) => Ok((Device::Cpu, Some(format!("{e}; running on the CPU")))),
            },
        }
    }
}
