//! Hand-worked and invariant tests of the pruners (GMP, FGGP, OptG, GraNet), AGC and the
//! preset schedules (spec references in each test).

mod common;
use common::*;

use sparse_algos::agc::{tau_estimate, Agc, AgcConfig};
use sparse_algos::fggp::{Fggp, FggpConfig, FggpMode};
use sparse_algos::gmp::{Gmp, GmpConfig};
use sparse_algos::granet::{Granet, GranetConfig};
use sparse_algos::optg::{Optg, OptgConfig};
use sparse_algos::{preset, PresetContext, SparseMethod, StepInfo};
use sparse_core::{LayerShape, Mask, Schedule};
use sparse_kernels::DeviceMask;

#[test]
fn gmp_hits_the_cubic_target_exactly_and_the_final_sparsity_at_the_end() {
    let cfg = GmpConfig {
        final_sparsity: vec![0.9, 0.5],
        initial_sparsity: 0.0,
        start: 10,
        end: 50,
        interval: 7,
        global: false,
    };
    let mut gmp = Gmp::new(cfg).unwrap();
    let mut model = Model::random(&[100, 64], 1.0, 5);
    let mut seen_end = false;
    for t in 0..80u64 {
        if gmp.is_update_step(&step(t)) {
            let before: Vec<Mask> = model.m.iter().map(|m| m.mask().clone()).collect();
            let before_w: Vec<Vec<f32>> = model.w.iter().map(host).collect();
            gmp.update(&step(t), &mut model.layers()).unwrap();
            for (l, (&n, &sf)) in [100usize, 64].iter().zip(&[0.9, 0.5]).enumerate() {
                let p = (t - 10) as f64 / 40.0;
                let s = sf - sf * (1.0 - p).powi(3);
                let keep = n - (s * n as f64 + 1e-9).floor() as usize;
                assert_eq!(model.m[l].count_ones(), keep, "layer {l} at step {t}");
                // Pruned weights never come back, and the kept ones are the largest |w|.
                assert!(model.m[l].mask().and_not(&before[l]).unwrap().count_ones() == 0);
                let wl = host(&model.w[l]);
                let min_kept = model.m[l]
                    .mask()
                    .iter_ones()
                    .map(|i| wl[i].abs())
                    .fold(f32::INFINITY, f32::min);
                let max_pruned = before[l]
                    .and_not(model.m[l].mask())
                    .unwrap()
                    .iter_ones()
                    .map(|i| before_w[l][i].abs())
                    .fold(0f32, f32::max);
                assert!(min_kept >= max_pruned);
            }
            seen_end |= t == 50;
        }
    }
    assert!(seen_end);
    assert_eq!(model.m[0].count_ones(), 10);
    assert_eq!(model.m[1].count_ones(), 32);
    assert!(host(&model.w[0]).iter().filter(|v| **v != 0.0).count() <= 10);
}

fn fggp_model() -> Model {
    // Layer 0 is the (excluded) stem. Layer 1: 8 active weights.
    // |g|:  0.1 0.2 0.3 0.4 | 0.5 0.6 0.7 0.8   (gradient-first candidates: indices 0..3)
    // |w|:  0.9 0.8 0.7 0.6 | 0.1 0.2 0.3 0.4   (magnitude-first would pick 4, 5)
    let mut m = Model::new(
        vec![
            vec![1.0, 1.0],
            vec![0.9, -0.8, 0.7, 0.6, 0.1, 0.2, -0.3, 0.4],
        ],
        vec![vec![true, true], vec![true; 8]],
        vec![
            vec![0.0, 0.0],
            vec![0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        ],
    );
    // The stem is a (1x1x1x2) convolution, which FGGP leaves dense.
    let s4 = [1, 1, 1, 2];
    m.w[0] = m.w[0].clone().reshape(&s4).unwrap();
    m.g[0] = m.g[0].clone().reshape(&s4).unwrap();
    m.mom[0] = m.mom[0].clone().reshape(&s4).unwrap();
    m.m[0] = DeviceMask::cpu(m.m[0].mask().reshape(&s4).unwrap());
    m
}

#[test]
fn fggp_takes_gradient_first_candidates_then_smallest_magnitudes() {
    // Density target at τ = ΔT with T_e = 80: d = 0.75 + 0.25·(1 − 10/80)^3 ≈ 0.9175
    // -> to_prune = floor(8·0.0825) = 0. Use a direct density via a tiny run length.
    let cfg = FggpConfig {
        initial_density: 1.0,
        final_density: 0.75,
        select_ratio: 0.5,
        interval: 10,
        end_ratio: 1.0,
        exact_final: false,
        prune_first_layer: false,
        mode: FggpMode::GradientFirst,
    };
    let mut f = Fggp::new(cfg.clone()).unwrap();
    let mut model = fggp_model();
    // τ = 10 = T_e (total 10): density 0.75 -> to_prune = 2; K = floor(0.5·8) = 4.
    let info = StepInfo {
        step: 9,
        epoch: 0,
        steps_per_epoch: 10,
        total_steps: 10,
    };
    assert!(f.is_update_step(&info));
    f.update(&info, &mut model.layers()).unwrap();
    // Candidates 0..3 (smallest |g|); within them the smallest |w| are 3 (0.6) and 2 (0.7).
    assert_eq!(model.ones(1), vec![0, 1, 4, 5, 6, 7]);
    assert_eq!(model.ones(0), vec![0, 1], "stem untouched");
    assert_eq!(host(&model.w[1])[2], 0.0);
    // The annealing comparator (magnitude first) prunes differently.
    let mut a = Fggp::new(FggpConfig {
        mode: FggpMode::Annealing {
            rate: Schedule::Constant { value: 0.0 },
        },
        ..cfg
    })
    .unwrap();
    let mut model = fggp_model();
    a.update(&info, &mut model.layers()).unwrap();
    assert_eq!(model.ones(1), vec![0, 1, 2, 3, 6, 7]);
}

#[test]
fn optg_global_threshold_per_layer_counts_and_revival() {
    let cfg = OptgConfig {
        target: 0.5,
        beta: 1.0,
        epochs: 10,
        lr: 0.1,
        warmup_epochs: 2,
        momentum: 0.9,
        ramp: sparse_algos::optg::OptgRamp::Paper,
    };
    let mut o = Optg::new(cfg).unwrap();
    let mut model = Model::new(
        vec![vec![1.0; 4], vec![1.0; 6]],
        vec![vec![true; 4], vec![true; 6]],
        vec![vec![0.0; 4], vec![0.0; 6]],
    );
    // Scores: layer 0 all high, layer 1 all low except one -> global threshold keeps 5.
    o.set_scores(vec![
        vec![5.0, 4.0, 3.0, 2.0],
        vec![0.1, 0.2, 6.0, 0.3, 0.4, 0.5],
    ])
    .unwrap();
    o.rebuild_masks(&mut model.layers(), 0.5).unwrap();
    assert_eq!(model.ones(0), vec![0, 1, 2, 3]);
    assert_eq!(model.ones(1), vec![2]);
    // Stored values of pruned weights survive (dense values).
    assert_eq!(host(&model.w[1])[0], 1.0);
    // A pruned weight whose score rises is revived with its stored value.
    o.set_scores(vec![
        vec![5.0, 4.0, 3.0, 0.0],
        vec![0.1, 9.0, 6.0, 0.3, 0.4, 0.5],
    ])
    .unwrap();
    o.rebuild_masks(&mut model.layers(), 0.5).unwrap();
    assert_eq!(model.ones(0), vec![0, 1, 2]);
    assert_eq!(model.ones(1), vec![1, 2]);
    assert_eq!(host(&model.w[1])[1], 1.0);
    // Score SGD: ∂L/∂S = G ⊙ W, first step buf = g.
    let mut o = Optg::new(OptgConfig {
        target: 0.5,
        beta: 1.0,
        epochs: 10,
        lr: 0.1,
        warmup_epochs: 2,
        momentum: 0.9,
        ramp: sparse_algos::optg::OptgRamp::Paper,
    })
    .unwrap();
    let mut model = Model::new(
        vec![vec![2.0, -1.0]],
        vec![vec![true, true]],
        vec![vec![0.5, 0.25]],
    );
    let info = StepInfo {
        step: 0,
        epoch: 7,
        steps_per_epoch: 1,
        total_steps: 10,
    };
    o.on_gradients(&info, &mut model.layers()).unwrap();
    let lr_s =
        0.5 * 0.1 * (1.0 + (std::f64::consts::PI * 0.7).cos()) / (1.0 + (-(7.0f64 - 5.0)).exp());
    let s = o.scores(0).unwrap().unwrap();
    assert!((s[0] as f64 + lr_s * 1.0).abs() < 1e-7 && (s[1] as f64 + lr_s * -0.25).abs() < 1e-7);
    assert!((o.target_sparsity(5) - 0.25).abs() < 1e-12);
}

#[test]
fn granet_prunes_globally_then_regrows_at_constant_budget() {
    let cfg = GranetConfig {
        initial_density: 1.0,
        final_density: 0.5,
        interval: 10,
        prune_start: 0,
        prune_end: 20,
        regen_fraction: Schedule::Constant { value: 0.25 },
        exact_final: false,
    };
    let mut g = Granet::new(cfg).unwrap();
    // Rounds: curr = 1 (step 10) -> decay (1 − 1/2)^3 = 0.125 -> s = 0.5·0.875 = 0.4375.
    assert!((g.target_sparsity(10).unwrap() - 0.4375).abs() < 1e-12);
    assert_eq!(g.target_sparsity(20), None);
    let mut model = Model::new(
        vec![
            vec![0.1, 0.2, 0.3, 0.4],
            vec![0.5, 0.6, 0.7, 0.8, 0.01, 0.02],
        ],
        vec![vec![true; 4], vec![true; 6]],
        vec![vec![0.0, 0.0, 3.0, 0.0], vec![0.0, 0.0, 0.0, 0.0, 0.0, 2.0]],
    );
    // Step 0 (1-based 1) is not an update; 1-based step 10 is.
    assert!(!g.is_update_step(&step(0)) && g.is_update_step(&step(9)));
    // Prune: keep int(10·0.5625) = 5 largest globally: layer 1's 0..3 and layer 0's 0.4.
    // Regenerate (f = 0.25, ceil): layer 0 drops its one weight (index 3) and regrows the
    // largest |g| among its other positions (index 2); layer 1 drops 0.5 (index 0) and
    // regrows index 5 (|g| = 2).
    let r = g.update(&step(9), &mut model.layers()).unwrap();
    assert_eq!(model.ones(0), vec![2]);
    assert_eq!(model.ones(1), vec![1, 2, 3, 5]);
    assert_eq!((r.dropped(), r.grown()), (5 + 2, 2));
    assert_eq!(
        (
            host(&model.w[0])[2],
            host(&model.w[1])[5],
            host(&model.mom[1])[5]
        ),
        (0.0, 0.0, 0.0)
    );
    // After the pruning window only regeneration runs: budgets stay.
    g.update(&step(19), &mut model.layers()).unwrap();
    assert_eq!((model.m[0].count_ones(), model.m[1].count_ones()), (1, 4));
    let _ = &mut g;
}

#[test]
fn agc_correction_tau_and_c0() {
    // Tiny linear model y = w·x with squared loss, one parameter vector of 2 weights.
    // Batch (x = [1, 2], y = 1): g(w) = 2(w·x − y)·x.
    let grad = |w: [f32; 2]| {
        let e = w[0] + 2.0 * w[1] - 1.0;
        [2.0 * e, 4.0 * e]
    };
    let (w, w_snap) = ([0.5f32, 0.5], [0.0f32, 0.25]);
    let g = grad(w); // e = 0.5 -> [1, 2]
    let gs = grad(w_snap); // e = -0.5 -> [-1, -2]
    assert_eq!((g, gs), ([1.0, 2.0], [-1.0, -2.0]));
    let mut agc = Agc::new(
        AgcConfig {
            gamma: 0.1,
            alpha: 0.3,
            tau0: 0.1,
        },
        vec![t(&w_snap)],
    )
    .unwrap();
    // Pass A over 3 batches: losses with a known regression slope of 2 on the snapshot's.
    let snap = [1.0, 2.0, 3.0];
    let cur = [2.5, 4.5, 6.5];
    assert!((tau_estimate(&cur, &snap) - 2.0).abs() < 1e-12);
    agc.finish_pass_a(&cur, &snap, vec![t(&[3.0, -6.0])], 3, vec![t(&w_snap)])
        .unwrap();
    // τ̂ = 0.7·0.1 + 0.3·2 = 0.67, c = 0.067, μ̃ = [1, -2].
    assert!((agc.tau() - 0.67).abs() < 1e-12);
    let mut d = t(&gs);
    agc.correct(0, &mut d, &t(&g)).unwrap();
    let d = host(&d);
    let c = 0.067f32;
    assert!((d[0] - (1.0 + c * (1.0 - -1.0))).abs() < 1e-6);
    assert!((d[1] - (2.0 + c * (-2.0 - -2.0))).abs() < 1e-6);
    // Guards: constant snapshot losses -> τ = 1; fewer than two batches -> 1.
    assert_eq!(tau_estimate(&[1.0, 2.0], &[3.0, 3.0]), 1.0);
    assert_eq!(tau_estimate(&[1.0], &[3.0]), 1.0);
    // c = 0 (γ = 0) leaves the gradient untouched.
    let mut agc0 = Agc::new(
        AgcConfig {
            gamma: 0.0,
            ..AgcConfig::default()
        },
        vec![t(&[0.0, 0.0])],
    )
    .unwrap();
    agc0.finish_pass_a(&cur, &snap, vec![t(&[3.0, -6.0])], 3, vec![t(&[0.0, 0.0])])
        .unwrap();
    let mut d = t(&gs);
    agc0.correct(0, &mut d, &t(&g)).unwrap();
    assert_eq!(host(&d), g.to_vec());
    // State round trip.
    let s = agc.state().unwrap();
    let mut other = Agc::new(AgcConfig::default(), vec![t(&[9.0, 9.0])]).unwrap();
    other.load_state(&s).unwrap();
    assert_eq!(
        (other.tau(), host(other.mu(0))),
        (agc.tau(), host(agc.mu(0)))
    );
}

#[test]
fn preset_schedules_match_the_spec_formulas() {
    let ctx = PresetContext {
        sparsity: 0.9,
        layers: vec![
            LayerShape::new("conv1", &[16, 3, 3, 3]),
            LayerShape::new("fc", &[10, 640]),
        ],
        total_steps: 1000,
        steps_per_epoch: 100,
        epochs: 10,
        lr: 0.1,
        seed: 0,
        interval: None,
        schedule: sparse_algos::ScheduleMode::Paper,
        distribution: None,
    };
    // RigL: updates every 100 steps from 0 to 750; skip the optimizer on those steps.
    let rigl = preset("rigl", &ctx).unwrap();
    let on = |m: &dyn SparseMethod, t| m.is_update_step(&step(t));
    assert!(
        on(&*rigl.method, 0)
            && on(&*rigl.method, 700)
            && !on(&*rigl.method, 750 + 100)
            && !on(&*rigl.method, 50)
    );
    assert!(
        rigl.method.skip_optimizer_step(&step(100)) && !rigl.method.skip_optimizer_step(&step(101))
    );
    assert!(rigl.method.needs_dense_grad(&step(100)) && !rigl.method.needs_dense_grad(&step(101)));
    // RigL-ITOP: every 1000 iterations, 1-based.
    let itop = preset(
        "rigl-itop",
        &PresetContext {
            total_steps: 5000,
            ..ctx.clone()
        },
    )
    .unwrap();
    assert!(itop.method.is_update_step(&step(999)) && !itop.method.is_update_step(&step(1000)));
    assert!(!itop.method.skip_optimizer_step(&step(999)));
    // Unknown name: a clear error listing the known ones.
    let err = preset("rigll", &ctx).err().unwrap().to_string();
    assert!(err.contains("unknown method") && err.contains("rigl-itop"));
    // FGGP density formula.
    let f = Fggp::new(FggpConfig {
        initial_density: 1.0,
        final_density: 0.1,
        select_ratio: 0.5,
        interval: 10,
        end_ratio: 0.8,
        exact_final: false,
        prune_first_layer: false,
        mode: FggpMode::GradientFirst,
    })
    .unwrap();
    assert!((f.density(400, 1000) - (0.1 + 0.9 * 0.5f64.powi(3))).abs() < 1e-12);
    assert!((f.density(800, 1000) - 0.1).abs() < 1e-12);
    // GMP target.
    let g = Gmp::new(GmpConfig {
        final_sparsity: vec![0.8],
        initial_sparsity: 0.0,
        start: 0,
        end: 100,
        interval: 10,
        global: false,
    })
    .unwrap();
    assert!((g.target(0.8, 50) - 0.8 * (1.0 - 0.125)).abs() < 1e-12);
    assert!(
        preset("gmp", &ctx).is_ok()
            && preset("optg", &ctx).is_ok()
            && preset("granet", &ctx).is_ok()
    );
    // GMP keeps the stem dense and prunes the rest harder to reach the global target; a
    // target the other layers cannot absorb is an error, not a silently lower sparsity.
    let tiny_fc = PresetContext {
        layers: vec![
            LayerShape::new("conv1", &[16, 3, 3, 3]),
            LayerShape::new("fc", &[10, 64]),
        ],
        ..ctx.clone()
    };
    let err = preset("gmp", &tiny_fc).err().unwrap().to_string();
    assert!(err.contains("keeps 432 weights dense"), "{err}");
}
