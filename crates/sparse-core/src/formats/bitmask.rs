//! Bitmask-compressed matrices: a mask plus the active values packed in flat-index order.

use super::{matrix_view, Csr};
use crate::error::{CoreError, Result};
use crate::mask::Mask;

/// A mask plus the values of its set entries, packed in increasing flat-index order.
/// Costs one bit per position plus one value per active entry: smaller than CSR above
/// roughly 3% density, and it maps directly onto the mask the trainer already keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct BitmaskMatrix {
    mask: Mask,
    values: Vec<f32>,
}

impl BitmaskMatrix {
    /// Builds from a mask and packed values; `values.len()` must equal the mask's popcount.
    pub fn from_parts(mask: Mask, values: Vec<f32>) -> Result<Self> {
        let ones = mask.count_ones();
        if ones != values.len() {
            return Err(CoreError::InvalidFormat(format!(
                "mask has {ones} set entries but {} values were given",
                values.len()
            )));
        }
        Ok(BitmaskMatrix { mask, values })
    }

    /// Packs `dense ⊙ mask` (the structure is the mask).
    pub fn from_dense_masked(dense: &[f32], mask: &Mask) -> Result<Self> {
        mask.check_len("bitmask-compressed from dense + mask", dense.len())?;
        let values = mask.iter_ones().map(|i| dense[i]).collect();
        Ok(BitmaskMatrix {
            mask: mask.clone(),
            values,
        })
    }

    /// Converts a CSR matrix (same structure and values).
    pub fn from_csr(csr: &Csr) -> Self {
        // CSR entries are already in flat-index order (rows ascending, columns ascending).
        BitmaskMatrix {
            mask: csr.to_mask(),
            values: csr.values().to_vec(),
        }
    }

    /// Converts to CSR (same structure and values).
    pub fn to_csr(&self) -> Result<Csr> {
        let (rows, cols) = matrix_view(self.mask.shape());
        let mut row_ptr = vec![0u32; rows + 1];
        let mut col_idx = Vec::with_capacity(self.values.len());
        for i in self.mask.iter_ones() {
            row_ptr[i / cols + 1] += 1;
            col_idx.push((i % cols) as u32);
        }
        for r in 0..rows {
            row_ptr[r + 1] += row_ptr[r];
        }
        Csr::from_parts(self.mask.shape(), row_ptr, col_idx, self.values.clone())
    }

    /// Dense values (zeros off the mask).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.mask.len()];
        for (i, &v) in self.mask.iter_ones().zip(&self.values) {
            out[i] = v;
        }
        out
    }

    /// The structure.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Packed values in flat-index order.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}
