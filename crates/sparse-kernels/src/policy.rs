//! Dense-or-sparse execution by layer density.

/// How an op executes a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// Dense GEMM on the (masked) weight.
    Dense,
    /// CSR kernels that skip zero weights.
    Sparse,
}

/// Density thresholds below which an op family runs its sparse path. Defaults were measured
/// with `cargo xtask bench` on the 2-core reference machine (see `docs/benchmarks.md`);
/// override them per run when a machine differs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecPolicy {
    /// Convolutions (forward, backward to input; weight gradient by SDDMM).
    pub conv_sparse_below: f64,
    /// Linear layers.
    pub linear_sparse_below: f64,
}

impl Default for ExecPolicy {
    fn default() -> Self {
        ExecPolicy {
            conv_sparse_below: 0.32,
            linear_sparse_below: 0.2,
        }
    }
}

impl ExecPolicy {
    /// The defaults for a CUDA device: sparse below density 0.25 (75% sparsity) for both
    /// families. No GPU has measured them yet (`cargo xtask bench --device cuda` prints the
    /// crossover); they follow the fp32 crossover against cuBLAS that the Sputnik paper
    /// (Gale et al., SC'20) reports for its row-split SpMM, roughly 70-80% sparsity, taken
    /// at its conservative end.
    pub fn gpu_default() -> Self {
        ExecPolicy {
            conv_sparse_below: 0.25,
            linear_sparse_below: 0.25,
        }
    }

    /// Never sparse: every weight runs as a dense (or masked dense) product.
    pub fn dense_only() -> Self {
        ExecPolicy {
            conv_sparse_below: 0.0,
            linear_sparse_below: 0.0,
        }
    }

    /// Mode for a convolution at `density`.
    pub fn conv(&self, density: f64) -> ExecMode {
        if density < self.conv_sparse_below {
            ExecMode::Sparse
        } else {
            ExecMode::Dense
        }
    }

    /// Mode for a linear layer at `density`.
    pub fn linear(&self, density: f64) -> ExecMode {
        if density < self.linear_sparse_below {
            ExecMode::Sparse
        } else {
            ExecMode::Dense
        }
    }
}
