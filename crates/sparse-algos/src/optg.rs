//! OptG (spec §7): supermask scores `S_l` (initialised to 0) trained by SGD on the
//! straight-through gradient `∂L/∂S = G ⊙ W` (dense `G`, stored dense `W`), with a score
//! learning rate that follows the sigmoid sparsity ramp; once per epoch the mask is rebuilt
//! from a global score threshold with per-layer counts. Pruned weights keep their stored
//! values (and can return): [`SparseMethod::keeps_dense_values`] is true.

use sparse_core::{Candidates, Order, Parallelism, Schedule};

use crate::error::{AlgoError, Result};
use crate::method::{
    check_len, AlgoState, Layer, LayerReport, SparseMethod, StepInfo, UpdateReport,
};

/// OptG configuration (OptG CIFAR configs).
#[derive(Debug, Clone, PartialEq)]
pub struct OptgConfig {
    /// Final global sparsity `P`.
    pub target: f64,
    /// Sigmoid steepness β (1).
    pub beta: f64,
    /// Total epochs `E`.
    pub epochs: u64,
    /// Base learning rate of the weights (the score lr follows it).
    pub lr: f64,
    /// Linear warm-up epochs `W` (5).
    pub warmup_epochs: u64,
    /// Score momentum (0.9, shared with the weights in OptG's single optimizer).
    pub momentum: f64,
}

/// OptG.
#[derive(Debug, Clone)]
pub struct Optg {
    cfg: OptgConfig,
    scores: Vec<Vec<f32>>,
    score_momentum: Vec<Vec<f32>>,
}

impl Optg {
    /// Validates the configuration.
    pub fn new(cfg: OptgConfig) -> Result<Self> {
        sparse_core::error::check_sparsity("OptG target", cfg.target)?;
        if cfg.epochs == 0
            || cfg.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || cfg.beta.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || !(0.0..1.0).contains(&cfg.momentum)
        {
            return Err(AlgoError::Config(format!("invalid OptG config {cfg:?}")));
        }
        Ok(Optg {
            cfg,
            scores: Vec::new(),
            score_momentum: Vec::new(),
        })
    }

    /// Weight learning rate of epoch `e`: linear warm-up, then `½·lr·(1 + cos(π e / E))`.
    pub fn weight_lr(&self, e: u64) -> f64 {
        let c = &self.cfg;
        if e < c.warmup_epochs {
            c.lr * (e + 1) as f64 / c.warmup_epochs as f64
        } else {
            0.5 * c.lr * (1.0 + (std::f64::consts::PI * e as f64 / c.epochs as f64).cos())
        }
    }

    fn sigma(&self, e: u64) -> f64 {
        Schedule::OptgSigmoid {
            target: 1.0,
            beta: self.cfg.beta,
            epochs: self.cfg.epochs,
        }
        .at(e)
    }

    /// Target sparsity of epoch `e`: `P · σ(e)`.
    pub fn target_sparsity(&self, e: u64) -> f64 {
        self.cfg.target * self.sigma(e)
    }

    /// The scores of layer `l`.
    pub fn scores(&self, l: usize) -> Option<&[f32]> {
        self.scores.get(l).map(|v| v.as_slice())
    }

    fn ensure_state(&mut self, layers: &[Layer]) {
        if self.scores.len() != layers.len() {
            self.scores = layers.iter().map(|l| vec![0f32; l.mask.len()]).collect();
            self.score_momentum = self.scores.clone();
        }
    }

    /// Sets the scores directly (tests, warm starts).
    pub fn set_scores(&mut self, scores: Vec<Vec<f32>>) {
        self.score_momentum = scores.iter().map(|s| vec![0f32; s.len()]).collect();
        self.scores = scores;
    }

    /// Rebuilds the masks for sparsity `p`: `θ` = the K-th largest score over all layers
    /// (`K = floor(N(1 − p))`), and each layer keeps its scores `>= θ` (ties kept).
    pub fn rebuild_masks(&mut self, layers: &mut [Layer], p: f64) -> Result<UpdateReport> {
        self.ensure_state(layers);
        let n: usize = self.scores.iter().map(|s| s.len()).sum();
        let k = ((n as f64 * (1.0 - p)).floor() as usize).clamp(1, n);
        let all: Vec<f32> = self.scores.concat();
        let top = sparse_core::select(
            &[n],
            &all,
            k,
            Candidates::All,
            Order::Largest,
            Parallelism::Auto,
        )?;
        let theta = top
            .iter_ones()
            .map(|i| all[i])
            .fold(f32::INFINITY, f32::min);
        let mut report = UpdateReport::default();
        for (l, s) in layers.iter_mut().zip(&self.scores) {
            let before = l.mask.clone();
            let keep: Vec<bool> = s.iter().map(|&v| v >= theta).collect();
            *l.mask = sparse_core::Mask::from_bools(l.mask.shape(), &keep)?;
            report.layers.push(LayerReport {
                name: l.name.to_string(),
                dropped: before.and_not(l.mask)?.count_ones(),
                grown: l.mask.and_not(&before)?.count_ones(),
                nnz: l.mask.count_ones(),
            });
        }
        Ok(report)
    }
}

impl SparseMethod for Optg {
    fn name(&self) -> &str {
        "optg"
    }

    fn is_update_step(&self, _: &StepInfo) -> bool {
        false
    }

    fn needs_dense_grad(&self, _: &StepInfo) -> bool {
        true
    }

    fn keeps_dense_values(&self) -> bool {
        true
    }

    fn on_gradients(&mut self, t: &StepInfo, layers: &mut [Layer]) -> Result<()> {
        self.ensure_state(layers);
        let lr = (self.weight_lr(t.epoch) * self.sigma(t.epoch)) as f32;
        let mu = self.cfg.momentum as f32;
        for ((l, s), b) in layers
            .iter()
            .zip(&mut self.scores)
            .zip(&mut self.score_momentum)
        {
            for (((s, b), &g), &w) in s
                .iter_mut()
                .zip(b.iter_mut())
                .zip(l.grad.as_slice())
                .zip(l.weight.as_slice())
            {
                *b = mu * *b + g * w;
                *s -= lr * *b;
            }
        }
        Ok(())
    }

    fn update(&mut self, _: &StepInfo, _: &mut [Layer]) -> Result<UpdateReport> {
        Ok(UpdateReport::default())
    }

    fn on_epoch_start(
        &mut self,
        t: &StepInfo,
        layers: &mut [Layer],
    ) -> Result<Option<UpdateReport>> {
        let p = self.target_sparsity(t.epoch);
        self.rebuild_masks(layers, p).map(Some)
    }

    fn state(&self) -> AlgoState {
        let mut s = AlgoState::default();
        for (l, (sc, m)) in self.scores.iter().zip(&self.score_momentum).enumerate() {
            s.tensors.insert(format!("scores.{l}"), sc.clone());
            s.tensors.insert(format!("score_momentum.{l}"), m.clone());
        }
        s
    }

    fn load_state(&mut self, s: &AlgoState) -> Result<()> {
        self.scores.clear();
        self.score_momentum.clear();
        for l in 0.. {
            let Some(sc) = s.tensors.get(&format!("scores.{l}")) else {
                break;
            };
            let m = s.tensor(&format!("score_momentum.{l}"))?;
            check_len("score momentum", m.len(), sc.len())?;
            self.scores.push(sc.clone());
            self.score_momentum.push(m.clone());
        }
        Ok(())
    }
}
