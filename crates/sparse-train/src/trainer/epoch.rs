//! One epoch: the method's epoch hook, AGC pass A, the training steps with progress
//! output, then evaluation and the epoch's metrics.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Result};
use sparse_algos::epoch_start;
use sparse_kernels::profile::{self, Phase};

use super::{in_pool, Trainer};
use crate::report::EpochMetrics;

impl Trainer {
    /// Runs the next `n` optimizer steps (or fewer, at the end of the run) and returns each
    /// step's training loss. No epoch hooks, evaluation or output: this is the primitive
    /// `selftest` and the cross-device tests compare devices with.
    pub fn step_losses(&mut self, n: usize) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(n);
        self.steps_with(n, |t, b| {
            out.push(t.train_step(b)?.0);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs one epoch (or what is left of it within the run); returns its metrics.
    ///
    /// The whole epoch runs on a worker of the rayon pool ([`in_pool`]), so the steps do not
    /// each hand their work to a worker that may have gone to sleep in between.
    pub fn run_epoch(&mut self) -> Result<EpochMetrics> {
        in_pool(|| self.run_epoch_inner())
    }

    fn run_epoch_inner(&mut self) -> Result<EpochMetrics> {
        let start = Instant::now();
        let info = self.info();
        let epoch_report = {
            let mut params = self.model.params_mut();
            epoch_start(self.method.as_mut(), &info, &mut params)?
        };
        if let Some(r) = epoch_report {
            self.after_mask_change(r.dropped(), r.grown())?;
        }
        if self.agc.is_some() {
            self.agc_pass_a()?;
        }
        let from = (self.step % self.steps_per_epoch) as usize;
        let todo = (self.steps_per_epoch - from as u64).min(self.total_steps - self.step);
        // The data epoch follows the step (equal to `self.epoch` except after a run that
        // ended mid-epoch was extended).
        let rx = self
            .train_loader
            .epoch(self.step / self.steps_per_epoch, from);
        let bar = progress_bar(todo, self.epoch);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut batches = rx.into_iter().take(todo as usize).enumerate();
        loop {
            let wait = profile::enabled().then(Instant::now);
            let Some((i, b)) = batches.next() else {
                break;
            };
            if let Some(t0) = wait {
                let _layer = profile::layer("(data)");
                profile::record(Phase::Data, t0.elapsed().as_secs_f64());
            }
            let b = b?;
            let n = b.n;
            let (l, c) = self.train_step(b)?;
            if !l.is_finite() {
                bail!(
                    "training diverged: loss is {l} at step {} (lower --lr?)",
                    self.step
                );
            }
            loss_sum += l * n as f64;
            correct += c;
            seen += n;
            let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            match &bar {
                Some(pb) => {
                    pb.set_position(i as u64 + 1);
                    pb.set_message(format!(
                        "loss {:.4} | {:.0} img/s",
                        loss_sum / seen as f64,
                        rate
                    ));
                }
                None if todo >= 10 && (i + 1) % (todo as usize / 5).max(1) == 0 => {
                    eprintln!(
                        "epoch {} step {}/{}: loss {:.4}, {:.0} img/s",
                        self.epoch + 1,
                        i + 1,
                        todo,
                        loss_sum / seen as f64,
                        rate
                    );
                }
                None => {}
            }
        }
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        let train_secs = start.elapsed().as_secs_f64();
        if self.step.is_multiple_of(self.steps_per_epoch) || self.step >= self.total_steps {
            self.epoch += 1;
        }
        let (test_loss, test_acc) = self.evaluate_test()?;
        let val_acc = match self.val.clone() {
            Some(v) => Some(self.evaluate(&v)?.1),
            None => None,
        };
        self.best_test_accuracy = self.best_test_accuracy.max(test_acc);
        let (dropped, grown) = std::mem::take(&mut self.dropped_grown);
        let m = EpochMetrics {
            epoch: self.epoch,
            step: self.step,
            lr: self.lr_at(self.step.saturating_sub(1)),
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss,
            test_accuracy: test_acc,
            val_accuracy: val_acc,
            global_density: self.global_density(),
            layers: self.layer_metrics(),
            dropped,
            grown,
            updates: std::mem::take(&mut self.mask_updates),
            coverage: self.coverage.fraction(),
            epoch_seconds: start.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
        };
        self.last_epoch = Some(m.clone());
        Ok(m)
    }
}

fn progress_bar(len: u64, epoch: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix((epoch + 1).to_string());
    Some(pb)
}
