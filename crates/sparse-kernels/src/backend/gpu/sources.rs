//! The kernel sources: one `kernels/<family>.cu` per op family, embedded in the binary so it
//! runs without the source tree. `#include "common.cuh"` is inlined here (NVRTC gets no
//! include path), for NVRTC and the host compiler alike.

/// One `.cu` file of `kernels/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `activation.cu`: ReLU, residual add, scaling, control variate.
    Activation,
    /// `norm.cu`: BatchNorm training and evaluation, forward and backward.
    Norm,
    /// `pool.cu`: max, average and global pooling.
    Pool,
    /// `loss.cu`: softmax cross-entropy, accuracy.
    Loss,
    /// `optim.cu`: SGD and OptG's score step.
    Optim,
    /// `conv.cu`: im2col, col2im and layout permutes.
    Conv,
    /// `linear.cu`: bias and column sums.
    Linear,
    /// `sparse.cu`: mask application, CSR SpMM and SDDMM.
    Sparse,
    /// `mask_update.cu`: scores, bit masks, drop-and-grow scatter, counters.
    MaskUpdate,
    /// `select.cu`: exact radix select (spec §0.2 ties) and mask word operations.
    Select,
}

const COMMON: &str = include_str!("../../../../../kernels/common.cuh");
/// The host-execution header (`kernels/host/cuda_host.h`).
pub const HOST_HEADER: &str = include_str!("../../../../../kernels/host/cuda_host.h");

impl Family {
    /// Every family.
    pub const ALL: [Family; 10] = [
        Family::Activation,
        Family::Norm,
        Family::Pool,
        Family::Loss,
        Family::Optim,
        Family::Conv,
        Family::Linear,
        Family::Sparse,
        Family::MaskUpdate,
        Family::Select,
    ];

    /// The file name in `kernels/`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Activation => "activation.cu",
            Family::Norm => "norm.cu",
            Family::Pool => "pool.cu",
            Family::Loss => "loss.cu",
            Family::Optim => "optim.cu",
            Family::Conv => "conv.cu",
            Family::Linear => "linear.cu",
            Family::Sparse => "sparse.cu",
            Family::MaskUpdate => "mask_update.cu",
            Family::Select => "select.cu",
        }
    }

    fn raw(self) -> &'static str {
        match self {
            Family::Activation => include_str!("../../../../../kernels/activation.cu"),
            Family::Norm => include_str!("../../../../../kernels/norm.cu"),
            Family::Pool => include_str!("../../../../../kernels/pool.cu"),
            Family::Loss => include_str!("../../../../../kernels/loss.cu"),
            Family::Optim => include_str!("../../../../../kernels/optim.cu"),
            Family::Conv => include_str!("../../../../../kernels/conv.cu"),
            Family::Linear => include_str!("../../../../../kernels/linear.cu"),
            Family::Sparse => include_str!("../../../../../kernels/sparse.cu"),
            Family::MaskUpdate => include_str!("../../../../../kernels/mask_update.cu"),
            Family::Select => include_str!("../../../../../kernels/select.cu"),
        }
    }

    /// The translation unit: the file with `common.cuh` inlined, `#line` directives keeping
    /// compiler messages on the original files.
    pub fn source(self) -> String {
        let mut out = String::new();
        for (i, line) in self.raw().lines().enumerate() {
            if line.trim() == "#include \"common.cuh\"" {
                out.push_str("#line 1 \"common.cuh\"\n");
                out.push_str(COMMON);
                out.push_str(&format!("\n#line {} \"{}\"\n", i + 2, self.file()));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The kernels (`__global__` functions) the file defines, in order.
    pub fn kernels(self) -> Vec<String> {
        kernel_names(self.raw())
    }
}

/// The NVRTC options the driver runtime compiles with for compute capability `cc`: PTX for
/// the device's own virtual architecture (the driver JIT-compiles it on load).
pub fn nvrtc_options(cc: (i32, i32)) -> Vec<String> {
    vec![
        format!("--gpu-architecture=compute_{}{}", cc.0, cc.1),
        "--std=c++17".into(),
    ]
}

/// Names of the `__global__ void name(` definitions in `src`.
pub fn kernel_names(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("__global__") {
        let rest = src[i + "__global__".len()..].trim_start();
        let Some(rest) = rest.strip_prefix("void") else {
            continue;
        };
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_names_its_kernels_and_inlines_the_common_header() {
        for f in Family::ALL {
            assert!(!f.kernels().is_empty(), "{} defines no kernel", f.file());
            let s = f.source();
            assert!(!s.contains("#include \"common.cuh\""), "{}", f.file());
            assert!(s.contains("GRID_STRIDE"), "{} lacks common.cuh", f.file());
        }
        assert_eq!(
            kernel_names("extern \"C\" __global__ void a(int x) {}\n__global__  void b_2 ()"),
            vec!["a", "b_2"]
        );
    }
}
