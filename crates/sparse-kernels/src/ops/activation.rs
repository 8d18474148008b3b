//! Element-wise ops: ReLU, residual add, scaling.

use rayon::prelude::*;

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

const GRAIN: usize = 1 << 14;

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let y: Vec<f32> = x
        .as_slice()
        .par_iter()
        .with_min_len(GRAIN)
        .map(|&v| v.max(0.0))
        .collect();
    Tensor::from_vec(x.shape(), y, x.device())
}

/// In-place ReLU.
pub fn relu_inplace(x: &mut Tensor) {
    x.as_mut_slice()
        .par_iter_mut()
        .with_min_len(GRAIN)
        .for_each(|v| *v = v.max(0.0));
}

/// ReLU backward from the forward *output* `y`: `dx = dy · [y > 0]`.
pub fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    same_shape("relu_backward", dy, y)?;
    let dx: Vec<f32> = dy
        .as_slice()
        .par_iter()
        .with_min_len(GRAIN)
        .zip(y.as_slice())
        .map(|(&d, &y)| if y > 0.0 { d } else { 0.0 })
        .collect();
    Tensor::from_vec(dy.shape(), dx, dy.device())
}

/// `a + b` (residual connections). Backward passes the gradient unchanged to both.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("add", a, b)?;
    let y: Vec<f32> = a
        .as_slice()
        .par_iter()
        .with_min_len(GRAIN)
        .zip(b.as_slice())
        .map(|(x, y)| x + y)
        .collect();
    Tensor::from_vec(a.shape(), y, a.device())
}

/// `a += b`.
pub fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
    same_shape("add_assign", a, b)?;
    a.as_mut_slice()
        .par_iter_mut()
        .with_min_len(GRAIN)
        .zip(b.as_slice())
        .for_each(|(x, y)| *x += y);
    Ok(())
}

pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    a.same_device(op, b)?;
    if a.shape() != b.shape() {
        return shape_err(
            op,
            format!("shapes differ: {:?} vs {:?}", a.shape(), b.shape()),
        );
    }
    Ok(())
}
