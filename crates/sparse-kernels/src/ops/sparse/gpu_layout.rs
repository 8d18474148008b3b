//! The device form of a sparse weight and the sparse kernels that run on it
//! (`kernels/sparse.cu`): Sputnik-style SpMM over row-swizzled CSR, the split SDDMM, and the
//! gather / scatter maps between CSR values and the dense weight.
//!
//! Layout build (once per mask version, i.e. every ΔT steps): the host already holds the
//! CSR structure (the mask is the host's source of truth), so building uploads `row_ptr`,
//! `col_idx`, the row order (rows by decreasing length, ties by index) and the gather map
//! of each form, then gathers the values on the device. A refresh after an optimizer step
//! is two gathers on the device and no host transfer.

use sparse_core::Csr;

use crate::backend::gpu::launch::{ctx_of, dptr, grid_1d, Args, BLOCK};
use crate::backend::gpu::{Family, LaunchDims};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{IndexTensor, Tensor};

const F: Family = Family::Sparse;
/// `SPMM_WARPS` and `SPMM_TILE` of `sparse.cu`.
const SPMM_WARPS: usize = 4;
const SPMM_TILE: usize = 128;
/// `SDDMM_CHUNK` of `sparse.cu`.
const SDDMM_CHUNK: usize = 2048;
/// The largest grid y dimension.
const MAX_GRID_Y: usize = 65_535;

/// One CSR matrix on the device.
#[derive(Debug, Clone)]
pub(crate) struct GpuCsr {
    rows: usize,
    row_ptr: IndexTensor,
    col_idx: IndexTensor,
    /// Rows by decreasing length (Sputnik's row swizzle: long rows start first).
    order: IndexTensor,
    /// Values, in CSR entry order.
    pub(crate) values: Tensor,
    /// Flat index in the dense weight of every entry (the gather / scatter map).
    src: IndexTensor,
}

/// Rows by decreasing number of entries, ties by row index.
fn row_order(a: &Csr) -> Vec<u32> {
    let rp = a.row_ptr();
    let mut order: Vec<u32> = (0..a.rows() as u32).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(rp[r as usize + 1] - rp[r as usize]));
    order
}

impl GpuCsr {
    /// Uploads the structure of `a`; `src[q]` is entry `q`'s flat index in the dense weight
    /// `w`, from which the values are gathered (`None`: upload `a`'s own values).
    pub(crate) fn new(a: &Csr, src: &[u32], w: Option<&Tensor>, dev: Device) -> Result<Self> {
        let nnz = a.nnz();
        let values = match w {
            Some(_) => Tensor::zeros(&[nnz], dev)?,
            None => Tensor::from_vec(&[nnz], a.values().to_vec(), dev)?,
        };
        let g = GpuCsr {
            rows: a.rows(),
            row_ptr: IndexTensor::from_vec(&[a.rows() + 1], a.row_ptr().to_vec(), dev)?,
            col_idx: IndexTensor::from_vec(&[nnz], a.col_idx().to_vec(), dev)?,
            order: IndexTensor::from_vec(&[a.rows()], row_order(a), dev)?,
            values,
            src: IndexTensor::from_vec(&[nnz], src.to_vec(), dev)?,
        };
        if let Some(w) = w {
            g.gather(w)?;
        }
        Ok(g)
    }

    /// Active entries.
    pub(crate) fn nnz(&self) -> usize {
        self.values.numel()
    }

    /// `values[q] = w[src[q]]`.
    pub(crate) fn gather(&self, w: &Tensor) -> Result<()> {
        let nnz = self.nnz();
        if nnz == 0 {
            return Ok(());
        }
        let args = Args::new().t(w)?.t(&self.src)?.t(&self.values)?.i(nnz);
        ctx_of(w)?.launch(F, "csr_gather", grid_1d(nnz), args)
    }

    /// `out[src[q]] = vals[q]` into a zeroed tensor of `shape` (`vals`: this structure's
    /// entry order).
    pub(crate) fn scatter(&self, vals: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let out = Tensor::zeros(shape, vals.device())?;
        let nnz = self.nnz();
        if nnz > 0 {
            let args = Args::new().t(vals)?.t(&self.src)?.t(&out)?.i(nnz);
            ctx_of(vals)?.launch(F, "csr_scatter", grid_1d(nnz), args)?;
        }
        Ok(out)
    }

    /// `out = alpha · A · X + beta · out` for row-major `X` (`cols x n`), `out` `rows x n`.
    pub(crate) fn spmm(&self, alpha: f32, x: &Tensor, beta: f32, out: &Tensor) -> Result<()> {
        let n = x.shape()[1];
        if self.rows == 0 || n == 0 {
            return Ok(());
        }
        let groups = self.rows.div_ceil(SPMM_WARPS).min(MAX_GRID_Y);
        let dims = LaunchDims {
            grid: [n.div_ceil(SPMM_TILE) as u32, groups as u32, 1],
            block: [(32 * SPMM_WARPS) as u32, 1, 1],
            shared_bytes: 0,
        };
        let args = Args::new()
            .t(&self.row_ptr)?
            .t(&self.col_idx)?
            .t(&self.values)?
            .t(&self.order)?
            .t(x)?
            .t(out)?
            .i(self.rows)
            .i(n)
            .f(alpha)
            .f(beta)
            .i(usize::from(dptr(x)? % 16 == 0));
        ctx_of(x)?.launch(F, "csr_spmm_rows", dims, args)
    }

    /// `dY · Xᵀ` at this structure's entries (`dY`: `rows x n`, `X`: `cols x n`), as an
    /// `[nnz]` tensor in entry order.
    pub(crate) fn sddmm(&self, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        let nnz = self.nnz();
        let n = dy.shape()[1];
        let dev = dy.device();
        let out = Tensor::zeros(&[nnz], dev)?;
        if nnz == 0 || n == 0 {
            return Ok(out);
        }
        let chunks = n.div_ceil(SDDMM_CHUNK);
        let part = if chunks == 1 {
            None
        } else {
            Some(Tensor::zeros(&[chunks * nnz], dev)?)
        };
        let dims = LaunchDims {
            grid: [self.rows as u32, chunks as u32, 1],
            block: [BLOCK, 1, 1],
            shared_bytes: 0,
        };
        let ctx = ctx_of(dy)?;
        let args = Args::new()
            .t(&self.row_ptr)?
            .t(&self.col_idx)?
            .t(dy)?
            .t(x)?
            .t(part.as_ref().unwrap_or(&out))?
            .i(n)
            .i(nnz);
        ctx.launch(F, "csr_sddmm_rows", dims, args)?;
        if let Some(part) = part {
            let args = Args::new().t(&part)?.t(&out)?.i(nnz).i(chunks);
            ctx.launch(F, "sddmm_sum", grid_1d(nnz), args)?;
        }
        Ok(out)
    }
}

/// Both forms of a sparse weight on the device.
#[derive(Debug, Clone)]
pub(crate) struct GpuSparse {
    /// `W` (`rows x cols` view).
    pub(crate) fwd: GpuCsr,
    /// `Wᵀ`.
    pub(crate) bwd: GpuCsr,
}

impl GpuSparse {
    /// Uploads both structures and gathers their values from `w`.
    pub(crate) fn new(
        csr: &Csr,
        csr_t: &Csr,
        flat: &[u32],
        perm_t: &[u32],
        w: &Tensor,
    ) -> Result<Self> {
        let flat_t: Vec<u32> = perm_t.iter().map(|&e| flat[e as usize]).collect();
        Ok(GpuSparse {
            fwd: GpuCsr::new(csr, flat, Some(w), w.device())?,
            bwd: GpuCsr::new(csr_t, &flat_t, Some(w), w.device())?,
        })
    }

    /// New values from the dense weight (structure unchanged).
    pub(crate) fn refresh(&self, w: &Tensor) -> Result<()> {
        self.fwd.gather(w)?;
        self.bwd.gather(w)
    }
}

/// `dst (cols x rows) = srcᵀ` for a row-major `rows x cols` device tensor.
pub(crate) fn transpose(src: &Tensor) -> Result<Tensor> {
    let (rows, cols) = (src.shape()[0], src.shape()[1]);
    let dst = Tensor::zeros(&[cols, rows], src.device())?;
    let n = rows * cols;
    if n > 0 {
        let args = Args::new().t(src)?.t(&dst)?.i(rows).i(cols);
        ctx_of(src)?.launch(F, "transpose_2d", grid_1d(n), args)?;
    }
    Ok(dst)
}
