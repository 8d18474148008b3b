//! The CUDA storage: device buffers on one stream per device, through cudarc 0.19 with the
//! driver and NVRTC libraries loaded at run time (no CUDA toolkit needed to build).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::tensor::Elem;

/// One GPU: its context and the stream every op on it is queued on.
#[derive(Debug)]
pub struct CudaDevice {
    /// The device ordinal.
    pub ordinal: usize,
    /// The primary context.
    pub ctx: Arc<CudaContext>,
    /// The stream all work on this device runs on (so it is ordered).
    pub stream: Arc<CudaStream>,
}

fn driver_err(what: &str, e: impl std::fmt::Debug) -> KernelError {
    KernelError::DeviceUnavailable(format!("CUDA {what}: {e:?}"))
}

/// The process-wide device for `ordinal`, created on first use.
pub fn device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    let mut map = DEVICES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| KernelError::DeviceUnavailable("CUDA device table poisoned".into()))?;
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    probe_libraries()?;
    // cudarc panics when a library is missing; the probe above reports that case, and the
    // guard turns any other loader panic into an error.
    let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
        .map_err(|_| KernelError::DeviceUnavailable("CUDA driver could not be loaded".into()))?
        .map_err(|e| driver_err(&format!("device {ordinal}"), e))?;
    let stream = ctx.default_stream();
    let d = Arc::new(CudaDevice {
        ordinal,
        ctx,
        stream,
    });
    map.insert(ordinal, d.clone());
    Ok(d)
}

fn probe_libraries() -> Result<()> {
    // SAFETY: only tries to open the driver library by its known names.
    let found = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() })
        .unwrap_or(false);
    if !found {
        return Err(KernelError::DeviceUnavailable(
            "CUDA not available: the NVIDIA driver library (libcuda.so) was not found".into(),
        ));
    }
    Ok(())
}

/// Whether CUDA device `ordinal` can be used.
pub fn probe(ordinal: usize) -> Result<()> {
    device(ordinal).map(|_| ())
}

/// Device memory on a CUDA GPU.
#[derive(Debug)]
pub struct CudaStorage<T> {
    /// The buffer.
    pub slice: CudaSlice<T>,
    /// Its device.
    pub dev: Arc<CudaDevice>,
}

impl<T: cudarc::driver::DeviceRepr> Clone for CudaStorage<T> {
    fn clone(&self) -> Self {
        // cudarc's own Clone also panics only when the device is out of memory.
        CudaStorage {
            slice: self.slice.try_clone().expect("CUDA device out of memory"),
            dev: self.dev.clone(),
        }
    }
}

impl<T: Elem> CudaStorage<T> {
    /// Uploads host data to device `ordinal`.
    pub fn from_host(data: &[T], ordinal: usize) -> Result<Self> {
        let dev = device(ordinal)?;
        let slice = dev
            .stream
            .clone_htod(data)
            .map_err(|e| driver_err("upload", e))?;
        Ok(CudaStorage { slice, dev })
    }
    /// Copies to the host (synchronises the stream).
    pub fn to_host(&self) -> Result<Vec<T>> {
        self.dev
            .stream
            .clone_dtoh(&self.slice)
            .map_err(|e| driver_err("download", e))
    }
    /// The device.
    pub fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal)
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
}
