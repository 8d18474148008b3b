//! The CUDA backend's device side: a [`GpuContext`] per device (its [`Runtime`] and the
//! kernels compiled for it), [`CudaStorage`] (device buffers) and the launch helpers every
//! family's `cuda.rs` uses.
//!
//! `Device::Cuda(n)` runs on the CUDA driver (feature `cuda`); `Device::CudaEmulated` runs
//! the same kernels through the host launcher, on any machine with a C++ compiler.

#[cfg(feature = "cuda")]
mod cublas;
#[cfg(feature = "cuda")]
mod driver;
#[cfg(not(feature = "cuda"))]
#[path = "driver_dummy.rs"]
mod driver;
pub mod host;
pub(crate) mod launch;
pub mod runtime;
pub mod sources;
mod storage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use runtime::{DevPtr, GemmCall, LaunchDims, Runtime};
pub use sources::Family;
pub use storage::CudaStorage;

use crate::device::Device;
use crate::error::{KernelError, Result};

/// One CUDA device (real or emulated) and its runtime.
pub struct GpuContext {
    device: Device,
    rt: Box<dyn Runtime>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({:?})", self.device)
    }
}

impl GpuContext {
    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The runtime.
    pub fn runtime(&self) -> &dyn Runtime {
        self.rt.as_ref()
    }

    /// One line naming the hardware (or the emulation).
    pub fn describe(&self) -> String {
        self.rt.describe()
    }
}

/// The process-wide context of `device` (a CUDA device), created on first use: a clear
/// error, never a panic, when it cannot be used.
pub fn context(device: Device) -> Result<Arc<GpuContext>> {
    type Table = Mutex<HashMap<Device, std::result::Result<Arc<GpuContext>, KernelError>>>;
    static CONTEXTS: OnceLock<Table> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| KernelError::DeviceUnavailable("CUDA device table poisoned".into()))?;
    map.entry(device)
        .or_insert_with(|| {
            let rt: Box<dyn Runtime> = match device {
                Device::Cuda(o) => Box::new(driver::DriverRuntime::new(o)?),
                Device::CudaEmulated => Box::new(host::HostRuntime::new()?),
                Device::Cpu => {
                    return Err(KernelError::InvalidArgument(
                        "the CPU has no GPU context".into(),
                    ))
                }
            };
            Ok(Arc::new(GpuContext { device, rt }))
        })
        .clone()
}

/// Whether CUDA device `device` can be used.
pub fn probe(device: Device) -> Result<()> {
    context(device).map(|_| ())
}

/// Milliseconds of device time the work `f` queues on `device` takes (CUDA events on a
/// GPU), or of wall time on the CPU and the emulated device. For benchmarks: the first
/// call of a kernel includes its compilation, so warm up first.
pub fn time_ms(device: Device, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    match device {
        Device::Cpu => {
            let t = std::time::Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        }
        _ => context(device)?.runtime().time_ms(&mut f),
    }
}
