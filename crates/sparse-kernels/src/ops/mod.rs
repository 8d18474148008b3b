//! Every op training needs, one module per op family. Each family holds the public,
//! device-neutral functions (shape checks, docs, tests) and a `cpu` module with the rayon
//! implementation; the CUDA backend adds a `cuda` module and a `kernels/<family>.cu`.

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
