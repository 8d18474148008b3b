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
//! The CPU backend uses rayon; every reduction has a fixed order, so results do not depend
//! on thread scheduling. [`ExecPolicy`] picks dense or sparse execution by layer density.
//! The CUDA backend (kernels in the top-level `kernels/`) is not in this build:
//! [`Device::cuda`] returns a clear error.

pub mod device;
pub mod error;
pub mod ops;
pub mod policy;
pub(crate) mod simd;
pub mod tensor;
#[cfg(test)]
mod test_util;

pub use device::{Device, DeviceRequest};
pub use error::{KernelError, Result};
pub use ops::sparse::{SparseWeight, WeightGrad, WeightRef};
pub use policy::{ExecMode, ExecPolicy};
pub use sparse_core;
pub use tensor::{Storage, Tensor};

/// Runs a test body once per available device (CPU now; CUDA too once its backend exists):
///
/// ```ignore
/// device_test!(relu_matches_reference, |dev| { let t = Tensor::zeros(&[2], dev)?; ... });
/// ```
#[macro_export]
macro_rules! device_test {
    ($name:ident, |$dev:ident| $body:block) => {
        #[test]
        fn $name() {
            for $dev in $crate::Device::test_devices() {
                let run = || -> ::std::result::Result<(), Box<dyn ::std::error::Error>> {
                    $body
                    Ok(())
                };
                if let Err(e) = run() {
                    panic!("on {:?}: {}", $dev, e);
                }
            }
        }
    };
}
