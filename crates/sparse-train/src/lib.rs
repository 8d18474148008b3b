//! # sparse-train
//!
//! Where a user meets the product (filled by the trainer issue): models (MLP, VGG, CIFAR
//! ResNets), data loaders (CIFAR-10/100, MNIST, Fashion-MNIST and a built-in synthetic set),
//! the trainer, atomic checkpoints and the `sparse-train` command-line tool.
//!
//! Depends on `sparse-algos` (and through it on the kernels and core crates).

pub use sparse_algos as algos;
