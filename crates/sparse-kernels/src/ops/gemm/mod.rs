//! Dense GEMM: `C = alpha · op(A) · op(B) + beta · C` with optional transposes.

pub(crate) mod cpu;
pub(crate) mod cuda;

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// What a backend provides for dense GEMM (shapes and devices already checked).
pub trait GemmOps {
    /// `C = alpha · op(A)·op(B) + beta · C`.
    fn gemm(
        alpha: f32,
        a: &Tensor,
        trans_a: bool,
        b: &Tensor,
        trans_b: bool,
        beta: f32,
        c: &mut Tensor,
    ) -> Result<()>;
}

/// `op(A)` is `m x k`, `op(B)` is `k x n`; returns the `m x n` product `op(A)·op(B)`.
pub fn matmul(a: &Tensor, trans_a: bool, b: &Tensor, trans_b: bool) -> Result<Tensor> {
    let (m, _, n) = dims("matmul", a, trans_a, b, trans_b)?;
    let mut c = Tensor::zeros(&[m, n], a.device())?;
    gemm(1.0, a, trans_a, b, trans_b, 0.0, &mut c)?;
    Ok(c)
}

/// In place: `C = alpha · op(A)·op(B) + beta · C` (`beta = 0` ignores C's old values).
pub fn gemm(
    alpha: f32,
    a: &Tensor,
    trans_a: bool,
    b: &Tensor,
    trans_b: bool,
    beta: f32,
    c: &mut Tensor,
) -> Result<()> {
    let (m, _, n) = dims("gemm", a, trans_a, b, trans_b)?;
    c.expect_shape("gemm output", &[m, n])?;
    a.same_device("gemm", c)?;
    dispatch!(
        a.device(),
        GemmOps::gemm(alpha, a, trans_a, b, trans_b, beta, c)
    )
}

fn dims(
    op: &'static str,
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
) -> Result<(usize, usize, usize)> {
    a.same_device(op, b)?;
    let (&[ar, ac], &[br, bc]) = (a.shape(), b.shape()) else {
        return shape_err(
            op,
            format!(
                "needs 2-D operands, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        );
    };
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        return shape_err(
            op,
            format!(
                "inner dimensions differ: op(A) is {m}x{k}, op(B) is {k2}x{n} (A {:?}{}, B {:?}{})",
                a.shape(),
                if ta { "ᵀ" } else { "" },
                b.shape(),
                if tb { "ᵀ" } else { "" }
            ),
        );
    }
    Ok((m, k, n))
}
