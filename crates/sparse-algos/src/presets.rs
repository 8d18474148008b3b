//! Named presets reproducing each paper's setting (spec §11), scaled to a run's length.

use sparse_core::{Distribution, LayerShape, Schedule};

use crate::baselines::{Snip, Static};
use crate::dst::{DropGrow, DropRule, DstConfig, GrowInitRule, GrowRule, Rounding};
use crate::error::{AlgoError, Result};
use crate::fggp::{Fggp, FggpConfig, FggpMode};
use crate::gmp::{Gmp, GmpConfig};
use crate::granet::{Granet, GranetConfig};
use crate::method::{Dense, SparseMethod};
use crate::optg::{Optg, OptgConfig, OptgRamp};

/// Every preset with a one-line description (`sparse-train list`).
pub const PRESETS: &[(&str, &str)] = &[
    ("dense", "dense baseline: no masks"),
    ("static", "static sparse baseline: the initial random mask (ERK by default), never changed"),
    ("snip", "SNIP: one-shot global pruning at init by |w·g| of one batch (its step skipped), then fixed"),
    ("set", "SET (RIGL-TF/JAXP form): ERK, |w| drop, random grow, zero init, f0 0.3 cosine to 0.75T, ΔT 100, skip step on update"),
    ("set-orig", "official SET: ER, sign-split drop of ζ=0.3, random grow with randn/10 init, once per epoch (not after the last), step taken"),
    ("rigl", "RigL paper: ERK, |w| drop, |G| grow, floor, f0 0.3 cosine to 0.75T, ΔT 100, skip step on update"),
    ("rigl-itop", "RigL-ITOP (GraNet/AGC baseline): ERK, ceil, f0 0.5 ITOP cosine to 0.005 over T, ΔT 1000, never stops, step taken"),
    ("dst-ee", "DST-EE: rigl-itop with grow score |G| + c·sqrt(ln t/(N+eps)), c 1e-4, eps 1e-8 [UNVERIFIED defaults]"),
    ("gmp", "GMP (Zhu & Gupta): uniform per layer (a stem conv stays dense), cubic from 0.2T to 0.75T, ΔT 100, dense start"),
    ("granet", "GraNet: dense start, global cubic magnitude pruning to 0.5T, regeneration 0.5 -> 0.005 ITOP cosine, ΔT 1000"),
    ("fggp", "FGGP: dense start, global gradient-first (r 0.5) then magnitude pruning, cubic to 0.8T, ΔT 2000, first layer dense"),
    ("fggp-annealing", "FGGP's annealing comparator: magnitude first, gradient next, rate 0.5 -> 0.005"),
    ("optg", "OptG: scores on G⊙W, sigmoid sparsity ramp (β 1) per epoch, global threshold, pruned weights keep values"),
];

/// How a preset's mask-update interval ΔT follows the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleMode {
    /// ΔT scales with the run so it gets the paper's number of updates (see
    /// [`scaled_interval`]); schedule points are fractions of the run either way.
    #[default]
    Scaled,
    /// The paper's ΔT in steps, whatever the run's length.
    Paper,
}

/// A preset's update interval in its paper: ΔT steps in a run of `horizon` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperInterval {
    /// ΔT.
    pub interval: u64,
    /// The paper's run length `T` in steps (CIFAR settings, spec §11).
    pub horizon: u64,
    /// The fraction of the run over which masks change (RigL stops at 75%, GraNet's
    /// pruning at 50%, ...), for the lower bound on the number of updates.
    pub window: f64,
}

/// The papers' intervals (`None`: the preset updates per epoch, or never).
pub fn paper_interval(name: &str) -> Option<PaperInterval> {
    let p = |interval, horizon, window| {
        Some(PaperInterval {
            interval,
            horizon,
            window,
        })
    };
    match name {
        // RigL CIFAR-10: ΔT 100, stop at 75,000 of 97,656 steps.
        "set" | "rigl" => p(100, 97_656, 0.75),
        // ITOP / DST-EE CIFAR: ΔT 1000, 250 epochs at batch 128.
        "rigl-itop" | "dst-ee" => p(1000, 97_750, 1.0),
        // GMP as the RIGL-TF baseline, pruning from 20% to 75%.
        "gmp" => p(100, 97_656, 0.55),
        // GraNet: ΔT 1000, 160 epochs at batch 128, pruning until 50%.
        "granet" => p(1000, 62_560, 0.5),
        // FGGP: ΔT 2000, 160 epochs at batch 64, updates until 80%.
        "fggp" | "fggp-annealing" => p(2000, 125_120, 0.8),
        _ => None,
    }
}

/// The fewest steps between two scaled updates.
pub const MIN_SCALED_INTERVAL: u64 = 10;
/// The fewest updates a scaled schedule gives in its window (when the run allows it).
pub const MIN_SCALED_UPDATES: u64 = 5;

/// ΔT for a run of `total` steps: the paper's ΔT scaled by `total / horizon`, so the run
/// gets the paper's number of updates, never more often than every
/// [`MIN_SCALED_INTERVAL`] steps and never less often than the paper; but at least
/// [`MIN_SCALED_UPDATES`] updates in the window when the run is that short.
pub fn scaled_interval(p: PaperInterval, total: u64) -> u64 {
    let scaled = (total as f64 * p.interval as f64 / p.horizon as f64).round() as u64;
    let dt = scaled.clamp(MIN_SCALED_INTERVAL, p.interval);
    let window = (total as f64 * p.window) as u64;
    if window / dt < MIN_SCALED_UPDATES {
        (window / MIN_SCALED_UPDATES).max(1)
    } else {
        dt
    }
}

/// How a preset's initial masks are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct InitSpec {
    /// Layer distribution of the initial sparsity.
    pub distribution: Distribution,
    /// Initial global sparsity (0 = dense start).
    pub sparsity: f64,
}

/// What a run provides to instantiate a preset.
#[derive(Debug, Clone)]
pub struct PresetContext {
    /// Target (final) global sparsity.
    pub sparsity: f64,
    /// Sparsifiable layers in order (the first is the stem).
    pub layers: Vec<LayerShape>,
    /// Total training steps `T`.
    pub total_steps: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Epochs.
    pub epochs: u64,
    /// Base learning rate (OptG's score lr follows it).
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Overrides the preset's update interval ΔT.
    pub interval: Option<u64>,
    /// How ΔT follows the run when not overridden.
    pub schedule: ScheduleMode,
    /// Overrides the preset's distribution.
    pub distribution: Option<Distribution>,
}

/// An instantiated preset.
pub struct Preset {
    /// Preset name.
    pub name: String,
    /// Initial masks.
    pub init: InitSpec,
    /// The method.
    pub method: Box<dyn SparseMethod>,
    /// What the trainer needs to know about the method, so it never names one.
    pub props: Properties,
}

/// Properties a preset declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties {
    /// The run has masks (every preset but `dense`).
    pub masked: bool,
    /// Every mask update keeps each layer's nonzero count (drop-and-grow methods): the
    /// trainer checks the exact budget after every update.
    pub constant_budget: bool,
    /// Masks change at step-scheduled updates (ΔT), so a run shorter than the schedule
    /// assumes gets few of them (the trainer warns); false for `dense` and OptG (per epoch).
    pub step_scheduled: bool,
}

impl Properties {
    fn of(name: &str) -> Properties {
        let constant_budget = matches!(
            name,
            "static" | "set" | "set-orig" | "rigl" | "rigl-itop" | "dst-ee"
        );
        Properties {
            masked: name != "dense",
            constant_budget,
            step_scheduled: !matches!(name, "dense" | "optg" | "static" | "snip"),
        }
    }
}

fn frac(ctx: &PresetContext, f: f64) -> u64 {
    ((ctx.total_steps as f64 * f) as u64).max(1)
}

/// Instantiates preset `name` for a run (see [`PRESETS`]).
pub fn preset(name: &str, ctx: &PresetContext) -> Result<Preset> {
    sparse_core::error::check_sparsity("target", ctx.sparsity)?;
    if ctx.total_steps == 0 || ctx.layers.is_empty() {
        return Err(AlgoError::Config(
            "a preset needs at least one step and one layer".into(),
        ));
    }
    let t = ctx.total_steps;
    // RigL's uniform setting keeps the stem convolution dense; an MLP's first layer holds
    // most of its weights, so it stays sparse.
    let stem: Vec<String> = ctx
        .layers
        .iter()
        .take(1)
        .filter(|l| l.shape.len() == 4)
        .map(|l| l.name.clone())
        .collect();
    let first_dense = Distribution::Uniform {
        dense_layers: stem.clone(),
    };
    let dist = |default: Distribution| ctx.distribution.clone().unwrap_or(default);
    let sparse_start = |d: Distribution| InitSpec {
        distribution: dist(d),
        sparsity: ctx.sparsity,
    };
    let dense_start = InitSpec {
        distribution: Distribution::default(),
        sparsity: 0.0,
    };
    let interval = |d: u64| {
        let auto = match (ctx.schedule, paper_interval(name)) {
            (ScheduleMode::Scaled, Some(p)) => scaled_interval(p, t),
            _ => d,
        };
        ctx.interval.unwrap_or(auto).max(1)
    };
    let dst = |name: &str, grow: GrowRule, itop: bool| -> Result<Box<dyn SparseMethod>> {
        let cfg = if itop {
            let dt = interval(1000);
            DstConfig {
                name: name.into(),
                drop_fraction: Schedule::ItopCosine {
                    f0: 0.5,
                    floor: 0.005,
                    total: t,
                },
                interval: dt,
                first: dt - 1,
                end: None,
                rounding: Rounding::Ceil,
                skip_step_on_update: false,
                drop: DropRule::Magnitude,
                grow,
                grow_init: GrowInitRule::Zero,
                drop_noise: None,
                seed: ctx.seed,
            }
        } else {
            let end = frac(ctx, 0.75);
            DstConfig {
                name: name.into(),
                drop_fraction: Schedule::RiglCosine { f0: 0.3, end },
                interval: interval(100),
                first: 0,
                end: Some(end),
                rounding: Rounding::Floor,
                skip_step_on_update: true,
                drop: DropRule::Magnitude,
                grow,
                grow_init: GrowInitRule::Zero,
                drop_noise: None,
                seed: ctx.seed,
            }
        };
        Ok(Box::new(DropGrow::new(cfg)?))
    };
    let (init, method): (InitSpec, Box<dyn SparseMethod>) = match name {
        "dense" => (dense_start.clone(), Box::new(Dense)),
        "static" => (sparse_start(Distribution::default()), Box::new(Static)),
        "snip" => (dense_start.clone(), Box::new(Snip::new(ctx.sparsity)?)),
        "set" => (
            sparse_start(Distribution::default()),
            dst("set", GrowRule::Random, false)?,
        ),
        "rigl" => (
            sparse_start(Distribution::default()),
            dst("rigl", GrowRule::Gradient, false)?,
        ),
        "rigl-itop" => (
            sparse_start(Distribution::default()),
            dst("rigl-itop", GrowRule::Gradient, true)?,
        ),
        "dst-ee" => (
            sparse_start(Distribution::default()),
            dst(
                "dst-ee",
                GrowRule::Explore {
                    c: 1e-4,
                    eps: 1e-8,
                    normalize: false,
                    per_iteration: true,
                },
                true,
            )?,
        ),
        "set-orig" => {
            let spe = interval(ctx.steps_per_epoch);
            let cfg = DstConfig {
                name: "set-orig".into(),
                drop_fraction: Schedule::Constant { value: 0.3 },
                interval: spe,
                first: spe - 1,
                end: Some(t.saturating_sub(spe + 1)),
                rounding: Rounding::Floor,
                skip_step_on_update: false,
                drop: DropRule::SignSplit,
                grow: GrowRule::Random,
                grow_init: GrowInitRule::Normal { std: 0.1 },
                drop_noise: None,
                seed: ctx.seed,
            };
            (
                sparse_start(Distribution::Er),
                Box::new(DropGrow::new(cfg)?),
            )
        }
        "gmp" => {
            let d = dist(first_dense.clone());
            // Layers kept dense leave the others sparser, so the global sparsity is the
            // one requested.
            let sparsity = match &d {
                Distribution::Uniform { dense_layers } if !dense_layers.is_empty() => {
                    let total: usize = ctx.layers.iter().map(|l| l.numel()).sum();
                    let dense: usize = ctx
                        .layers
                        .iter()
                        .filter(|l| dense_layers.contains(&l.name))
                        .map(|l| l.numel())
                        .sum();
                    let s = ctx.sparsity * total as f64 / (total - dense).max(1) as f64;
                    if s >= 1.0 {
                        return Err(AlgoError::Config(format!(
                            "gmp keeps {dense} weights dense, more than a sparsity of {} allows",
                            ctx.sparsity
                        )));
                    }
                    s
                }
                _ => ctx.sparsity,
            };
            let finals = sparse_core::layer_sparsities(&ctx.layers, sparsity, &d, &[])?;
            let cfg = GmpConfig {
                final_sparsity: finals,
                initial_sparsity: 0.0,
                start: frac(ctx, 0.2),
                end: frac(ctx, 0.75).max(frac(ctx, 0.2) + 1),
                interval: interval(100),
                global: false,
            };
            (dense_start.clone(), Box::new(Gmp::new(cfg)?))
        }
        "granet" => {
            let dt = interval(1000);
            let cfg = GranetConfig {
                initial_density: 1.0,
                final_density: 1.0 - ctx.sparsity,
                interval: dt,
                prune_start: 0,
                prune_end: frac(ctx, 0.5).max(2 * dt),
                regen_fraction: Schedule::ItopCosine {
                    f0: 0.5,
                    floor: 0.005,
                    total: t,
                },
                exact_final: true,
            };
            (dense_start.clone(), Box::new(Granet::new(cfg)?))
        }
        "fggp" | "fggp-annealing" => {
            let mode = if name == "fggp" {
                FggpMode::GradientFirst
            } else {
                FggpMode::Annealing {
                    rate: Schedule::ItopCosine {
                        f0: 0.5,
                        floor: 0.005,
                        total: t,
                    },
                }
            };
            // FGGP keeps the stem convolution dense; the other layers end sparser so the
            // run's global sparsity is the one requested.
            let numel: Vec<usize> = ctx.layers.iter().map(|l| l.numel()).collect();
            let total: usize = numel.iter().sum();
            let stem = if stem.is_empty() || ctx.layers.len() < 2 {
                0
            } else {
                numel[0]
            };
            let final_density =
                ((1.0 - ctx.sparsity) * total as f64 - stem as f64) / (total - stem) as f64;
            if final_density <= 0.0 {
                return Err(AlgoError::Config(format!(
                    "fggp keeps the stem convolution dense ({stem} weights), more than the {:.0} \
                     a sparsity of {} allows",
                    (1.0 - ctx.sparsity) * total as f64,
                    ctx.sparsity
                )));
            }
            let cfg = FggpConfig {
                initial_density: 1.0,
                final_density,
                select_ratio: 0.5,
                interval: interval(2000),
                end_ratio: 0.8,
                exact_final: true,
                prune_first_layer: false,
                mode,
            };
            (dense_start.clone(), Box::new(Fggp::new(cfg)?))
        }
        "optg" => {
            let cfg = OptgConfig {
                target: ctx.sparsity,
                beta: 1.0,
                epochs: ctx.epochs.max(1),
                lr: ctx.lr,
                warmup_epochs: 5.min(ctx.epochs.max(1)),
                momentum: 0.9,
                ramp: match ctx.schedule {
                    ScheduleMode::Scaled => OptgRamp::Exact { freeze: 0.2 },
                    ScheduleMode::Paper => OptgRamp::Paper,
                },
            };
            (dense_start.clone(), Box::new(Optg::new(cfg)?))
        }
        other => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(AlgoError::Config(format!(
                "unknown method `{other}` (known: {})",
                names.join(", ")
            )));
        }
    };
    Ok(Preset {
        name: name.to_string(),
        init,
        method,
        props: Properties::of(name),
    })
}
