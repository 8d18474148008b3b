//! Timed training steps and inference passes: what `sparse-train bench-step` (and so
//! `cargo xtask bench --vs-pytorch`) measures. The batch is drawn before each step's clock
//! starts, so data preparation is not timed (PyTorch's side uses a fixed tensor).

use std::time::Instant;

use anyhow::{Context, Result};

use super::Trainer;

impl Trainer {
    /// Runs the next `n` training steps; per step, its seconds and whether it updated masks.
    pub fn timed_steps(&mut self, n: usize) -> Result<Vec<(f64, bool)>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.step < self.total_steps {
            let from = (self.step % self.steps_per_epoch) as usize;
            let todo = (self.steps_per_epoch as usize - from)
                .min(n - out.len())
                .min((self.total_steps - self.step) as usize);
            let rx = self
                .train_loader
                .epoch(self.step / self.steps_per_epoch, from);
            for b in rx.into_iter().take(todo) {
                let b = b?;
                let before = self.mask_updates;
                let t0 = Instant::now();
                self.train_step(b)?;
                out.push((t0.elapsed().as_secs_f64(), self.mask_updates > before));
            }
        }
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
