//! Hand-worked and invariant tests of every criterion (spec references in each test).

mod common;
use common::*;

use sparse_algos::dst::{DropGrow, DropRule, GrowRule};
use sparse_algos::{preset, PresetContext, SparseMethod};
use sparse_core::{LayerShape, Mask};
use sparse_kernels::Tensor;

#[test]
fn every_drop_and_grow_method_keeps_budgets_and_resets_new_weights() {
    let ctx = |sparsity| PresetContext {
        sparsity,
        layers: vec![
            LayerShape::new("a", &[40]),
            LayerShape::new("b", &[200]),
            LayerShape::new("c", &[64]),
        ],
        total_steps: 1000,
        steps_per_epoch: 50,
        epochs: 20,
        lr: 0.1,
        seed: 3,
        interval: Some(10),
        schedule: sparse_algos::ScheduleMode::Paper,
        distribution: None,
    };
    for name in ["set", "rigl", "rigl-itop", "dst-ee", "set-orig"] {
        let mut p = preset(name, &ctx(0.8)).unwrap();
        let mut model = Model::random(&[40, 200, 64], 0.3, 11);
        let budgets: Vec<usize> = model.m.iter().map(|m| m.count_ones()).collect();
        let mut updates = 0;
        for t in 0..400u64 {
            let info = step(t);
            // A fresh "gradient" each step so growth changes.
            for (l, g) in model.g.iter_mut().enumerate() {
                let v = (0..g.numel())
                    .map(|i| (((i * 31 + l * 7 + t as usize * 13) % 101) as f32 - 50.0) / 50.0)
                    .collect();
                *g = Tensor::cpu(g.shape(), v).unwrap();
            }
            // Simulate training moving the active weights.
            for (w, m) in model.w.iter_mut().zip(&model.m) {
                let mut v = host(w);
                for i in m.mask().iter_ones() {
                    v[i] += 0.01 * ((i + t as usize) % 5) as f32 - 0.02;
                }
                *w = Tensor::cpu(w.shape(), v).unwrap();
            }
            if p.method.is_update_step(&info) {
                let before_m: Vec<Mask> = model.m.iter().map(|m| m.mask().clone()).collect();
                let before_w: Vec<Vec<f32>> = model.w.iter().map(host).collect();
                let before_mom: Vec<Vec<f32>> = model.mom.iter().map(host).collect();
                let r = p.method.update(&info, &mut model.layers()).unwrap();
                updates += 1;
                for l in 0..3 {
                    assert_eq!(
                        model.m[l].count_ones(),
                        budgets[l],
                        "{name}: layer {l} budget at step {t}"
                    );
                    assert_eq!(r.layers[l].dropped, r.layers[l].grown, "{name}");
                    let (wl, ml) = (host(&model.w[l]), host(&model.mom[l]));
                    for i in 0..model.m[l].len() {
                        let (was, is) = (before_m[l].get(i), model.m[l].mask().get(i));
                        let (w, mo) = (wl[i], ml[i]);
                        match (was, is) {
                            (true, true) => assert_eq!(
                                (w, mo),
                                (before_w[l][i], before_mom[l][i]),
                                "{name}: kept/regrown untouched"
                            ),
                            (false, true) => {
                                assert_eq!(mo, 0.0, "{name}: grown momentum");
                                if name != "set-orig" {
                                    assert_eq!(w, 0.0, "{name}: grown weight starts at 0");
                                }
                            }
                            (true, false) => {
                                assert_eq!((w, mo), (0.0, 0.0), "{name}: dropped zeroed")
                            }
                            (false, false) => assert_eq!(w, 0.0),
                        }
                    }
                }
            }
            p.method.on_step_end(&info, &mut model.layers()).unwrap();
        }
        assert!(updates > 3, "{name} updated {updates} times");
    }
}

#[test]
fn set_drops_smallest_magnitudes_and_grows_randomly_outside_kept() {
    // Active: 0..4 with |w| = 0.9, 0.1, 0.5, 0.2 -> f = 0.5 drops indices 1 and 3.
    let mut model = Model::new(
        vec![vec![0.9, -0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0]],
        vec![vec![true, true, true, true, false, false, false, false]],
        vec![vec![0.0; 8]],
    );
    let mut m = DropGrow::new(dst(GrowRule::Random, 0.5)).unwrap();
    let r = m.update(&step(0), &mut model.layers()).unwrap();
    let ones = model.ones(0);
    assert_eq!(ones.len(), 4);
    assert!(
        ones.contains(&0) && ones.contains(&2),
        "kept the two largest: {ones:?}"
    );
    assert_eq!(r.layers[0].dropped + 2, 2 + r.layers[0].grown);
    // Official SET sign split: positives {0.9, 0.5, 0.2}, negatives {-0.1}; ζ = 0.5 floor
    // -> drop 1 positive (0.2 at index 3) and 0 negatives.
    let mut model = Model::new(
        vec![vec![0.9, -0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0]],
        vec![vec![true, true, true, true, false, false, false, false]],
        vec![vec![0.0; 8]],
    );
    let mut cfg = dst(GrowRule::Random, 0.5);
    cfg.drop = DropRule::SignSplit;
    let mut m = DropGrow::new(cfg).unwrap();
    m.update(&step(0), &mut model.layers()).unwrap();
    let ones = model.ones(0);
    assert!(
        ones.contains(&0) && ones.contains(&1) && ones.contains(&2) && ones.len() == 4,
        "{ones:?}"
    );
}

fn rigl_example() -> Model {
    // Active 0,2,4,6 (|w| 0.4, 0.3, 0.2, 0.1); |g| at inactive 1,3,5,7 = 0.1, 0.9, 0.5, 0.2.
    Model::new(
        vec![vec![0.4, 0.0, -0.3, 0.0, 0.2, 0.0, 0.1, 0.0]],
        vec![vec![true, false, true, false, true, false, true, false]],
        vec![vec![5.0, 0.1, 5.0, -0.9, 5.0, 0.5, 5.0, 0.2]],
    )
}

#[test]
fn rigl_grows_largest_gradients_and_dst_ee_with_c0_is_rigl() {
    // f = 0.5: drop 4 and 6 (smallest |w|); candidates = 1,3,4,5,6,7; |g| there =
    // 0.1, 0.9, 5, 0.5, 5, 0.2 -> grow 4 and 6 back (regrown, untouched).
    let mut model = rigl_example();
    let mut m = DropGrow::new(dst(GrowRule::Gradient, 0.5)).unwrap();
    let r = m.update(&step(0), &mut model.layers()).unwrap();
    assert_eq!(model.ones(0), vec![0, 2, 4, 6]);
    assert_eq!((r.layers[0].dropped, r.layers[0].grown), (0, 0));
    assert_eq!(host(&model.w[0])[4], 0.2);
    // With the kept weights' gradients small, growth goes to 3 then 5.
    let mut model = rigl_example();
    let mut g = host(&model.g[0]);
    for i in [0, 2, 4, 6] {
        g[i] = 0.0;
    }
    model.g[0] = Tensor::cpu(model.g[0].shape(), g).unwrap();
    let mut m = DropGrow::new(dst(GrowRule::Gradient, 0.5)).unwrap();
    m.update(&step(0), &mut model.layers()).unwrap();
    assert_eq!(model.ones(0), vec![0, 2, 3, 5]);
    // DST-EE with c = 0 is RigL exactly.
    let mut a = rigl_example();
    let mut b = rigl_example();
    let mut rigl = DropGrow::new(dst(GrowRule::Gradient, 0.5)).unwrap();
    let mut ee = DropGrow::new(dst(
        GrowRule::Explore {
            c: 0.0,
            eps: 1e-8,
            normalize: false,
            per_iteration: true,
        },
        0.5,
    ))
    .unwrap();
    for t in 0..5 {
        rigl.update(&step(t), &mut a.layers()).unwrap();
        ee.update(&step(t), &mut b.layers()).unwrap();
        ee.on_step_end(&step(t), &mut b.layers()).unwrap();
        assert_eq!(
            a.m.iter().map(|m| m.mask()).collect::<Vec<_>>(),
            b.m.iter().map(|m| m.mask()).collect::<Vec<_>>()
        );
        assert_eq!(
            a.w.iter().map(host).collect::<Vec<_>>(),
            b.w.iter().map(host).collect::<Vec<_>>()
        );
    }
}

#[test]
fn dst_ee_with_large_c_grows_least_visited_positions() {
    let mut model = rigl_example();
    let mut ee = DropGrow::new(dst(
        GrowRule::Explore {
            c: 1e6,
            eps: 1e-8,
            normalize: false,
            per_iteration: true,
        },
        0.5,
    ))
    .unwrap();
    // Visit history: position 3 active for 3 iterations, 1 for 1, 5 and 7 never (besides
    // the current active set 0,2,4,6 for 4 iterations).
    for t in 0..4u64 {
        let saved = model.m[0].mask().clone();
        let mut extra = saved.clone();
        if t < 3 {
            extra.set(3);
        }
        if t == 0 {
            extra.set(1);
        }
        model.m[0].set(extra).unwrap();
        ee.on_step_end(&step(t), &mut model.layers()).unwrap();
        model.m[0].set(saved).unwrap();
    }
    assert_eq!(
        ee.counters(0).unwrap().unwrap(),
        vec![4, 1, 4, 3, 4, 0, 4, 0]
    );
    ee.update(&step(4), &mut model.layers()).unwrap();
    // Dropped 4 and 6; the never-visited 5 and 7 win over everything else.
    assert_eq!(model.ones(0), vec![0, 2, 5, 7]);
}

#[test]
fn dst_state_round_trips() {
    let mut model = Model::random(&[50, 30], 0.4, 2);
    let mut a = DropGrow::new(dst(
        GrowRule::Explore {
            c: 0.01,
            eps: 1e-8,
            normalize: false,
            per_iteration: true,
        },
        0.3,
    ))
    .unwrap();
    for t in 0..3 {
        a.update(&step(t), &mut model.layers()).unwrap();
        a.on_step_end(&step(t), &mut model.layers()).unwrap();
    }
    let mut b = DropGrow::new(a.config().clone()).unwrap();
    b.load_state(&a.state().unwrap()).unwrap();
    assert_eq!(b.state().unwrap(), a.state().unwrap());
}
