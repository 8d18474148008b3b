//! # sparse-train
//!
//! Where a user meets the toolkit: models ([`model`]), data ([`data`]), the trainer
//! ([`trainer`]), the run directory ([`run`]), checkpoints and export ([`checkpoint`]), run
//! outputs ([`report`]) and the `sparse-train` command-line tool (`src/main.rs`).

pub mod alloc;
pub mod bench;
pub mod bench_gpu;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod plots;
pub mod profile;
pub mod report;
pub mod run;
pub mod selftest;
pub mod trainer;

pub use sparse_algos as algos;
