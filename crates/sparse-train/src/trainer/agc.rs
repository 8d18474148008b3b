//! AGC's passes (spec §8) on the trainer: the snapshot model's gradient on every batch and
//! pass A at each epoch start. The snapshot parameters are swapped in and out of the model
//! (`std::mem::swap`), never copied.

use anyhow::{Context, Result};
use sparse_kernels::ops::activation::add_assign;
use sparse_kernels::ops::loss::softmax_cross_entropy;
use sparse_kernels::{IndexTensor, Tensor};

use super::Trainer;
use crate::model::{ExecCtx, Model};

/// Swaps every parameter's values with `values`, in parameter order.
fn swap_values(model: &mut Model, values: &mut [Tensor]) {
    for (p, v) in model.params_mut().into_iter().zip(values.iter_mut()) {
        std::mem::swap(&mut p.value, v);
    }
}

impl Trainer {
    fn snapshot_ctx(&self) -> ExecCtx {
        ExecCtx {
            force_dense: true,
            dense_grad: true,
            freeze_running_stats: true,
            ..self.exec(true, true)
        }
    }

    fn swap_snapshot(&mut self) -> Result<()> {
        let agc = self.agc.as_mut().context("AGC is not enabled")?;
        swap_values(&mut self.model, agc.snapshot_mut());
        Ok(())
    }

    /// With the raw gradients of the batch in the model: runs the snapshot model on the
    /// same batch and returns the corrected gradients `g + c·(μ̃ − g̃)` for the optimizer,
    /// leaving the raw ones in the model for the method.
    pub(super) fn agc_corrected_grads(
        &mut self,
        x: Tensor,
        y: &IndexTensor,
    ) -> Result<Vec<Tensor>> {
        let placeholder = || Tensor::zeros(&[0], self.device);
        let mut raw = Vec::new();
        for p in self.model.params_mut() {
            raw.push(std::mem::replace(&mut p.grad, placeholder()?));
        }
        self.swap_snapshot()?;
        let sctx = self.snapshot_ctx();
        let pass = self.forward_backward(x, y, &sctx);
        self.swap_snapshot()?;
        pass?;
        let agc = self.agc.as_ref().context("AGC is not enabled")?;
        let mut corrected = Vec::with_capacity(raw.len());
        for (i, (p, g)) in self.model.params_mut().into_iter().zip(raw).enumerate() {
            let mut snap = std::mem::replace(&mut p.grad, g);
            agc.correct(i, &mut snap, &p.grad)?;
            corrected.push(snap);
        }
        Ok(corrected)
    }

    /// AGC pass A over the training set: τ̂, μ̃ and the new snapshot.
    pub(super) fn agc_pass_a(&mut self) -> Result<()> {
        if self.agc.is_none() {
            return Ok(());
        }
        let mut sums: Vec<Tensor> = self
            .model
            .params()
            .iter()
            .map(|p| Tensor::zeros(p.value.shape(), p.value.device()))
            .collect::<std::result::Result<_, _>>()?;
        let (mut losses, mut snap_losses) = (Vec::new(), Vec::new());
        let ctx = ExecCtx {
            freeze_running_stats: true,
            dense_grad: true,
            ..self.exec(true, true)
        };
        let sctx = ExecCtx {
            train: true,
            ..self.snapshot_ctx()
        };
        // A different augmentation stream than pass B (epoch offset).
        let rx = self.train_loader.epoch(self.epoch + (1 << 40), 0);
        for b in rx {
            let (x, y) = self.upload(b?)?;
            let (l, _) = self.forward_backward(x.clone(), &y, &ctx)?;
            losses.push(l);
            for (s, p) in sums.iter_mut().zip(self.model.params()) {
                add_assign(s, &p.grad)?;
            }
            self.swap_snapshot()?;
            let logits = self.model.forward(x, &sctx);
            self.swap_snapshot()?;
            let loss = softmax_cross_entropy(&logits?, &y, self.cfg.label_smoothing as f32)?.loss;
            snap_losses.push(loss);
        }
        // Pass A takes no optimizer step: the current values are the new snapshot.
        let current = self
            .model
            .params()
            .iter()
            .map(|p| p.value.clone())
            .collect();
        let k = losses.len();
        self.agc
            .as_mut()
            .context("AGC is not enabled")?
            .finish_pass_a(&losses, &snap_losses, sums, k, current)?;
        Ok(())
    }
}
