//! The step protocol, owned here the way jaxpruner's `wrap_optax` owns it, so a trainer
//! calls one function per step and never names a method:
//!
//! 1. [`SparseMethod::on_gradients`] on the raw gradients;
//! 2. SGD on every parameter (unless [`SparseMethod::skip_optimizer_step`]), through the
//!    mask policy: masked weights and momentum (`w ⊙= M`), or, for methods that keep dense
//!    values (OptG), the gradient masked (`G ⊙ M`) and the stored values left as they are;
//! 3. [`SparseMethod::update`] on update steps;
//! 4. [`SparseMethod::on_step_end`].
//!
//! [`Coverage`] keeps the one ever-active ("fired") mask per layer.

use sparse_core::Mask;
use sparse_kernels::ops::optim::{sgd_step, MaskPolicy, SgdConfig};
use sparse_kernels::profile::{self, Phase};
use sparse_kernels::{DeviceMask, Tensor};

use crate::error::{AlgoError, Result};
use crate::method::{Layer, SparseMethod, StepInfo, UpdateReport};
use crate::param::Param;

/// The method views of the masked parameters, in order.
pub fn layer_views<'a>(params: &'a mut [&mut Param]) -> Vec<Layer<'a>> {
    params.iter_mut().filter_map(|p| p.layer()).collect()
}

/// Which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decay {
    /// Every parameter (the papers' code, our default).
    #[default]
    All,
    /// Conv and linear weights only, not biases and BatchNorm parameters.
    WeightsOnly,
}

/// One optimizer step after backward (see the module docs). `corrected` replaces the
/// gradients the optimizer uses (AGC), one per parameter; the method still sees the raw
/// ones. Returns the mask update's report on update steps.
pub fn apply_step(
    method: &mut dyn SparseMethod,
    t: &StepInfo,
    params: &mut [&mut Param],
    sgd: &SgdConfig,
    decay: Decay,
    corrected: Option<&[Tensor]>,
) -> Result<Option<UpdateReport>> {
    if let Some(c) = corrected {
        if c.len() != params.len() {
            return Err(AlgoError::State(format!(
                "{} corrected gradients for {} parameters",
                c.len(),
                params.len()
            )));
        }
    }
    let _layer = profile::layer("(all layers)");
    profile::time(Phase::MaskUpdate, || {
        method.on_gradients(t, &mut layer_views(params))
    })?;
    if !method.skip_optimizer_step(t) {
        let dense_values = method.keeps_dense_values();
        for (i, p) in params.iter_mut().enumerate() {
            let _layer = profile::layer(&p.name);
            let Param {
                value,
                grad,
                momentum,
                mask,
                sparsifiable,
                zero_off_mask,
                ..
            } = &mut **p;
            let no_decay = SgdConfig {
                weight_decay: 0.0,
                ..*sgd
            };
            let sgd = match decay {
                Decay::WeightsOnly if !*sparsifiable => &no_decay,
                _ => sgd,
            };
            let g = corrected.map_or(&*grad, |c| &c[i]);
            let policy = match (mask.as_ref(), dense_values) {
                (None, _) => MaskPolicy::None,
                (Some(m), false) if *zero_off_mask == Some(off_mask_state(m, value, momentum)) => {
                    MaskPolicy::Active(m)
                }
                (Some(m), false) => MaskPolicy::Weights(m),
                (Some(m), true) => MaskPolicy::Gradient(m),
            };
            profile::time(Phase::Optimizer, || {
                sgd_step(value, g, momentum, policy, sgd)
            })?;
            *zero_off_mask = match policy {
                MaskPolicy::Weights(m) | MaskPolicy::Active(m) => {
                    Some(off_mask_state(m, value, momentum))
                }
                _ => None,
            };
        }
    }
    let report = if method.is_update_step(t) {
        Some(profile::time(Phase::MaskUpdate, || {
            method.update(t, &mut layer_views(params))
        })?)
    } else {
        None
    };
    profile::time(Phase::MaskUpdate, || {
        method.on_step_end(t, &mut layer_views(params))
    })?;
    Ok(report)
}

/// What identifies a masked parameter's state: its mask version and the generations of
/// its value and momentum.
fn off_mask_state(m: &DeviceMask, value: &Tensor, momentum: &Tensor) -> (u64, u64, u64) {
    (m.version(), value.generation(), momentum.generation())
}

/// Calls [`SparseMethod::on_epoch_start`] (OptG's and per-epoch SET's mask updates).
pub fn epoch_start(
    method: &mut dyn SparseMethod,
    t: &StepInfo,
    params: &mut [&mut Param],
) -> Result<Option<UpdateReport>> {
    let _layer = profile::layer("(all layers)");
    profile::time(Phase::MaskUpdate, || {
        method.on_epoch_start(t, &mut layer_views(params))
    })
}

/// The ever-active ("fired") positions of each masked layer: ITOP's `R_s` and DST-EE's
/// coverage. One per run, kept by the trainer and checkpointed with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    fired: Vec<Mask>,
}

impl Coverage {
    /// Starts from the current masks.
    pub fn new(params: &[&Param]) -> Coverage {
        Coverage {
            fired: params
                .iter()
                .filter_map(|p| p.mask().map(|m| m.mask().clone()))
                .collect(),
        }
    }

    /// Adds the current masks (after a mask change).
    pub fn record(&mut self, params: &[&Param]) -> Result<()> {
        let masks = params.iter().filter_map(|p| p.mask());
        for (f, m) in self.fired.iter_mut().zip(masks) {
            *f = f.or(m.mask())?;
        }
        Ok(())
    }

    /// Fraction of masked weights ever active (1 without masks).
    pub fn fraction(&self) -> f64 {
        if self.fired.is_empty() {
            return 1.0;
        }
        let on: usize = self.fired.iter().map(|m| m.count_ones()).sum();
        on as f64 / self.fired.iter().map(|m| m.len()).sum::<usize>().max(1) as f64
    }

    /// The fired masks, one per masked layer.
    pub fn masks(&self) -> &[Mask] {
        &self.fired
    }

    /// Replaces the fired masks (checkpoint restore); shapes must match.
    pub fn restore(&mut self, masks: Vec<Mask>) -> Result<()> {
        if masks.len() != self.fired.len()
            || masks
                .iter()
                .zip(&self.fired)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err(AlgoError::State(
                "fired masks do not fit the model's masked layers".into(),
            ));
        }
        self.fired = masks
            .into_iter()
            .zip(&self.fired)
            .map(|(m, f)| m.reshape(f.shape()))
            .collect::<std::result::Result<_, _>>()?;
        Ok(())
    }
}
