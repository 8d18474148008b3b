//! Every op training needs, one folder per op family. Each family's `mod.rs` holds the
//! backend trait of the family and the public, device-neutral functions (argument checks,
//! then [`dispatch!`](crate::dispatch) on the device); `cpu.rs` implements the trait with
//! rayon and `cuda.rs` for the CUDA backend (kernels in the top-level `kernels/`).

pub mod activation;
pub mod conv;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod mask_update;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod sparse;
pub(crate) mod transpose;
