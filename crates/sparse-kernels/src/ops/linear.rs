//! Fully connected layer `y = x·Wᵀ + b` (`x: [B, in]`, `W: [out, in]`), forward and backward,
//! through a dense, masked or sparse weight.

use rayon::prelude::*;

use crate::error::{shape_err, Result};
use crate::ops::gemm::cpu::sgemm;
use crate::ops::sparse::{cpu as sp, WeightGrad, WeightRef};
use crate::tensor::Tensor;

/// Row-major transpose of an `r x c` matrix.
pub(crate) fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0f32; r * c];
    const B: usize = 32;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    t[j * r + i] = a[i * c + j];
                }
            }
        }
    }
    t
}

fn dims(x: &Tensor, w: &WeightRef, bias: Option<&Tensor>) -> Result<(usize, usize, usize)> {
    let (&[b, i], &[o, i2]) = (x.shape(), w.shape()) else {
        return shape_err(
            "linear",
            format!(
                "input must be [B, in] and weight [out, in], got {:?} and {:?}",
                x.shape(),
                w.shape()
            ),
        );
    };
    if i != i2 {
        return shape_err(
            "linear",
            format!("input has {i} features, weight expects {i2}"),
        );
    }
    if let Some(bias) = bias {
        bias.expect_shape("linear bias", &[o])?;
    }
    Ok((b, i, o))
}

/// Forward `y = x·Wᵀ + b`, shape `[B, out]`.
pub fn linear_forward(x: &Tensor, w: WeightRef, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, i, o) = dims(x, &w, bias)?;
    let mut y = vec![0f32; b * o];
    match w {
        WeightRef::Dense(wt) => sgemm(
            b,
            o,
            i,
            1.0,
            x.as_slice(),
            false,
            wt.as_slice(),
            true,
            0.0,
            &mut y,
            true,
        ),
        _ => {
            let xt = transpose(x.as_slice(), b, i);
            let mut yt = vec![0f32; o * b];
            w.mul(&xt, b, &mut yt, true);
            y = transpose(&yt, o, b);
        }
    }
    if let Some(bias) = bias {
        let bv = bias.as_slice();
        y.par_chunks_mut(o.max(1))
            .for_each(|row| row.iter_mut().zip(bv).for_each(|(v, b)| *v += b));
    }
    Tensor::from_vec(&[b, o], y, x.device())
}

/// Gradients of a linear layer.
#[derive(Debug, Clone)]
pub struct LinearGrads {
    /// `∂L/∂x` when requested.
    pub dx: Option<Tensor>,
    /// `∂L/∂W` (exactly 0 off the mask for [`WeightGrad::AtMask`]).
    pub dw: Tensor,
    /// `∂L/∂b` (column sums of dY) when the layer has a bias.
    pub db: Option<Tensor>,
}

/// Backward of [`linear_forward`].
pub fn linear_backward(
    dy: &Tensor,
    x: &Tensor,
    w: WeightRef,
    has_bias: bool,
    need_dx: bool,
    wgrad: WeightGrad,
) -> Result<LinearGrads> {
    let (b, i, o) = dims(x, &w, None)?;
    dy.expect_shape("linear backward dY", &[b, o])?;
    let dyt = transpose(dy.as_slice(), b, o);
    let mut dw = vec![0f32; o * i];
    match wgrad {
        WeightGrad::Dense => sgemm(
            o,
            i,
            b,
            1.0,
            &dyt,
            false,
            x.as_slice(),
            false,
            0.0,
            &mut dw,
            true,
        ),
        WeightGrad::AtMask(m) => {
            if m.shape() != w.shape() {
                return shape_err(
                    "linear backward",
                    format!("mask {:?} vs weight {:?}", m.shape(), w.shape()),
                );
            }
            let xt = transpose(x.as_slice(), b, i);
            sp::sddmm_mask(m, o, i, &dyt, &xt, b, &mut dw, true);
        }
    }
    let dx = if need_dx {
        let mut dx = vec![0f32; b * i];
        match w {
            WeightRef::Dense(wt) => sgemm(
                b,
                i,
                o,
                1.0,
                dy.as_slice(),
                false,
                wt.as_slice(),
                false,
                0.0,
                &mut dx,
                true,
            ),
            _ => {
                let mut dxt = vec![0f32; i * b];
                w.mul_t(&dyt, b, &mut dxt, true);
                dx = transpose(&dxt, i, b);
            }
        }
        Some(Tensor::from_vec(&[b, i], dx, x.device())?)
    } else {
        None
    };
    let db = if has_bias {
        let sums: Vec<f32> = dyt.par_chunks(b.max(1)).map(|r| r.iter().sum()).collect();
        Some(Tensor::from_vec(&[o], sums, x.device())?)
    } else {
        None
    };
    Ok(LinearGrads {
        dx,
        dw: Tensor::from_vec(w.shape(), dw, x.device())?,
        db,
    })
}
