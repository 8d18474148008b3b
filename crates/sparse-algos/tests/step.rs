//! The step protocol on `Param`s: SGD through each mask policy, skipped steps, corrected
//! gradients, the mask update's report, coverage, and the sparse-form cache following
//! `Param::set_mask`.

use sparse_algos::{
    apply_step, preset, Coverage, Decay, Param, PresetContext, SparseMethod, StepInfo,
};
use sparse_core::{LayerShape, Mask};
use sparse_kernels::ops::optim::SgdConfig;
use sparse_kernels::{Device, Tensor};

fn tensor(shape: &[usize], f: impl Fn(usize) -> f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(f).collect(), Device::Cpu).unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_host().unwrap()
}

/// One masked weight (half active) and one dense bias, with gradients set.
fn params() -> Vec<Param> {
    let mut w = Param::new("w".into(), tensor(&[4, 6], |i| 0.1 + i as f32 / 24.0), true).unwrap();
    let keep: Vec<bool> = (0..24).map(|i| i % 2 == 0).collect();
    w.set_mask(Mask::from_bools(&[24], &keep).unwrap()).unwrap();
    w.grad = tensor(&[4, 6], |i| (i % 5) as f32 - 2.0);
    let mut b = Param::new("b".into(), tensor(&[4], |i| i as f32), false).unwrap();
    b.grad = tensor(&[4], |_| 1.0);
    vec![w, b]
}

fn ctx(total_steps: u64) -> PresetContext {
    PresetContext {
        sparsity: 0.5,
        layers: vec![LayerShape::new("w", &[4, 6])],
        total_steps,
        steps_per_epoch: 10,
        epochs: total_steps / 10,
        lr: 0.1,
        seed: 0,
        interval: Some(2),
        schedule: sparse_algos::ScheduleMode::Paper,
        distribution: None,
    }
}

fn info(step: u64) -> StepInfo {
    StepInfo {
        step,
        epoch: step / 10,
        steps_per_epoch: 10,
        total_steps: 100,
    }
}

const SGD: SgdConfig = SgdConfig {
    lr: 0.5,
    momentum: 0.0,
    nesterov: false,
    weight_decay: 0.0,
};

fn step(method: &mut dyn SparseMethod, ps: &mut [Param], t: u64, c: Option<&[Tensor]>) {
    let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
    apply_step(method, &info(t), &mut refs, &SGD, Decay::All, c).unwrap();
}

#[test]
fn sgd_runs_through_the_mask_and_dense_parameters_densely() {
    let mut ps = params();
    ps[0].mask_value().unwrap();
    let (w0, g) = (host(&ps[0].value), host(&ps[0].grad));
    let mut dense = preset("dense", &ctx(100)).unwrap();
    step(dense.method.as_mut(), &mut ps, 1, None);
    let w1 = host(&ps[0].value);
    for i in 0..24 {
        let expect = if i % 2 == 0 { w0[i] - 0.5 * g[i] } else { 0.0 };
        assert_eq!(w1[i], expect, "weight {i}");
    }
    assert_eq!(host(&ps[1].value), vec![-0.5, 0.5, 1.5, 2.5]);
}

#[test]
fn methods_that_keep_dense_values_mask_the_gradient_not_the_weights() {
    let mut ps = params();
    let (w0, g) = (host(&ps[0].value), host(&ps[0].grad));
    let mut optg = preset("optg", &ctx(100)).unwrap();
    assert!(optg.method.keeps_dense_values());
    step(optg.method.as_mut(), &mut ps, 1, None);
    let w1 = host(&ps[0].value);
    for i in 0..24 {
        let expect = if i % 2 == 0 {
            w0[i] - 0.5 * g[i]
        } else {
            w0[i]
        };
        assert_eq!(
            w1[i], expect,
            "weight {i}: pruned values are kept, not stepped"
        );
    }
}

#[test]
fn update_steps_skip_sgd_keep_the_budget_and_report_to_coverage() {
    let mut ps = params();
    ps[0].mask_value().unwrap();
    let mut rigl = preset("rigl", &ctx(100)).unwrap();
    assert!(rigl.props.constant_budget && rigl.props.masked);
    let t = (0..100)
        .find(|&s| rigl.method.is_update_step(&info(s)))
        .unwrap();
    assert!(rigl.method.skip_optimizer_step(&info(t)));
    let mut cov = Coverage::new(&ps.iter().collect::<Vec<_>>());
    assert_eq!(cov.fraction(), 0.5);
    let (before, b0) = (ps[0].mask().unwrap().mask().clone(), host(&ps[1].value));
    let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
    let report = apply_step(
        rigl.method.as_mut(),
        &info(t),
        &mut refs,
        &SGD,
        Decay::All,
        None,
    )
    .unwrap()
    .expect("an update step reports");
    let after = ps[0].mask().unwrap().mask().clone();
    assert_eq!(after.count_ones(), before.count_ones());
    assert_eq!(report.dropped(), report.grown());
    assert_eq!(after.and_not(&before).unwrap().count_ones(), report.grown());
    assert_eq!(host(&ps[1].value), b0, "the optimizer step was skipped");
    cov.record(&ps.iter().collect::<Vec<_>>()).unwrap();
    let grown = report.grown() as f64 / 24.0;
    assert!((cov.fraction() - (0.5 + grown)).abs() < 1e-12);
    assert!(report.grown() > 0, "RigL moved some weights");
}

#[test]
fn corrected_gradients_reach_the_optimizer_only() {
    let mut ps = params();
    let raw = host(&ps[0].grad);
    let corrected = [tensor(&[4, 6], |_| 1.0), tensor(&[4], |_| 0.0)];
    let w0 = host(&ps[0].value);
    let mut dense = preset("dense", &ctx(100)).unwrap();
    step(dense.method.as_mut(), &mut ps, 1, Some(&corrected));
    let w1 = host(&ps[0].value);
    assert!((0..24).all(|i| w1[i] == if i % 2 == 0 { w0[i] - 0.5 } else { 0.0 }));
    assert_eq!(
        host(&ps[0].grad),
        raw,
        "the method's gradients are untouched"
    );
    assert_eq!(host(&ps[1].value), vec![0.0, 1.0, 2.0, 3.0]);
    let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
    let short = [tensor(&[4], |_| 0.0)];
    assert!(apply_step(
        dense.method.as_mut(),
        &info(2),
        &mut refs,
        &SGD,
        Decay::All,
        Some(&short)
    )
    .is_err());
}

#[test]
fn the_sparse_form_follows_set_mask() {
    let mut ps = params();
    let p = &mut ps[0];
    p.mask_value().unwrap();
    assert!(p.sparse().is_none());
    p.prepare_sparse().unwrap();
    assert_eq!(p.sparse().unwrap().csr().nnz(), 12);
    let v0 = p.mask().unwrap().version();
    p.set_mask(Mask::ones(&[4, 6])).unwrap();
    assert_ne!(p.mask().unwrap().version(), v0);
    assert!(
        p.sparse().is_none(),
        "a new mask invalidates the cached structure"
    );
    p.prepare_sparse().unwrap();
    assert_eq!(p.sparse().unwrap().csr().nnz(), 24);
    assert_eq!(p.nnz(), 24);
    assert!(p.set_mask(Mask::ones(&[5])).is_err());
}

#[test]
fn weight_decay_can_skip_biases_and_batchnorm() {
    // Zero gradients: only weight decay moves a parameter.
    let sgd = SgdConfig {
        lr: 0.5,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.1,
    };
    for (decay, bias_after) in [(Decay::All, 0.95f32), (Decay::WeightsOnly, 1.0)] {
        let mut w = Param::new("w".into(), tensor(&[2, 2], |_| 1.0), true).unwrap();
        let mut b = Param::new("b".into(), tensor(&[2], |_| 1.0), false).unwrap();
        let mut dense = preset("dense", &ctx(10)).unwrap();
        let mut refs: Vec<&mut Param> = vec![&mut w, &mut b];
        apply_step(
            dense.method.as_mut(),
            &info(0),
            &mut refs,
            &sgd,
            decay,
            None,
        )
        .unwrap();
        assert_eq!(
            host(&w.value),
            vec![0.95; 4],
            "{decay:?}: weights always decay"
        );
        assert_eq!(host(&b.value), vec![bias_after; 2], "{decay:?}: bias");
    }
}

/// Between steps the optimizer updates the active entries only, but never over state that
/// changed: a weight or momentum written off the mask since the last step (here by
/// replacing the tensors), or a new mask, gets the full masked step again.
#[test]
fn active_only_steps_never_skip_changed_state() {
    let sgd = SgdConfig {
        momentum: 0.9,
        ..SGD
    };
    let mut dense = preset("dense", &ctx(100)).unwrap();
    let mut ps = params();
    let mut run = |ps: &mut [Param], t: u64| {
        let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
        apply_step(
            dense.method.as_mut(),
            &info(t),
            &mut refs,
            &sgd,
            Decay::All,
            None,
        )
        .unwrap();
    };
    let off_mask_zero = |p: &Param| {
        let (w, b) = (host(&p.value), host(&p.momentum));
        (0..24).all(|i| i % 2 == 0 || (w[i], b[i]) == (0.0, 0.0))
    };
    run(&mut ps, 1);
    assert!(off_mask_zero(&ps[0]));
    run(&mut ps, 2);
    assert!(off_mask_zero(&ps[0]));
    ps[0].value = tensor(&[4, 6], |i| 1.0 + i as f32);
    run(&mut ps, 3);
    assert!(off_mask_zero(&ps[0]), "replaced weights are masked again");
    ps[0].momentum = tensor(&[4, 6], |_| 3.0);
    run(&mut ps, 4);
    assert!(off_mask_zero(&ps[0]), "replaced momentum is masked again");
    let keep: Vec<bool> = (0..24).map(|i| i % 3 == 0).collect();
    ps[0]
        .set_mask(Mask::from_bools(&[24], &keep).unwrap())
        .unwrap();
    run(&mut ps, 5);
    let w = host(&ps[0].value);
    assert!(
        (0..24).all(|i| i % 3 == 0 || w[i] == 0.0),
        "a new mask is applied"
    );
}
