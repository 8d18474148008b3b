//! Timed training steps and inference passes: what `sparse-train bench-step` (and so
//! `cargo xtask bench --vs-pytorch`) measures. The batch is drawn before each step's clock
//! starts, so data preparation is not timed (PyTorch's side uses a fixed tensor).

use std::time::Instant;

use anyhow::{Context, Result};

use super::Trainer;
use crate::data::Batch;

impl Trainer {
    /// Feeds the next `n` training batches (fewer at the end of the run) to `f`, in order,
    /// across epoch boundaries. No epoch hooks, evaluation or output.
    pub(crate) fn steps_with(
        &mut self,
        n: usize,
        mut f: impl FnMut(&mut Trainer, Batch) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0;
        while done < n && self.step < self.total_steps {
            let from = (self.step % self.steps_per_epoch) as usize;
            let todo = (self.steps_per_epoch as usize - from)
                .min(n - done)
                .min((self.total_steps - self.step) as usize);
            let rx = self
                .train_loader
                .epoch(self.step / self.steps_per_epoch, from);
            for b in rx.into_iter().take(todo) {
                f(self, b?)?;
                done += 1;
            }
        }
        Ok(())
    }

    /// Runs the next `n` training steps; per step, its seconds and whether it updated masks.
    pub fn timed_steps(&mut self, n: usize) -> Result<Vec<(f64, bool)>> {
        let mut out = Vec::with_capacity(n);
        self.steps_with(n, |t, b| {
            let before = t.mask_updates;
            let t0 = Instant::now();
            t.train_step(b)?;
            out.push((t0.elapsed().as_secs_f64(), t.mask_updates > before));
            Ok(())
        })?;
        Ok(out)
    }

    /// Times `n` evaluation-mode forward passes of one training batch.
    pub fn timed_inference(&mut self, n: usize) -> Result<Vec<f64>> {
        let b = self
            .train_loader
            .epoch(0, 0)
            .into_iter()
            .next()
            .context("no training batch")??;
        let (x, _) = self.upload(b)?;
        let ctx = self.exec(false, false);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            self.model.forward(x.clone(), &ctx)?;
            out.push(t0.elapsed().as_secs_f64());
        }
        Ok(out)
    }
}
