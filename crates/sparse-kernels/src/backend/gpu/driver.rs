//! The CUDA driver runtime: cudarc 0.19 with libcuda loaded at run time (no toolkit needed to
//! build), one stream per device, kernels compiled by NVRTC ([`crate::nvrtc`]) for the
//! device's own compute capability on first use, and cuBLAS for GEMM ([`super::cublas`]).
//!
//! Verified only on a GPU: CI has none, so this file is compiled and linted there, and the
//! code above it runs on the emulated device (see docs/cuda.md).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use super::cublas::Cublas;
use super::runtime::{DevPtr, GemmCall, LaunchDims, Runtime};
use super::sources::Family;
use crate::error::{KernelError, Result};

fn driver_err(what: &str, e: impl std::fmt::Debug) -> KernelError {
    KernelError::Backend(format!("CUDA {what}: {e:?}"))
}

/// A loaded module and its kernels.
type Loaded = (Arc<CudaModule>, HashMap<String, CudaFunction>);

/// GPU `ordinal` through the driver.
pub struct DriverRuntime {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Cublas,
    arch: (i32, i32),
    name: String,
    modules: Mutex<HashMap<Family, Loaded>>,
}

// SAFETY: every use of the context binds it to the calling thread first, and all work goes
// to the one stream; the cuBLAS handle is only used under that stream.
unsafe impl Send for DriverRuntime {}
unsafe impl Sync for DriverRuntime {}

/// Whether the driver library can be loaded (checked before cudarc, which panics without it).
fn probe_driver() -> Result<()> {
    // SAFETY: only tries to open the driver library by its known names.
    let found = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() })
        .unwrap_or(false);
    if !found {
        return Err(KernelError::DeviceUnavailable(
            "CUDA not available: the NVIDIA driver library (libcuda.so.1) was not found".into(),
        ));
    }
    Ok(())
}

impl DriverRuntime {
    /// Opens GPU `ordinal`; a clear error when there is no driver, no such GPU or no NVRTC.
    pub fn new(ordinal: usize) -> Result<Self> {
        probe_driver()?;
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| KernelError::DeviceUnavailable("CUDA driver could not be loaded".into()))?
            .map_err(|e| KernelError::DeviceUnavailable(format!("CUDA device {ordinal}: {e:?}")))?;
        crate::nvrtc::nvrtc()?;
        let stream = ctx.default_stream();
        let blas = Cublas::new(stream.cu_stream() as *mut std::ffi::c_void)?;
        let arch = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(DriverRuntime {
            ctx,
            stream,
            blas,
            arch,
            name,
            modules: Mutex::new(HashMap::new()),
        })
    }

    fn function(&self, family: Family, kernel: &str) -> Result<CudaFunction> {
        let mut map = self
            .modules
            .lock()
            .map_err(|_| KernelError::Backend("CUDA module table poisoned".into()))?;
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(family) {
            slot.insert(self.load(family)?);
        }
        map[&family].1.get(kernel).cloned().ok_or_else(|| {
            KernelError::Backend(format!("{} has no kernel {kernel}", family.file()))
        })
    }

    fn load(&self, family: Family) -> Result<Loaded> {
        let opts = super::sources::nvrtc_options(self.arch);
        let out = crate::nvrtc::nvrtc()?.compile(&family.source(), family.file(), &opts)?;
        let ptx = out.ptx.ok_or_else(|| {
            KernelError::Backend(format!("NVRTC gave no PTX for {}", family.file()))
        })?;
        let module = self
            .ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(|e| driver_err(&format!("loading {}", family.file()), e))?;
        let mut fns = HashMap::new();
        for k in family.kernels() {
            let f = module
                .load_function(&k)
                .map_err(|e| driver_err(&format!("kernel {k}"), e))?;
            fns.insert(k, f);
        }
        Ok((module, fns))
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_err("context", e))
    }
}

impl Runtime for DriverRuntime {
    fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        self.bind()?;
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .stream
            .record_event(timing)
            .map_err(|e| driver_err("event", e))?;
        f()?;
        let end = self
            .stream
            .record_event(timing)
            .map_err(|e| driver_err("event", e))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| driver_err("event timing", e))?;
        Ok(ms as f64)
    }

    fn describe(&self) -> String {
        let nvrtc = match crate::nvrtc::nvrtc() {
            Ok(n) => format!(
                "NVRTC {}.{} from {}",
                n.version().0,
                n.version().1,
                n.path()
            ),
            Err(e) => e.to_string(),
        };
        format!(
            "{}, sm_{}{}, {nvrtc}, {}",
            self.name,
            self.arch.0,
            self.arch.1,
            self.blas.describe()
        )
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<DevPtr> {
        self.bind()?;
        let s = self.stream.cu_stream();
        // SAFETY: a fresh allocation on our stream, zeroed in stream order.
        unsafe {
            let p = result::malloc_async(s, bytes.max(1)).map_err(|e| driver_err("alloc", e))?;
            result::memset_d8_async(p, 0, bytes.max(1), s).map_err(|e| driver_err("memset", e))?;
            Ok(p)
        }
    }

    unsafe fn free(&self, ptr: DevPtr, _bytes: usize) {
        if self.bind().is_ok() {
            let _ = result::free_async(ptr, self.stream.cu_stream());
        }
    }

    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        result::memcpy_htod_async(dst, src, self.stream.cu_stream())
            .map_err(|e| driver_err("upload", e))?;
        // Pageable source: make the copy complete before the caller may free it.
        self.stream
            .synchronize()
            .map_err(|e| driver_err("upload", e))
    }

    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        result::memcpy_dtoh_async(dst, src, self.stream.cu_stream())
            .map_err(|e| driver_err("download", e))?;
        self.stream
            .synchronize()
            .map_err(|e| driver_err("download", e))
    }

    unsafe fn copy(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream())
            .map_err(|e| driver_err("copy", e))
    }

    unsafe fn zero(&self, dst: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        result::memset_d8_async(dst, 0, bytes, self.stream.cu_stream())
            .map_err(|e| driver_err("memset", e))
    }

    unsafe fn launch(
        &self,
        family: Family,
        kernel: &str,
        dims: &LaunchDims,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        let f = self.function(family, kernel)?;
        self.bind()?;
        result::launch_kernel(
            f.cu_function(),
            (dims.grid[0], dims.grid[1], dims.grid[2]),
            (dims.block[0], dims.block[1], dims.block[2]),
            dims.shared_bytes,
            self.stream.cu_stream(),
            params,
        )
        .map_err(|e| driver_err(&format!("launch of {kernel}"), e))
    }

    unsafe fn gemm(&self, g: &GemmCall) -> Result<()> {
        self.bind()?;
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
        let lda = if g.ta { g.m } else { g.k };
        let ldb = if g.tb { g.k } else { g.n };
        self.blas.sgemm(
            g.tb, g.ta, g.n, g.m, g.k, g.alpha, g.b, ldb, g.a, lda, g.beta, g.c, g.n,
        )
    }
}
