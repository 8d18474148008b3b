//! The one error type of `sparse-core`.

use thiserror::Error;

/// Everything that can go wrong in `sparse-core`. Every public function that takes
/// user-controlled input returns this instead of panicking.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A sparsity (or density) outside its valid range.
    #[error("sparsity {value} for {what} is outside [0, 1)")]
    InvalidSparsity { what: String, value: f64 },
    /// Two shapes (or lengths) that must agree do not.
    #[error("shape mismatch in {context}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        context: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A selection asked for more items than its candidate set holds.
    #[error("cannot select {k} items from {available} candidates")]
    NotEnoughCandidates { k: usize, available: usize },
    /// A list of layers was empty where at least one is required.
    #[error("empty layer list: {0}")]
    EmptyLayers(String),
    /// A layer's mask does not hold exactly its budgeted number of nonzeros.
    #[error("layer `{layer}` holds {found} nonzeros, its budget is exactly {expected}")]
    BudgetMismatch {
        layer: String,
        expected: usize,
        found: usize,
    },
    /// A layer name that is unknown, duplicated or otherwise unusable.
    #[error("layer `{layer}`: {reason}")]
    BadLayer { layer: String, reason: String },
    /// A score was NaN; selections are undefined on NaN.
    #[error("score at flat index {index} is NaN")]
    NanScore { index: usize },
    /// A structurally invalid sparse matrix (bad offsets, unsorted or out-of-range columns).
    #[error("invalid sparse matrix: {0}")]
    InvalidFormat(String),
    /// A tensor too large for the 32-bit indices used by the sparse formats.
    #[error("{what} of {size} exceeds the 32-bit index range")]
    TooLarge { what: String, size: usize },
    /// Any other invalid argument (schedule parameters, counts, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result alias for `sparse-core`.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Checks that a sparsity lies in `[0, 1)`.
pub fn check_sparsity(what: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(CoreError::InvalidSparsity {
            what: what.to_string(),
            value,
        })
    }
}
