//! Element-wise ops: ReLU, residual add, scaling, and the AGC control-variate update.

mod cpu;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// What a backend provides for the element-wise family. Arguments are checked (shapes,
/// one device) before a backend is called.
pub trait ElementwiseOps {
    /// `max(x, 0)`.
    fn relu(x: &Tensor) -> Result<Tensor>;
    /// In-place ReLU.
    fn relu_inplace(x: &mut Tensor) -> Result<()>;
    /// `dy · [y > 0]`.
    fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// `a + b`.
    fn add(a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// `a += b`.
    fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()>;
    /// `a = max(a + b, 0)`.
    fn add_relu_assign(a: &mut Tensor, b: &Tensor) -> Result<()>;
    /// `x *= s`.
    fn scale(x: &mut Tensor, s: f32) -> Result<()>;
    /// `dst = g + c·(mu − dst)`.
    fn control_variate(dst: &mut Tensor, g: &Tensor, mu: &Tensor, c: f32) -> Result<()>;
}

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    dispatch!(x.device(), ElementwiseOps::relu(x))
}

/// In-place ReLU.
pub fn relu_inplace(x: &mut Tensor) -> Result<()> {
    dispatch!(x.device(), ElementwiseOps::relu_inplace(x))
}

/// ReLU backward: `dx = dy · [y > 0]`, where `y` may be the forward's output or its input
/// (`max(x, 0) > 0` exactly where `x > 0`, NaN and −0 included).
pub fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    same_shape("relu_backward", dy, y)?;
    dispatch!(dy.device(), ElementwiseOps::relu_backward(dy, y))
}

/// `a + b` (residual connections). Backward passes the gradient unchanged to both.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("add", a, b)?;
    dispatch!(a.device(), ElementwiseOps::add(a, b))
}

/// `a += b`.
pub fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
    same_shape("add_assign", a, b)?;
    dispatch!(a.device(), ElementwiseOps::add_assign(a, b))
}

/// `a = relu(a + b)` in one pass: a residual block's sum and ReLU, the same bits as
/// [`add_assign`] then [`relu_inplace`]. Its backward is [`relu_backward`] on the result.
pub fn add_relu_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
    same_shape("add_relu_assign", a, b)?;
    dispatch!(a.device(), ElementwiseOps::add_relu_assign(a, b))
}

/// `x *= s`.
pub fn scale(x: &mut Tensor, s: f32) -> Result<()> {
    dispatch!(x.device(), ElementwiseOps::scale(x, s))
}

/// The AGC control variate in place (spec §8): `dst ← g + c·(μ − dst)`, where `dst` holds
/// the snapshot gradient `g̃` on entry and the corrected gradient on return.
pub fn control_variate(dst: &mut Tensor, g: &Tensor, mu: &Tensor, c: f32) -> Result<()> {
    same_shape("control_variate", dst, g)?;
    same_shape("control_variate", dst, mu)?;
    dispatch!(dst.device(), ElementwiseOps::control_variate(dst, g, mu, c))
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
