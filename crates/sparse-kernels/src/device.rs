//! Devices: where a tensor lives and its ops run.

use std::str::FromStr;

use crate::backend::gpu;
use crate::error::{KernelError, Result};

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU (rayon backend).
    Cpu,
    /// A CUDA GPU by ordinal (CUDA driver; builds with the `cuda` feature).
    Cuda(usize),
    /// The CUDA backend with its kernels run on the host (compiled as C++): a slow
    /// correctness tool for machines without a GPU, and how CI runs every kernel.
    CudaEmulated,
}

impl Device {
    /// The CUDA device `ordinal`, or a clear error when it cannot be used (no `cuda`
    /// feature in this build, no driver, no such GPU, no NVRTC).
    pub fn cuda(ordinal: usize) -> Result<Device> {
        gpu::probe(Device::Cuda(ordinal))?;
        Ok(Device::Cuda(ordinal))
    }

    /// The emulated CUDA device, or a clear error when no C++ compiler is found.
    pub fn cuda_emulated() -> Result<Device> {
        gpu::probe(Device::CudaEmulated)?;
        Ok(Device::CudaEmulated)
    }

    /// Whether a CUDA GPU can be used by this build on this machine.
    pub fn cuda_available() -> bool {
        Device::cuda(0).is_ok()
    }

    /// Whether this device runs the CUDA backend (a GPU or the emulation).
    pub fn is_cuda(&self) -> bool {
        !matches!(self, Device::Cpu)
    }

    /// One line naming the hardware behind the device.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("CPU ({} rayon threads)", rayon::current_num_threads()),
            d => match gpu::context(*d) {
                Ok(c) => c.describe(),
                Err(e) => e.to_string(),
            },
        }
    }

    /// Short name used in test names and messages (`cpu`, `cuda`, `cuda-emulated`).
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
            Device::CudaEmulated => "cuda-emulated",
        }
    }
}

/// What the user asked for (`--device cpu|cuda|cuda-emulated|auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// CPU.
    Cpu,
    /// GPU 0, or an error when it cannot be used.
    Cuda,
    /// The CUDA backend emulated on the host (slow; for checking kernels without a GPU).
    CudaEmulated,
    /// GPU 0 when it can be used, else CPU with a notice.
    #[default]
    Auto,
}

impl FromStr for DeviceRequest {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda),
            "cuda-emulated" => Ok(DeviceRequest::CudaEmulated),
            "auto" => Ok(DeviceRequest::Auto),
            other => Err(KernelError::InvalidArgument(format!(
                "unknown device `{other}` (expected cpu, cuda, cuda-emulated or auto)"
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
            DeviceRequest::CudaEmulated => Device::cuda_emulated().map(|d| (d, None)),
            DeviceRequest::Auto => match Device::cuda(0) {
                Ok(d) => Ok((d, None)),
                Err(e) => Ok((Device::Cpu, Some(format!("{e}; running on the CPU")))),
            },
        }
    }
}
