//! Batch normalisation over `[B, C, H, W]` (or `[B, C]`) with per-channel affine parameters,
//! batch statistics in training (PyTorch semantics: biased variance to normalise, unbiased
//! variance in the running estimate) and running statistics in evaluation.

mod cpu;
mod cpu_runs;
mod cuda;

use crate::dispatch;
use crate::error::{shape_err, KernelError, Result};
use crate::tensor::Tensor;

/// BatchNorm hyperparameters (PyTorch defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// Added to the variance.
    pub eps: f32,
    /// Running-statistics update weight of the new batch.
    pub momentum: f32,
    /// A ReLU fused after the affine output: `y = relu(γ·x̂ + β)`, the same bits as
    /// [`crate::ops::activation::relu`] of the unfused output, without its passes over
    /// memory. The backward masks `dy` from the cache (see [`BatchNormCache::relu_beta`]).
    pub relu: bool,
}

impl Default for BatchNormParams {
    fn default() -> Self {
        BatchNormParams {
            eps: 1e-5,
            momentum: 0.1,
            relu: false,
        }
    }
}

impl BatchNormParams {
    /// The defaults with the ReLU fused.
    pub fn with_relu() -> Self {
        BatchNormParams {
            relu: true,
            ..Self::default()
        }
    }
}

/// What the backward pass needs from a training forward, on the input's device.
#[derive(Debug, Clone)]
pub struct BatchNormCache {
    /// The normalised input `x̂`, shaped like the input.
    pub xhat: Tensor,
    /// `1 / sqrt(var + eps)` per channel, `[C]`.
    pub inv_std: Tensor,
    /// With a fused ReLU, the forward's `β` (`[C]`): the backward passes `dy` only where
    /// `γ·x̂ + β > 0`, the forward's own expression, so the mask is exactly `relu`'s.
    pub relu_beta: Option<Tensor>,
}

/// Gradients of batch norm.
#[derive(Debug, Clone)]
pub struct BatchNormGrads {
    /// `∂L/∂x`.
    pub dx: Tensor,
    /// `∂L/∂γ`.
    pub dgamma: Tensor,
    /// `∂L/∂β`.
    pub dbeta: Tensor,
}

/// What a backend provides for the normalisation family (arguments already checked).
pub trait NormOps {
    /// See [`batch_norm_train`].
    fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        p: BatchNormParams,
    ) -> Result<(Tensor, BatchNormCache)>;
    /// See [`batch_norm_eval`].
    fn batch_norm_eval(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        relu: bool,
    ) -> Result<Tensor>;
    /// See [`batch_norm_backward`].
    fn batch_norm_backward(
        dy: &Tensor,
        cache: &BatchNormCache,
        gamma: &Tensor,
    ) -> Result<BatchNormGrads>;
}

pub(crate) fn dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    match *x.shape() {
        [b, c, h, w] => Ok((b, c, h * w)),
        [b, c] => Ok((b, c, 1)),
        ref s => shape_err(
            "batch_norm",
            format!("input must be [B,C,H,W] or [B,C], got {s:?}"),
        ),
    }
}

fn check_params(x: &Tensor, c: usize, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        t.expect_shape("batch_norm parameter", &[c])?;
        x.same_device("batch_norm", t)?;
    }
    Ok(())
}

/// Training forward: normalises with batch statistics, updates the running statistics
/// (and applies the ReLU when `p.relu`).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    p: BatchNormParams,
) -> Result<(Tensor, BatchNormCache)> {
    let (b, c, hw) = dims(x)?;
    check_params(x, c, &[gamma, beta, running_mean, running_var])?;
    let n = b * hw;
    if n < 2 {
        return Err(KernelError::InvalidArgument(format!(
            "batch_norm training needs more than one value per channel, got {n}"
        )));
    }
    let (y, mut cache) = dispatch!(
        x.device(),
        NormOps::batch_norm_train(x, gamma, beta, running_mean, running_var, p)
    )?;
    if p.relu {
        cache.relu_beta = Some(beta.clone());
    }
    Ok((y, cache))
}

/// Evaluation forward with the running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    batch_norm_eval_with(x, gamma, beta, running_mean, running_var, eps, false)
}

/// [`batch_norm_eval`] followed by a fused ReLU: `relu(BN(x))` in one pass.
pub fn batch_norm_relu_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    batch_norm_eval_with(x, gamma, beta, running_mean, running_var, eps, true)
}

fn batch_norm_eval_with(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
    relu: bool,
) -> Result<Tensor> {
    let (_, c, _) = dims(x)?;
    check_params(x, c, &[gamma, beta, running_mean, running_var])?;
    dispatch!(
        x.device(),
        NormOps::batch_norm_eval(x, gamma, beta, running_mean, running_var, eps, relu)
    )
}

/// Backward of [`batch_norm_train`]:
/// `dx = γ·inv_std/N · (N·dy − Σdy − x̂·Σ(dy·x̂))`, with `dy` zero where a fused ReLU cut
/// the forward off.
pub fn batch_norm_backward(
    dy: &Tensor,
    cache: &BatchNormCache,
    gamma: &Tensor,
) -> Result<BatchNormGrads> {
    dy.expect_shape("batch_norm backward dY", cache.xhat.shape())?;
    let (_, c, _) = dims(dy)?;
    check_params(dy, c, &[gamma, &cache.inv_std])?;
    if let Some(bt) = &cache.relu_beta {
        check_params(dy, c, &[bt])?;
    }
    dy.same_device("batch_norm backward", &cache.xhat)?;
    dispatch!(dy.device(), NormOps::batch_norm_backward(dy, cache, gamma))
}
