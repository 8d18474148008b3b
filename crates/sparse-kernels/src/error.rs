//! The error type of `sparse-kernels`.

use thiserror::Error;

/// Everything an op can reject. Ops never panic on user input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KernelError {
    /// Operand shapes do not fit the op.
    #[error("{op}: {msg}")]
    Shape {
        /// The op that rejected its operands.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        msg: String,
    },
    /// The requested device cannot be used.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// Operands live on different devices.
    #[error("{op}: operands on different devices ({a:?} and {b:?})")]
    DeviceMismatch {
        /// The op.
        op: &'static str,
        /// First device.
        a: crate::Device,
        /// Second device.
        b: crate::Device,
    },
    /// The op has no implementation on this device yet.
    #[error("{op} is not supported on {device:?} yet")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// The device.
        device: crate::Device,
    },
    /// The GPU runtime failed: a kernel that does not compile, a failed launch or copy.
    #[error("{0}")]
    Backend(String),
    /// An invalid scalar argument (learning rate, epsilon, label, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// An error from `sparse-core` (masks, formats, selection).
    #[error(transparent)]
    Core(#[from] sparse_core::CoreError),
}

/// Result alias for `sparse-kernels`.
pub type Result<T> = std::result::Result<T, KernelError>;

/// Shorthand for a shape error.
pub(crate) fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(KernelError::Shape {
        op,
        msg: msg.into(),
    })
}
