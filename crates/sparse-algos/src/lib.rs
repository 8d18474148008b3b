//! # sparse-algos
//!
//! The sparse-training criteria (filled by the algorithms issue): SET, RigL (+ RigL-ITOP),
//! DST-EE, GMP, GraNet, OptG and FGGP, plus AGC adaptive gradient correction, behind one
//! small trait in the spirit of jaxpruner: a criterion supplies drop and grow scores (or a
//! keep score and a target schedule) and `sparse-core`'s shared drop-and-grow routine does
//! the exact selection.
//!
//! Depends on `sparse-kernels` (and through it `sparse-core`).

pub use sparse_kernels as kernels;
