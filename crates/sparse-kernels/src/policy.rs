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
/// with `cargo xtask bench` and `sparse-train bench-step` on 2-core machines (see
/// [`ExecPolicy::cpu_default`] and `docs/benchmarks.md`); override them per run
/// (`conv_sparse_below`, `linear_sparse_below` in the configuration) when a machine differs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecPolicy {
    /// Convolutions (forward, backward to input; weight gradient by SDDMM).
    pub conv_sparse_below: f64,
    /// Linear layers.
    pub linear_sparse_below: f64,
}

impl Default for ExecPolicy {
    /// [`ExecPolicy::cpu_default`].
    fn default() -> Self {
        ExecPolicy::cpu_default()
    }
}

impl ExecPolicy {
    /// The CPU defaults for the running machine. Linear layers go sparse below density 0.2.
    /// Convolutions go sparse below 0.32 where AVX-512 runs at full rate (Intel, AMD Zen 5),
    /// which doubles the dense GEMM's peak but helps the load-bound sparse kernels less, and
    /// below 0.5 elsewhere (AMD Zen 4, CPUs without AVX-512). Measured on 2 threads: on a
    /// Zen 5 host ResNet-18's density-0.48 layer-1 convolutions took 133-139 ms sparse
    /// against 92-111 ms dense; on a Zen 4 host they took 157-168 ms sparse against
    /// 189-197 ms dense, and the whole RigL 90% step was 7% faster for ResNet-18 and 10%
    /// for VGG-16 with 0.5, while 0.7 (VGG-16's density-0.67 layer sparse too) was 12%
    /// slower again (`docs/benchmarks.md`). A given CPU always gets the same thresholds,
    /// and a run records them in its configuration, so a resumed run keeps its own.
    pub fn cpu_default() -> Self {
        ExecPolicy {
            conv_sparse_below: if crate::simd::avx512_full_rate() {
                0.32
            } else {
                0.5
            },
            linear_sparse_below: 0.2,
        }
    }

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
