//! # sparse-kernels
//!
//! The numeric engine (filled by the kernels issue): a device-neutral tensor API with every
//! op that training a sparse ResNet/VGG needs, forward and backward — dense, masked and
//! sparse GEMM (SpMM, SDDMM), conv2d with dense and sparse-weight paths, batch-norm,
//! pooling, softmax cross-entropy, SGD through masks, and mask-update support — with a rayon
//! CPU backend and a CUDA backend whose kernels live in the top-level `kernels/*.cu` and are
//! compiled at run time by NVRTC.
//!
//! Depends only on `sparse-core` (masks, formats, selection).

pub use sparse_core as core;
