//! The driver runtime of a build without the `cuda` feature: opening a GPU is a clear
//! error. The emulated device (`cuda-emulated`) needs no feature and still runs.

use std::ffi::c_void;

use super::runtime::{DevPtr, GemmCall, LaunchDims, Runtime};
use super::sources::Family;
use crate::error::{KernelError, Result};

/// The message every GPU request gets in a build without the `cuda` feature.
pub const CUDA_UNAVAILABLE: &str = "CUDA not available: this build has no CUDA driver support \
     (rebuild with `--features cuda`; `--device cuda-emulated` runs the kernels on the CPU)";

#[derive(Debug, Clone, Copy)]
enum Never {}

/// No GPU can be opened in this build.
pub struct DriverRuntime {
    never: Never,
}

impl DriverRuntime {
    /// Always an error in this build.
    pub fn new(_ordinal: usize) -> Result<Self> {
        Err(KernelError::DeviceUnavailable(CUDA_UNAVAILABLE.into()))
    }
}

impl Runtime for DriverRuntime {
    fn describe(&self) -> String {
        match self.never {}
    }
    fn alloc_zeroed(&self, _bytes: usize) -> Result<DevPtr> {
        match self.never {}
    }
    unsafe fn free(&self, _ptr: DevPtr, _bytes: usize) {
        match self.never {}
    }
    unsafe fn upload(&self, _dst: DevPtr, _src: &[u8]) -> Result<()> {
        match self.never {}
    }
    unsafe fn download(&self, _src: DevPtr, _dst: &mut [u8]) -> Result<()> {
        match self.never {}
    }
    unsafe fn copy(&self, _dst: DevPtr, _src: DevPtr, _bytes: usize) -> Result<()> {
        match self.never {}
    }
    unsafe fn zero(&self, _dst: DevPtr, _bytes: usize) -> Result<()> {
        match self.never {}
    }
    unsafe fn launch(
        &self,
        _family: Family,
        _kernel: &str,
        _dims: &LaunchDims,
        _params: &mut [*mut c_void],
    ) -> Result<()> {
        match self.never {}
    }
    fn time_ms(&self, _f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        match self.never {}
    }
    unsafe fn gemm(&self, _g: &GemmCall) -> Result<()> {
        match self.never {}
    }
}
