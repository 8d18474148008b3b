//! # sparse-algos
//!
//! The sparse-training criteria of the project specification (`shared/docs/ALGORITHMS.md`)
//! behind one small trait, [`SparseMethod`], in the spirit of jaxpruner: a method decides
//! *when* to act and *which scores* to rank by; the exact selection is always
//! `sparse-core`'s (`drop_and_grow` for the dynamic methods, `select` for the pruners).
//!
//! | method | module | spec |
//! |---|---|---|
//! | SET, SET-orig, RigL, RigL-ITOP, DST-EE | [`dst`] (one struct; they differ in drop/grow rules and schedule) | §1, §2, §2b, §3 |
//! | GMP (per layer or global) | [`gmp`] | §4 |
//! | GraNet | [`granet`] | §5 |
//! | FGGP (+ its annealing comparator) | [`fggp`] | §6 |
//! | OptG | [`optg`] | §7 |
//! | AGC (wraps any method at the optimizer level) | [`agc`] | §8 |
//! | static mask, SNIP (baselines) | [`baselines`] | — |
//!
//! Named presets with each paper's hyperparameters are in [`presets`].

pub mod agc;
pub mod baselines;
pub mod dst;
pub mod error;
pub mod fggp;
pub mod gmp;
pub mod granet;
pub mod method;
pub mod optg;
pub mod param;
pub mod presets;
pub mod step;

pub use error::{AlgoError, Result};
pub use method::{AlgoState, Dense, Layer, LayerReport, SparseMethod, StepInfo, UpdateReport};
pub use param::Param;
pub use presets::{
    paper_interval, preset, scaled_interval, InitSpec, PaperInterval, Preset, PresetContext,
    Properties, ScheduleMode, PRESETS,
};
pub use sparse_kernels;
pub use step::{apply_step, epoch_start, layer_views, Coverage, Decay};
