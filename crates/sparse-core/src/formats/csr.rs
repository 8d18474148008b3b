//! Compressed sparse row matrices.

use rayon::prelude::*;

use super::{check_u32, matrix_view};
use crate::error::{CoreError, Result};
use crate::mask::Mask;

/// Rows per parallel work item when building CSR.
const ROW_BLOCK: usize = 32;

/// A CSR matrix: `row_ptr[r]..row_ptr[r+1]` indexes the column indices (strictly increasing
/// within a row) and values of row `r`. The structure is the mask, not the values: an
/// active weight whose value happens to be 0.0 is still stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    shape: Vec<usize>,
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Builds a CSR matrix from raw parts, validating every structural invariant.
    /// `shape` is the original tensor shape; its 2-D view gives rows and columns.
    pub fn from_parts(
        shape: &[usize],
        row_ptr: Vec<u32>,
        col_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        let (rows, cols) = matrix_view(shape);
        let bad = |m: String| Err(CoreError::InvalidFormat(m));
        if row_ptr.len() != rows + 1 {
            return bad(format!(
                "row_ptr has {} entries, expected rows + 1 = {}",
                row_ptr.len(),
                rows + 1
            ));
        }
        if row_ptr[0] != 0 || *row_ptr.last().unwrap() as usize != col_idx.len() {
            return bad("row_ptr must start at 0 and end at nnz".into());
        }
        if col_idx.len() != values.len() {
            return bad(format!(
                "{} column indices but {} values",
                col_idx.len(),
                values.len()
            ));
        }
        for r in 0..rows {
            let (s, e) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
            if s > e {
                return bad(format!("row_ptr decreases at row {r}"));
            }
            let row = &col_idx[s..e];
            if row.iter().any(|&c| c as usize >= cols) {
                return bad(format!("row {r} has a column index >= {cols}"));
            }
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("row {r} has unsorted or duplicate column indices"));
            }
        }
        Ok(Csr {
            shape: shape.to_vec(),
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// The CSR form of `dense ⊙ mask` whose structure is exactly the mask's set entries.
    /// Rows are built in parallel.
    pub fn from_dense_masked(dense: &[f32], mask: &Mask) -> Result<Self> {
        mask.check_len("CSR from dense + mask", dense.len())?;
        check_u32("tensor size", dense.len())?;
        let shape = mask.shape();
        let (rows, cols) = matrix_view(shape);
        let counts: Vec<u32> = (0..rows)
            .into_par_iter()
            .map(|r| mask.count_ones_in(r * cols, (r + 1) * cols) as u32)
            .collect();
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0u32);
        let mut acc = 0u32;
        for c in counts {
            acc += c;
            row_ptr.push(acc);
        }
        let nnz = acc as usize;
        let mut col_idx = vec![0u32; nnz];
        let mut values = vec![0f32; nnz];
        let blocks = split_rows(&row_ptr, &mut col_idx, &mut values, ROW_BLOCK);
        blocks.into_par_iter().for_each(|(r0, cols_out, vals_out)| {
            let start = r0 * cols;
            let end = (start + ROW_BLOCK * cols).min(rows * cols);
            for (k, i) in mask.iter_ones_in(start, end).enumerate() {
                cols_out[k] = (i % cols) as u32;
                vals_out[k] = dense[i];
            }
        });
        Ok(Csr {
            shape: shape.to_vec(),
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// Dense values (zeros off the structure) in row-major order of the original shape.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let (c, v) = self.row(r);
            for (&c, &v) in c.iter().zip(v) {
                out[r * self.cols + c as usize] = v;
            }
        }
        out
    }

    /// The structure as a mask of the original shape.
    pub fn to_mask(&self) -> Mask {
        let mut m = Mask::zeros(&self.shape);
        for r in 0..self.rows {
            for &c in self.row(r).0 {
                m.set(r * self.cols + c as usize);
            }
        }
        m
    }

    /// The transpose (`cols x rows`, shape `[cols, rows]`), built by a counting sort in O(nnz).
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0u32; self.cols + 1];
        for &c in &self.col_idx {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.cols {
            counts[i + 1] += counts[i];
        }
        let row_ptr = counts.clone();
        let mut next = counts;
        let mut col_idx = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..self.rows {
            let (cs, vs) = self.row(r);
            for (&c, &v) in cs.iter().zip(vs) {
                let dst = next[c as usize] as usize;
                next[c as usize] += 1;
                col_idx[dst] = r as u32;
                values[dst] = v;
            }
        }
        Csr {
            shape: vec![self.cols, self.rows],
            rows: self.cols,
            cols: self.rows,
            row_ptr,
            col_idx,
            values,
        }
    }

    /// Column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (s, e) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.col_idx[s..e], &self.values[s..e])
    }

    /// Original tensor shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Rows of the 2-D view.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns of the 2-D view.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }
    /// Row offsets (`rows + 1` entries).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }
    /// Column index of every stored entry.
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }
    /// Value of every stored entry.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// Mutable values (the structure stays fixed).
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }
}

/// Splits the output arrays into disjoint per-block slices (`block` rows each).
type RowBlock<'a> = (usize, &'a mut [u32], &'a mut [f32]);

fn split_rows<'a>(
    row_ptr: &[u32],
    mut cols: &'a mut [u32],
    mut vals: &'a mut [f32],
    block: usize,
) -> Vec<RowBlock<'a>> {
    let rows = row_ptr.len() - 1;
    let mut out = Vec::with_capacity(rows.div_ceil(block));
    let mut r = 0;
    while r < rows {
        let r_end = (r + block).min(rows);
        let n = (row_ptr[r_end] - row_ptr[r]) as usize;
        let (c, c_rest) = std::mem::take(&mut cols).split_at_mut(n);
        let (v, v_rest) = std::mem::take(&mut vals).split_at_mut(n);
        out.push((r, c, v));
        cols = c_rest;
        vals = v_rest;
        r = r_end;
    }
    out
}
