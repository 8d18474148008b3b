//! Models with explicit forward and backward passes: the layer types ([`layers`]) and the
//! model zoo ([`zoo`]): MLP (LeNet-300-100), VGG-11/16/19 (BN), CIFAR ResNet-20/32/56,
//! ResNet-18/34/50 (CIFAR stem).

pub mod layers;
pub mod zoo;

pub use layers::{ExecCtx, Node};
pub use sparse_algos::Param;
pub use zoo::{build, ModelKind, MODELS};

use anyhow::Result;
use sparse_kernels::{Device, Tensor};

/// A network: a sequence of nodes, trained with explicit forward/backward.
pub struct Model {
    /// The model's name.
    pub name: String,
    /// Layers in order.
    pub nodes: Vec<Node>,
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
}

impl Model {
    /// Forward pass; in training mode every node caches what its backward needs.
    pub fn forward(&mut self, x: Tensor, ctx: &ExecCtx) -> Result<Tensor> {
        let mut h = x;
        for n in &mut self.nodes {
            h = n.forward(h, ctx)?;
        }
        Ok(h)
    }

    /// Backward pass from `∂L/∂logits`, accumulating parameter gradients. It stops at the
    /// first node with parameters, which computes no input gradient: nothing before it
    /// has a gradient to take (the MLP's flatten, for instance).
    pub fn backward(&mut self, dy: Tensor, ctx: &ExecCtx) -> Result<()> {
        let first = self.nodes.iter().position(|n| {
            let mut ps = Vec::new();
            n.collect_params_ref(&mut ps);
            !ps.is_empty()
        });
        let Some(first) = first else {
            return Ok(());
        };
        let mut g = dy;
        for (i, n) in self.nodes.iter_mut().enumerate().skip(first).rev() {
            g = n.backward(g, ctx, i > first)?;
        }
        Ok(())
    }

    /// Every parameter in a fixed order (weights, biases, BN affine).
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            n.collect_params(&mut out);
        }
        out
    }

    /// Every parameter, read-only.
    pub fn params(&self) -> Vec<&Param> {
        let mut out = Vec::new();
        for n in &self.nodes {
            n.collect_params_ref(&mut out);
        }
        out
    }

    /// The sparsifiable parameters (conv and linear weights), in order.
    pub fn sparsifiable_mut(&mut self) -> Vec<&mut Param> {
        self.params_mut()
            .into_iter()
            .filter(|p| p.sparsifiable)
            .collect()
    }

    /// BatchNorm running statistics `(name, mean, var)`, in order.
    pub fn running_stats_mut(&mut self) -> Vec<(String, &mut Tensor, &mut Tensor)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            n.collect_running(&mut out);
        }
        out
    }

    /// Moves every parameter (value, gradient, momentum) and BatchNorm statistic to
    /// `device` (no copy when they already are there). Call before installing masks.
    pub fn to_device(&mut self, device: Device) -> Result<()> {
        let take = |t: &mut Tensor| -> Result<()> {
            let moved =
                std::mem::replace(t, Tensor::zeros(&[0], Device::Cpu)?).to_device(device)?;
            *t = moved;
            Ok(())
        };
        for p in self.params_mut() {
            if p.mask().is_some() {
                anyhow::bail!("move the model to its device before installing masks");
            }
            take(&mut p.value)?;
            take(&mut p.grad)?;
            take(&mut p.momentum)?;
        }
        for (_, m, v) in self.running_stats_mut() {
            take(m)?;
            take(v)?;
        }
        Ok(())
    }
}
