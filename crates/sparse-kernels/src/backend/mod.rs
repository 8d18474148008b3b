//! Backends: where data lives and which implementation of each op family runs on it.
//!
//! Two backends exist, named by zero-sized types: [`CpuBackend`] (rayon, always built) and
//! [`CudaBackend`]. Every op family under [`crate::ops`] declares one trait (for example
//! [`crate::ops::activation::ElementwiseOps`]) and implements it for both types, in its
//! `cpu.rs` and `cuda.rs`. The family's public functions check their arguments, then
//! dispatch on the operands' device with [`dispatch!`](crate::dispatch). A backend that
//! lacks an implementation is therefore a compile error, and a CUDA implementation that is
//! not written yet returns [`KernelError::Unsupported`](crate::KernelError::Unsupported),
//! never a panic.
//!
//! The CUDA storage is real with the `cuda` feature (cudarc, loaded at run time) and a
//! dummy, uninhabited type without it (candle's pattern): code that matches on
//! [`Storage`](crate::Storage) compiles the same either way, and no CUDA value can exist in
//! a CPU-only build.

#[cfg(feature = "cuda")]
#[path = "cuda.rs"]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_dummy.rs"]
pub mod cuda;

pub use cuda::CudaStorage;

use crate::device::Device;
use crate::error::KernelError;

/// Whether the CUDA backend implements the ops training needs. While it does not,
/// `--device auto` stays on the CPU even when a GPU can be used (`--device cuda` still
/// selects the GPU, and its ops report [`KernelError::Unsupported`]).
pub const CUDA_KERNELS_READY: bool = false;

/// The rayon CPU backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

/// The CUDA backend (kernels in the top-level `kernels/`, compiled by NVRTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaBackend;

/// The error a backend returns for an op it does not implement yet.
pub(crate) fn unsupported(op: &'static str, device: Device) -> KernelError {
    KernelError::Unsupported { op, device }
}

/// Calls `Trait::method(args)` on the backend of `device`:
/// `dispatch!(dev, ElementwiseOps::relu(x))`.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch {
    ($dev:expr, $tr:ident :: $f:ident ( $($a:expr),* $(,)? )) => {
        match $dev {
            $crate::Device::Cpu => <$crate::backend::CpuBackend as $tr>::$f($($a),*),
            $crate::Device::Cuda(_) => <$crate::backend::CudaBackend as $tr>::$f($($a),*),
        }
    };
}
