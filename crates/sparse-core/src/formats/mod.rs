//! Sparse storage formats for the 2-D view of a weight tensor.
//!
//! A weight of shape `[d0, d1, ..., dk]` is viewed as a `d0 x (d1*...*dk)` matrix: a conv
//! weight `[out, in, kh, kw]` becomes `out x (in*kh*kw)`, a linear weight `[out, in]` stays
//! as it is, and a 1-D tensor `[n]` is one row. Both formats remember the original shape so
//! every conversion is lossless.

mod bitmask;
mod csr;

pub use bitmask::BitmaskMatrix;
pub use csr::Csr;

use crate::error::{CoreError, Result};

/// Rows and columns of the 2-D view of a tensor shape (see the module docs).
pub fn matrix_view(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (1, *n),
        [r, rest @ ..] => (*r, rest.iter().product()),
    }
}

pub(crate) fn check_u32(what: &str, size: usize) -> Result<()> {
    if size > u32::MAX as usize {
        Err(CoreError::TooLarge {
            what: what.into(),
            size,
        })
    } else {
        Ok(())
    }
}
