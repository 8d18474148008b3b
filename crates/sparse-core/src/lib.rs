//! # sparse-core
//!
//! The foundation of the sparse-training toolkit. Everything here is device-neutral and
//! allocation-light, and nothing panics on user input (invalid arguments return
//! [`CoreError`]):
//!
//! * [`Mask`]: packed bitmasks over a tensor's flat index space.
//! * [`formats`]: CSR ([`Csr`]) and bitmask-compressed ([`BitmaskMatrix`]) storage of the
//!   2-D view of a weight, with lossless conversions and the CSR transpose.
//! * [`budget`]: exact per-layer nonzero budgets and their check.
//! * [`distribution`]: uniform, ER and ERK layer sparsities with dense capping and
//!   overrides, as exact integer counts; [`rng`]: seeded ChaCha masks with those counts.
//! * [`schedule`]: drop-fraction and target-sparsity schedules.
//! * [`select`]: exact top-k / bottom-k over a candidate set (radix select, parallel result
//!   identical to serial), and [`drop_grow`]: the one drop-and-grow routine all dynamic
//!   sparse criteria share.
//!
//! Formulas follow the project specification (`shared/docs/ALGORITHMS.md`, §0).

pub mod budget;
pub mod distribution;
pub mod drop_grow;
pub mod error;
pub mod formats;
pub mod mask;
pub mod rng;
pub mod schedule;
pub mod select;

pub use budget::{Budget, LayerBudget};
pub use distribution::{layer_budget, layer_sparsities, Distribution, LayerShape, Override};
pub use drop_grow::{drop_and_grow, drop_and_grow_with, DropGrow};
pub use error::{CoreError, Result};
pub use formats::{matrix_view, BitmaskMatrix, Csr};
pub use mask::Mask;
pub use rng::{random_mask, random_masks, standard_normal, stream_rng};
pub use schedule::Schedule;
pub use select::{bottom_k, select, top_k, Candidates, Order, Parallelism};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
