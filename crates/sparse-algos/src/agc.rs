//! AGC / AGENT adaptive gradient correction (spec §8), as implemented in the authors' code:
//! an SVRG-style control variate `d = g + c·(μ̃ − g̃)` with `c = γ·τ̂`, where `g̃` is the
//! gradient of a snapshot model on the same batch, `μ̃` the mean gradient of the current
//! model over an extra pass, and `τ̂` an EMA of the regression coefficient of current on
//! snapshot mini-batch losses. The trainer runs the passes; this type holds the state and
//! the arithmetic. It wraps any method: the mask update still uses the uncorrected `g`.

use sparse_kernels::ops::activation::{control_variate, scale};
use sparse_kernels::Tensor;

use crate::error::{AlgoError, Result};
use crate::method::{check_len, AlgoState};

/// AGC hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgcConfig {
    /// Scale γ (0.1).
    pub gamma: f64,
    /// EMA forgetting rate α (0.3).
    pub alpha: f64,
    /// Initial τ̂₀ (0.1 in A-ITOP/A-RigL).
    pub tau0: f64,
}

impl Default for AgcConfig {
    fn default() -> Self {
        AgcConfig {
            gamma: 0.1,
            alpha: 0.3,
            tau0: 0.1,
        }
    }
}

/// AGC state: snapshot parameters θ̃, full-gradient estimate μ̃ (dense), τ̂, as tensors on
/// the parameters' device. The trainer swaps the snapshot in and out of the model
/// ([`Agc::snapshot_mut`]) instead of copying it.
#[derive(Debug, Clone)]
pub struct Agc {
    cfg: AgcConfig,
    tau: f64,
    mu: Vec<Tensor>,
    snapshot: Vec<Tensor>,
}

/// The epoch regression coefficient `Cov(ℓ, ℓ̃) / Var(ℓ̃)` (sample statistics, ddof = 1);
/// 1 when `Var(ℓ̃) < 1e-12` or fewer than two batches (spec §8.2 guard).
pub fn tau_estimate(losses: &[f64], snapshot_losses: &[f64]) -> f64 {
    let k = losses.len().min(snapshot_losses.len());
    if k < 2 {
        return 1.0;
    }
    let m1 = losses[..k].iter().sum::<f64>() / k as f64;
    let m2 = snapshot_losses[..k].iter().sum::<f64>() / k as f64;
    let cov: f64 = losses[..k]
        .iter()
        .zip(&snapshot_losses[..k])
        .map(|(a, b)| (a - m1) * (b - m2))
        .sum::<f64>()
        / (k - 1) as f64;
    let var: f64 = snapshot_losses[..k]
        .iter()
        .map(|b| (b - m2).powi(2))
        .sum::<f64>()
        / (k - 1) as f64;
    if var < 1e-12 {
        1.0
    } else {
        cov / var
    }
}

impl Agc {
    /// AGC with the snapshot = the initial parameters (A-ITOP semantics) and μ̃ = 0.
    pub fn new(cfg: AgcConfig, initial_params: Vec<Tensor>) -> Result<Self> {
        if !(cfg.gamma >= 0.0
            && cfg.gamma.is_finite()
            && (0.0..=1.0).contains(&cfg.alpha)
            && cfg.tau0.is_finite())
        {
            return Err(AlgoError::Config(format!("invalid AGC config {cfg:?}")));
        }
        let mu = initial_params
            .iter()
            .map(|p| Tensor::zeros(p.shape(), p.device()))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Agc {
            cfg,
            tau: cfg.tau0,
            mu,
            snapshot: initial_params,
        })
    }

    /// Current τ̂.
    pub fn tau(&self) -> f64 {
        self.tau
    }

    /// The correction coefficient `c = γ·τ̂`.
    pub fn coefficient(&self) -> f64 {
        self.cfg.gamma * self.tau
    }

    /// Snapshot parameters θ̃ (one tensor per trainable parameter).
    pub fn snapshot(&self) -> &[Tensor] {
        &self.snapshot
    }

    /// The snapshot, for swapping with the model's values (`std::mem::swap`).
    pub fn snapshot_mut(&mut self) -> &mut [Tensor] {
        &mut self.snapshot
    }

    /// μ̃ of parameter `p`.
    pub fn mu(&self, p: usize) -> &Tensor {
        &self.mu[p]
    }

    /// Ends pass A: `τ̂ ← (1 − α)τ̂ + α·τ_e`, `μ̃ ← grad_sum / K`, `θ̃ ← current`.
    pub fn finish_pass_a(
        &mut self,
        losses: &[f64],
        snapshot_losses: &[f64],
        grad_sum: Vec<Tensor>,
        batches: usize,
        current: Vec<Tensor>,
    ) -> Result<()> {
        check_len("AGC parameters", grad_sum.len(), self.mu.len())?;
        check_len("AGC parameters", current.len(), self.snapshot.len())?;
        let tau_e = tau_estimate(losses, snapshot_losses);
        self.tau = (1.0 - self.cfg.alpha) * self.tau + self.cfg.alpha * tau_e;
        let inv = 1.0 / batches.max(1) as f32;
        self.mu = grad_sum;
        for m in &mut self.mu {
            scale(m, inv)?;
        }
        self.snapshot = current;
        Ok(())
    }

    /// In place: `g̃ ← g + c·(μ̃ − g̃)` for parameter `p`: `snapshot_grad` holds the snapshot
    /// model's gradient on entry and the corrected gradient on return.
    pub fn correct(&self, p: usize, snapshot_grad: &mut Tensor, g: &Tensor) -> Result<()> {
        check_len("AGC gradient", g.numel(), self.mu[p].numel())?;
        check_len(
            "AGC snapshot gradient",
            snapshot_grad.numel(),
            self.mu[p].numel(),
        )?;
        control_variate(snapshot_grad, g, &self.mu[p], self.coefficient() as f32)?;
        Ok(())
    }

    /// State to checkpoint (a host copy).
    pub fn state(&self) -> Result<AlgoState> {
        let mut s = AlgoState::default();
        s.scalars.insert("agc.tau".into(), self.tau);
        for (p, (m, th)) in self.mu.iter().zip(&self.snapshot).enumerate() {
            s.tensors.insert(format!("agc.mu.{p}"), m.to_host()?);
            s.tensors.insert(format!("agc.snapshot.{p}"), th.to_host()?);
        }
        Ok(s)
    }

    /// Restores [`state`](Self::state).
    pub fn load_state(&mut self, s: &AlgoState) -> Result<()> {
        self.tau = s.scalar("agc.tau")?;
        for p in 0..self.mu.len() {
            let m = s.tensor(&format!("agc.mu.{p}"))?;
            let th = s.tensor(&format!("agc.snapshot.{p}"))?;
            check_len("agc.mu", m.len(), self.mu[p].numel())?;
            check_len("agc.snapshot", th.len(), self.snapshot[p].numel())?;
            let (shape, dev) = (self.mu[p].shape().to_vec(), self.mu[p].device());
            self.mu[p] = Tensor::from_vec(&shape, m.clone(), dev)?;
            self.snapshot[p] = Tensor::from_vec(&shape, th.clone(), dev)?;
        }
        Ok(())
    }
}
