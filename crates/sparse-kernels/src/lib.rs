//! # sparse-kernels
//!
//! The numeric engine of the toolkit: a device-neutral [`Tensor`] whose [`Storage`] enum
//! forwards each op to its backend, and every op that training a sparse ResNet/VGG needs,
//! forward and backward, one module per op family under [`ops`]:
//!
//! | family | ops |
//! |---|---|
//! | [`ops::gemm`] | dense GEMM with transposes and alpha/beta |
//! | [`ops::sparse`] | masked GEMM, SpMM (CSR and CSRᵀ), SDDMM, the [`WeightRef`] operand |
//! | [`ops::conv`] | conv2d forward / backward-to-input / backward-to-weight, dense and sparse |
//! | [`ops::linear`] | linear (+bias) forward and backward |
//! | [`ops::norm`] | BatchNorm2d training (running stats) and evaluation |
//! | [`ops::activation`] | ReLU, residual add |
//! | [`ops::pool`] | 2x2 max-pool, average pool, global average pool |
//! | [`ops::loss`] | fused softmax cross-entropy with label smoothing, top-k accuracy |
//! | [`ops::optim`] | SGD (momentum, Nesterov, weight decay) through masks |
//! | [`ops::mask_update`] | drop-and-grow applied to weights and optimizer state, DST-EE counters |
//!
//! Every tensor's data is a [`Storage`] enum (host `Vec` or CUDA buffer). Each op family
//! names its backend interface once, as a trait (`ElementwiseOps`, `NormOps`, ...)
//! implemented by [`backend::CpuBackend`] and [`backend::CudaBackend`]; the public function
//! checks its arguments and dispatches on the device (see [`backend`]). Host access is the
//! explicit, fallible [`TensorOf::to_host`]. Masks are sparse-core's host [`Mask`] wrapped in
//! a [`DeviceMask`] that mirrors the bitmask words on the device.
//!
//! The CPU backend uses rayon; every reduction has a fixed order, so results do not depend
//! on thread scheduling. [`ExecPolicy`] picks dense or sparse execution by layer density.
//! The CUDA backend launches the kernels of the top-level `kernels/` (compiled by NVRTC for
//! the GPU, see [`nvrtc`]) on [`Device::Cuda`] (feature `cuda`), or runs the same sources
//! compiled as C++ on the host on [`Device::CudaEmulated`] (see [`backend::gpu`]).
//!
//! ```
//! use sparse_kernels::ops::activation::relu;
//! use sparse_kernels::{Device, Tensor};
//!
//! let x = Tensor::from_vec(&[2, 2], vec![-1.0, 2.0, -3.0, 4.0], Device::Cpu)?;
//! assert_eq!(relu(&x)?.to_host()?, vec![0.0, 2.0, 0.0, 4.0]);
//! # Ok::<(), sparse_kernels::KernelError>(())
//! ```
//!
//! [`Mask`]: sparse_core::Mask

/// Run-time dispatched inner loops shared by several op families (declared first so its
/// `dispatch_fma!` macro is visible in the families' own SIMD modules).
#[macro_use]
pub(crate) mod simd;

pub mod backend;
pub mod device;
pub mod error;
pub mod libsearch;
pub mod mask;
pub mod nvrtc;
pub mod ops;
pub mod policy;
pub mod profile;
pub mod selftest;
pub mod tensor;
#[cfg(test)]
mod test_util;
mod uninit;

pub use device::{Device, DeviceRequest};
pub use error::{KernelError, Result};
pub use mask::DeviceMask;
pub use ops::sparse::{SparseWeight, WeightGrad, WeightRef};
pub use policy::{ExecMode, ExecPolicy};
pub use sparse_core;
pub use tensor::{Elem, IndexTensor, Storage, Tensor, TensorOf};

/// Generates one `#[test]` per device from a test body written once against a device
/// (candle's `test_device!`): `name_cpu`; `name_emu` on the emulated CUDA device (every
/// kernel, run on the host: always built, so CI runs it); and `name_cuda` on GPU 0 in builds
/// with the `cuda` feature, skipped with a notice when no GPU can be used.
///
/// ```ignore
/// fn relu_matches_reference(dev: &Device) -> TestResult { ... }
/// test_device!(relu_matches_reference, relu_cpu, relu_cuda, relu_emu);
/// ```
#[macro_export]
macro_rules! test_device {
    ($fn_name:ident, $cpu:ident, $cuda:ident, $emu:ident) => {
        #[test]
        fn $cpu() {
            if let Err(e) = $fn_name(&$crate::Device::Cpu) {
                panic!("on the CPU: {e}");
            }
        }

        #[test]
        fn $emu() {
            let dev = $crate::Device::cuda_emulated()
                .unwrap_or_else(|e| panic!("the emulated CUDA device is unavailable: {e}"));
            if let Err(e) = $fn_name(&dev) {
                panic!("on {dev:?}: {e}");
            }
        }

        #[cfg(feature = "cuda")]
        #[test]
        fn $cuda() {
            match $crate::Device::cuda(0) {
                Ok(dev) => {
                    if let Err(e) = $fn_name(&dev) {
                        panic!("on {dev:?}: {e}");
                    }
                }
                Err(e) => eprintln!("skipped on CUDA: {e}"),
            }
        }
    };
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
