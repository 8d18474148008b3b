//! The one small interface the CUDA backend runs on. Two implementations: the CUDA driver
//! through cudarc (`driver.rs`, feature `cuda`) and the host launcher (`host.rs`), which
//! runs the same `.cu` sources compiled as C++ and serves cuBLAS calls with the CPU GEMM.
//! Everything above it (buffers, launch configurations, argument order) is shared, so the
//! emulated device tests that code too.

use std::ffi::c_void;

use super::sources::Family;
use crate::error::Result;

/// A device address (`CUdeviceptr`; a host address on the emulated device).
pub type DevPtr = u64;

/// Grid, block and dynamic shared memory of a launch (cuLaunchKernel's layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    /// Blocks in x, y, z.
    pub grid: [u32; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

/// A row-major, contiguous `C = alpha·op(A)·op(B) + beta·C` (`op(A)` is `m x k`).
#[derive(Debug, Clone, Copy)]
pub struct GemmCall {
    /// Rows of `C`.
    pub m: usize,
    /// Columns of `C`.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// `A` (`m x k`, or `k x m` when transposed).
    pub a: DevPtr,
    /// Whether `A` is transposed.
    pub ta: bool,
    /// `B` (`k x n`, or `n x k` when transposed).
    pub b: DevPtr,
    /// Whether `B` is transposed.
    pub tb: bool,
    /// Scale of the old `C`.
    pub beta: f32,
    /// `C` (`m x n`), distinct from `A` and `B`.
    pub c: DevPtr,
}

/// What the CUDA backend needs from a device. Every call is queued in order on the
/// device's one stream; `download` waits for it.
pub trait Runtime: Send + Sync {
    /// A one-line description (`NVIDIA H200, sm_90` or `emulated on the host (g++)`).
    fn describe(&self) -> String;
    /// Allocates `bytes` of zeroed memory.
    fn alloc_zeroed(&self, bytes: usize) -> Result<DevPtr>;
    /// Frees an allocation of `bytes`.
    ///
    /// # Safety
    /// `ptr` came from `alloc_zeroed(bytes)` and is not used again.
    unsafe fn free(&self, ptr: DevPtr, bytes: usize);
    /// Copies host bytes to the device.
    ///
    /// # Safety
    /// `dst` points to at least `src.len()` device bytes.
    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()>;
    /// Copies device bytes to the host, after all queued work.
    ///
    /// # Safety
    /// `src` points to at least `dst.len()` device bytes.
    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()>;
    /// Copies `bytes` between device buffers.
    ///
    /// # Safety
    /// Both point to at least `bytes` device bytes.
    unsafe fn copy(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()>;
    /// Sets `bytes` to zero.
    ///
    /// # Safety
    /// `dst` points to at least `bytes` device bytes.
    unsafe fn zero(&self, dst: DevPtr, bytes: usize) -> Result<()>;
    /// Launches `kernel` of `family` with cuLaunchKernel's parameter array.
    ///
    /// # Safety
    /// `params` match the kernel's parameters in number, order and size, and every device
    /// address in them is valid for what the kernel touches.
    unsafe fn launch(
        &self,
        family: Family,
        kernel: &str,
        dims: &LaunchDims,
        params: &mut [*mut c_void],
    ) -> Result<()>;
    /// Milliseconds of device time the work `f` queues takes: CUDA events recorded on the
    /// stream before and after it (the host clock around `f` on the emulated device).
    fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64>;
    /// cuBLAS SGEMM (row-major call, mapped to cuBLAS' column-major convention).
    ///
    /// # Safety
    /// The operands hold the sizes the call implies.
    unsafe fn gemm(&self, g: &GemmCall) -> Result<()>;
}
