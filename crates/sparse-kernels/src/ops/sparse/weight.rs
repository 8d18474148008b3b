//! The weight operand of a layer: [`WeightRef`] (dense, masked or sparse execution),
//! [`WeightGrad`] (dense or at-mask weight gradient) and [`SparseWeight`], the CSR form of
//! a masked weight with its cached transpose.

use std::sync::OnceLock;

use sparse_core::{matrix_view, Csr, Mask};

use super::blocked::BlockedCsr;
use super::check_mask;
use super::cpu;
use super::gpu_layout::GpuSparse;
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::mask::DeviceMask;
use crate::tensor::Tensor;

/// A sparse weight ready for execution: CSR, its transpose, and the maps that refresh both
/// from the dense master weight in O(nnz) after each optimizer step. On AVX-512 machines the
/// first SpMM with either form also builds a cache-blocked copy of it (where the density
/// makes that faster), refreshed with the rest from then on.
///
/// The structure is built on the host (the mask is the host's source of truth). For a
/// weight on a CUDA device both forms are also uploaded once per mask version
/// ([`GpuSparse`]: row-swizzled CSR for the Sputnik-style kernels), and a refresh gathers
/// the new values on the device: the host CSR then keeps its structure but not current
/// values; read them with [`SparseWeight::values`].
#[derive(Debug, Clone)]
pub struct SparseWeight {
    csr: Csr,
    csr_t: Csr,
    blocked: OnceLock<Option<BlockedCsr>>,
    blocked_t: OnceLock<Option<BlockedCsr>>,
    /// Flat index in the dense weight of every CSR entry.
    flat: Vec<u32>,
    /// For every entry of `csr_t`, its entry index in `csr`.
    perm_t: Vec<u32>,
    /// The mask version the structure was built from.
    mask_version: u64,
    /// The device of the dense weight.
    device: Device,
    /// Both forms on the device, for a weight on a CUDA device.
    gpu: Option<GpuSparse>,
}

impl SparseWeight {
    /// Builds from a dense weight and its mask (the structure is the mask).
    pub fn new(w: &Tensor, mask: &DeviceMask) -> Result<Self> {
        check_mask("sparse weight", w, mask)?;
        let m = mask.mask();
        let csr = match w.device() {
            Device::Cpu => Csr::from_dense_masked(w.cpu_data()?, m)?,
            _ => Csr::from_dense_masked(&w.to_host()?, m)?,
        };
        let flat: Vec<u32> = m.iter_ones().map(|i| i as u32).collect();
        let (csr_t, perm_t) = cpu::transpose_with_perm(&csr);
        let gpu = match w.device() {
            Device::Cpu => None,
            _ => Some(GpuSparse::new(&csr, &csr_t, &flat, &perm_t, w)?),
        };
        Ok(SparseWeight {
            gpu,
            csr,
            csr_t,
            blocked: OnceLock::new(),
            blocked_t: OnceLock::new(),
            flat,
            perm_t,
            mask_version: mask.version(),
            device: w.device(),
        })
    }

    /// The version of the mask this structure was built from ([`DeviceMask::version`]).
    pub fn mask_version(&self) -> u64 {
        self.mask_version
    }

    /// The device of the weight it was built from.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Copies the current values of the dense weight into both CSR forms (structure fixed).
    pub fn refresh(&mut self, w: &Tensor) -> Result<()> {
        if w.shape() != self.csr.shape() {
            return shape_err(
                "sparse weight refresh",
                format!("weight {:?} vs structure {:?}", w.shape(), self.csr.shape()),
            );
        }
        if w.device() != self.device {
            return Err(crate::error::KernelError::DeviceMismatch {
                op: "sparse weight refresh",
                a: self.device,
                b: w.device(),
            });
        }
        if let Some(g) = &self.gpu {
            return g.refresh(w);
        }
        let src = w.cpu_data()?;
        let vals = self.csr.values_mut();
        for (v, &f) in vals.iter_mut().zip(&self.flat) {
            *v = src[f as usize];
        }
        let vals = self.csr.values();
        let tvals: Vec<f32> = self.perm_t.iter().map(|&e| vals[e as usize]).collect();
        self.csr_t.values_mut().copy_from_slice(&tvals);
        if let Some(Some(b)) = self.blocked.get_mut() {
            b.refresh(&self.csr);
        }
        if let Some(Some(b)) = self.blocked_t.get_mut() {
            b.refresh(&self.csr_t);
        }
        Ok(())
    }

    /// The current values in [`csr`](Self::csr)'s entry order, from wherever they live.
    pub fn values(&self) -> Result<Vec<f32>> {
        match &self.gpu {
            Some(g) => g.fwd.values.to_host(),
            None => Ok(self.csr.values().to_vec()),
        }
    }

    /// The current values in [`csr_t`](Self::csr_t)'s entry order.
    pub fn values_t(&self) -> Result<Vec<f32>> {
        match &self.gpu {
            Some(g) => g.bwd.values.to_host(),
            None => Ok(self.csr_t.values().to_vec()),
        }
    }

    /// The device form, for a weight on a CUDA device.
    pub(crate) fn gpu(&self) -> Option<&GpuSparse> {
        self.gpu.as_ref()
    }

    /// The CSR form (`rows x cols` view of the weight). On a CUDA device its values are the
    /// ones at build time; [`values`](Self::values) has the current ones.
    pub fn csr(&self) -> &Csr {
        &self.csr
    }

    /// The transposed CSR form.
    pub fn csr_t(&self) -> &Csr {
        &self.csr_t
    }

    /// `out = alpha · W · X + beta · out` (`W` or, with `transposed`, `Wᵀ`), through the
    /// cache-blocked layout when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spmm(
        &self,
        transposed: bool,
        x: &[f32],
        n: usize,
        alpha: f32,
        beta: f32,
        out: &mut [f32],
        parallel: bool,
    ) {
        let (csr, blocked) = if transposed {
            (&self.csr_t, &self.blocked_t)
        } else {
            (&self.csr, &self.blocked)
        };
        let blocked =
            blocked.get_or_init(|| BlockedCsr::worthwhile(csr).then(|| BlockedCsr::new(csr)));
        match blocked {
            Some(b) => b.spmm(x, n, alpha, beta, out, parallel),
            None => cpu::spmm(csr, x, n, alpha, beta, out, parallel),
        }
    }
}

/// One weight operand of a layer, in the execution mode chosen for it.
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    /// Dense execution (the weight is dense, or already masked in storage).
    Dense(&'a Tensor),
    /// Dense execution of `W ⊙ M` without materialising it (e.g. OptG's stored values).
    Masked(&'a Tensor, &'a DeviceMask),
    /// Sparse execution through CSR (values must be fresh: see [`SparseWeight::refresh`]).
    Sparse(&'a SparseWeight),
}

impl<'a> WeightRef<'a> {
    /// The weight's tensor shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            WeightRef::Dense(w) | WeightRef::Masked(w, _) => w.shape(),
            WeightRef::Sparse(s) => s.csr.shape(),
        }
    }

    /// The device the weight lives on.
    pub fn device(&self) -> Device {
        match self {
            WeightRef::Dense(w) | WeightRef::Masked(w, _) => w.device(),
            WeightRef::Sparse(s) => s.device(),
        }
    }

    /// Rows and columns of the 2-D view.
    pub fn matrix(&self) -> (usize, usize) {
        matrix_view(self.shape())
    }

    /// The host form the CPU kernels run (errors for a weight on another device).
    pub(crate) fn cpu(&self) -> Result<CpuWeight<'a>> {
        Ok(match *self {
            WeightRef::Dense(w) => CpuWeight::Dense(w.cpu_data()?, matrix_view(w.shape())),
            WeightRef::Masked(w, m) => {
                CpuWeight::Masked(w.cpu_data()?, m.mask(), matrix_view(w.shape()))
            }
            WeightRef::Sparse(s) => CpuWeight::Sparse(s),
        })
    }
}

/// A [`WeightRef`] resolved to host memory (CPU backend).
#[derive(Debug, Clone, Copy)]
pub(crate) enum CpuWeight<'a> {
    Dense(&'a [f32], (usize, usize)),
    Masked(&'a [f32], &'a Mask, (usize, usize)),
    Sparse(&'a SparseWeight),
}

impl CpuWeight<'_> {
    fn matrix(&self) -> (usize, usize) {
        match *self {
            CpuWeight::Dense(_, mk) | CpuWeight::Masked(_, _, mk) => mk,
            CpuWeight::Sparse(s) => matrix_view(s.csr.shape()),
        }
    }

    /// `out (rows x n) = W · X` for row-major `X (cols x n)`.
    pub(crate) fn mul(&self, x: &[f32], n: usize, out: &mut [f32], parallel: bool) {
        let (m, k) = self.matrix();
        match *self {
            CpuWeight::Dense(w, _) => {
                crate::ops::gemm::cpu::sgemm(m, n, k, 1.0, w, false, x, false, 0.0, out, parallel)
            }
            CpuWeight::Masked(w, mask, _) => cpu::masked_mm(w, mask, k, x, n, out, parallel),
            CpuWeight::Sparse(s) => s.spmm(false, x, n, 1.0, 0.0, out, parallel),
        }
    }

    /// `out (cols x n) = Wᵀ · Y` for row-major `Y (rows x n)`.
    pub(crate) fn mul_t(&self, y: &[f32], n: usize, out: &mut [f32], parallel: bool) {
        let (m, k) = self.matrix();
        match *self {
            CpuWeight::Dense(w, _) => {
                crate::ops::gemm::cpu::sgemm(k, n, m, 1.0, w, true, y, false, 0.0, out, parallel)
            }
            CpuWeight::Masked(w, mask, _) => cpu::masked_mm_t(w, mask, m, k, y, n, out, parallel),
            CpuWeight::Sparse(s) => s.spmm(true, y, n, 1.0, 0.0, out, parallel),
        }
    }
}

/// How a weight gradient `dY·Xᵀ` is computed.
#[derive(Debug, Clone, Copy)]
pub enum WeightGrad<'a> {
    /// Every position (dense layers, and grow steps where a criterion needs the gradient of
    /// inactive weights).
    Dense,
    /// Only the mask's positions (SDDMM); zero elsewhere.
    AtMask(&'a DeviceMask),
}

impl WeightGrad<'_> {
    /// Errors unless an at-mask gradient's mask fits the weight (shape and device).
    pub(crate) fn check(&self, op: &'static str, w: &WeightRef) -> Result<()> {
        if let WeightGrad::AtMask(m) = self {
            if m.shape() != w.shape() {
                return shape_err(
                    op,
                    format!("mask {:?} vs weight {:?}", m.shape(), w.shape()),
                );
            }
            crate::tensor::same(op, w.device(), m.device())?;
        }
        Ok(())
    }

    /// The host mask of an at-mask gradient.
    pub(crate) fn host_mask(&self) -> Option<&Mask> {
        match self {
            WeightGrad::Dense => None,
            WeightGrad::AtMask(m) => Some(m.mask()),
        }
    }
}
