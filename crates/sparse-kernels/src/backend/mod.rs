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
//! The CUDA backend ([`gpu`]) runs its kernels on one small [`gpu::Runtime`] interface: the
//! CUDA driver for `Device::Cuda(n)` (feature `cuda`; without it, opening a GPU is a clear
//! error) and the host launcher for `Device::CudaEmulated`, which runs the same `.cu`
//! sources compiled as C++ (no GPU needed; that is how CI runs every kernel).

pub mod gpu;

pub use gpu::CudaStorage;

/// The rayon CPU backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

/// The CUDA backend (kernels in the top-level `kernels/`, compiled by NVRTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaBackend;

/// Calls `Trait::method(args)` on the backend of `device`:
/// `dispatch!(dev, ElementwiseOps::relu(x))`.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch {
    ($dev:expr, $tr:ident :: $f:ident ( $($a:expr),* $(,)? )) => {
        match $dev {
            $crate::Device::Cpu => <$crate::backend::CpuBackend as $tr>::$f($($a),*),
            $crate::Device::Cuda(_) | $crate::Device::CudaEmulated => {
                <$crate::backend::CudaBackend as $tr>::$f($($a),*)
            }
        }
    };
}
