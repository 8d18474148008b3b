//! Errors of `sparse-algos`.

use thiserror::Error;

/// What a criterion can reject.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AlgoError {
    /// An invalid hyperparameter or preset.
    #[error("{0}")]
    Config(String),
    /// Saved state that does not fit this method or model.
    #[error("algorithm state: {0}")]
    State(String),
    /// From the kernels.
    #[error(transparent)]
    Kernel(#[from] sparse_kernels::KernelError),
    /// From the core (selection, masks).
    #[error(transparent)]
    Core(#[from] sparse_core::CoreError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, AlgoError>;
