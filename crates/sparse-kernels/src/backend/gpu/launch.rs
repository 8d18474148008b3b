//! Launch helpers for the families' `cuda.rs`: an argument list in cuLaunchKernel's layout,
//! grid sizes, and device views of tensors.
//!
//! Kernel parameters follow one convention (see `kernels/common.cuh`): device pointers,
//! `long long` for every count or index, `float` / `double` scalars.

use std::ffi::c_void;
use std::sync::Arc;

use super::runtime::{DevPtr, GemmCall, LaunchDims};
use super::sources::Family;
use super::GpuContext;
use crate::error::{KernelError, Result};
use crate::mask::DeviceMask;
use crate::tensor::{Elem, Storage, TensorOf};

/// Threads per block of the 1-D kernels (`BLOCK` in `common.cuh`).
pub(crate) const BLOCK: u32 = 256;
/// At most this many blocks: larger inputs are covered by grid-stride loops.
const MAX_BLOCKS: usize = 4096;

/// The kernel arguments, each in its own 8-byte slot.
#[derive(Default)]
pub(crate) struct Args {
    slots: Vec<u64>,
}

impl Args {
    pub(crate) fn new() -> Self {
        Args::default()
    }
    /// A device pointer.
    pub(crate) fn ptr(mut self, p: DevPtr) -> Self {
        self.slots.push(p);
        self
    }
    /// A tensor's device address.
    pub(crate) fn t<T: Elem>(self, t: &TensorOf<T>) -> Result<Self> {
        Ok(self.ptr(dptr(t)?))
    }
    /// A `long long`.
    pub(crate) fn i(mut self, v: usize) -> Self {
        self.slots.push(v as u64);
        self
    }
    /// A `float` (low 4 bytes of the slot, little-endian).
    pub(crate) fn f(mut self, v: f32) -> Self {
        self.slots.push(v.to_bits() as u64);
        self
    }
    /// A `double`.
    pub(crate) fn d(mut self, v: f64) -> Self {
        self.slots.push(v.to_bits());
        self
    }
}

/// The device address of a tensor on a CUDA device.
pub(crate) fn dptr<T: Elem>(t: &TensorOf<T>) -> Result<DevPtr> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s.ptr()),
        Storage::Cpu(_) => Err(KernelError::InvalidArgument(
            "a CPU tensor was given to a CUDA kernel".into(),
        )),
    }
}

/// The context of a tensor on a CUDA device.
pub(crate) fn ctx_of<T: Elem>(t: &TensorOf<T>) -> Result<Arc<GpuContext>> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s.ctx().clone()),
        Storage::Cpu(_) => Err(KernelError::InvalidArgument(
            "a CPU tensor was given to a CUDA kernel".into(),
        )),
    }
}

/// The device copy of a mask's words.
pub(crate) fn words(m: &DeviceMask) -> Result<DevPtr> {
    match m.device_words() {
        Some(w) => dptr(w),
        None => Err(KernelError::InvalidArgument(
            "a CPU mask was given to a CUDA kernel".into(),
        )),
    }
}

/// A 1-D launch covering `n` items with grid-stride loops.
pub(crate) fn grid_1d(n: usize) -> LaunchDims {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchDims {
        grid: [blocks, 1, 1],
        block: [BLOCK, 1, 1],
        shared_bytes: 0,
    }
}

/// One block of [`BLOCK`] threads per item (per channel, per row, ...).
pub(crate) fn block_per(items: usize) -> LaunchDims {
    LaunchDims {
        grid: [items.max(1) as u32, 1, 1],
        block: [BLOCK, 1, 1],
        shared_bytes: 0,
    }
}

impl GpuContext {
    /// Launches `kernel` of `family`.
    pub(crate) fn launch(
        &self,
        family: Family,
        kernel: &str,
        dims: LaunchDims,
        mut args: Args,
    ) -> Result<()> {
        let mut params: Vec<*mut c_void> = args
            .slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        // SAFETY: each family's `cuda.rs` passes the kernel's parameters in order, with the
        // sizes of the convention above, and addresses of live tensors sized for the launch
        // (its argument checks ran before the dispatch).
        unsafe { self.runtime().launch(family, kernel, &dims, &mut params) }
    }

    /// Row-major SGEMM on device buffers (cuBLAS, or the CPU GEMM when emulated).
    pub(crate) fn gemm(&self, g: GemmCall) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        // SAFETY: callers pass buffers sized by the shapes they checked.
        unsafe { self.runtime().gemm(&g) }
    }
}
