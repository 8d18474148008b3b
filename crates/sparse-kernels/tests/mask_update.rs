//! Mask-update ops against sparse-core's reference selection and hand-worked values:
//! drop-and-grow with exact budgets and reset state, grow initialisation, selection with
//! ties, thresholds, DST-EE counters, OptG's score step and AGC's control variate.

mod common;
use common::*;
use sparse_kernels::ops::activation::{add_assign, control_variate, scale};
use sparse_kernels::ops::mask_update::{
    abs_scores, accumulate_activity, apply_mask, at_least, count_nonzero, min_at, nonneg_within,
    select_global, select_mask, update_layer, zero_at, GrowInit,
};
use sparse_kernels::ops::optim::score_step;
use sparse_kernels::sparse_core::{
    drop_and_grow, select, standard_normal, stream_rng, Candidates, Mask, Order, Parallelism,
};
use sparse_kernels::{test_device, Device, DeviceMask, IndexTensor};

fn mask_update_keeps_budget_and_resets_grown_state(dev: &Device) -> TestResult {
    let shape = [6, 10];
    let mut mask = mask_at(&shape, 0.7, 4, dev);
    let mut w = masked(&randn(&shape, 1, dev), &mask);
    let mut mom = masked(&randn(&shape, 2, dev), &mask);
    let grad = randn(&shape, 3, dev);
    let before = mask.mask().clone();
    let a = mask.count_ones();
    let drop = abs_scores(&w)?;
    let grow = abs_scores(&grad)?;
    assert_eq!(drop.h(), w.h().iter().map(|v| v.abs()).collect::<Vec<_>>());
    let (w_old, m_old) = (w.h(), mom.h());
    let v0 = mask.version();
    let dg = update_layer(
        &mut w,
        &mut mask,
        &mut [&mut mom],
        &drop,
        &grow,
        6,
        GrowInit::Zero,
    )?;
    assert_eq!(mask.count_ones(), a);
    assert_eq!(&dg.mask, mask.mask());
    assert_ne!(mask.version(), v0, "a mask change takes a new version");
    // The same selection as sparse-core's reference on the host scores.
    let reference = drop_and_grow(&before, &drop.h(), &grow.h(), 6)?;
    assert_eq!(reference.mask, dg.mask);
    let (wn, mn) = (w.h(), mom.h());
    for i in 0..60 {
        match (before.get(i), mask.get(i)) {
            (true, true) => assert_eq!((wn[i], mn[i]), (w_old[i], m_old[i])),
            (false, true) | (true, false) => assert_eq!((wn[i], mn[i]), (0.0, 0.0)),
            (false, false) => {}
        }
    }
    // Normal initialisation: the k-th grown position takes the k-th draw of the stream.
    let mut mask2 = mask_at(&shape, 0.7, 4, dev);
    let mut w2 = masked(&randn(&shape, 1, dev), &mask2);
    let init = GrowInit::Normal {
        std: 0.1,
        seed: 9,
        stream: 3,
    };
    let dg = update_layer(&mut w2, &mut mask2, &mut [], &drop, &grow, 6, init)?;
    let mut rng = stream_rng(9, 3);
    let w2h = w2.h();
    for &i in &dg.grown {
        assert_eq!(w2h[i as usize], 0.1 * standard_normal(&mut rng));
    }
    let mut counter = IndexTensor::full(&[60], u32::MAX - 1, *dev)?;
    accumulate_activity(&mut counter, &mask)?;
    accumulate_activity(&mut counter, &mask)?;
    assert!(counter
        .to_host()?
        .iter()
        .enumerate()
        .all(|(i, &c)| c == if mask.get(i) { u32::MAX } else { u32::MAX - 1 }));
    let mut short = IndexTensor::zeros(&[5], *dev)?;
    assert!(accumulate_activity(&mut short, &mask).is_err());
    assert_eq!(
        count_nonzero(&w)?,
        w.h().iter().filter(|v| **v != 0.0).count()
    );
    let mut m2 = DeviceMask::new(Mask::ones(&[60]), *dev)?;
    assert!(update_layer(&mut w, &mut m2, &mut [], &drop, &grow, 1, GrowInit::Zero).is_err());
    Ok(())
}
test_device!(
    mask_update_keeps_budget_and_resets_grown_state,
    mask_update_cpu,
    mask_update_cuda,
    mask_update_emu
);

fn selection_ops_match_sparse_core(dev: &Device) -> TestResult {
    // Scores with many ties (8 distinct values), so the §0.2 tie rule decides.
    let n = [3usize, 40];
    let sv: Vec<f32> = (0..120).map(|i| ((i * 37) % 8) as f32).collect();
    let s = t(&n, sv.clone(), dev);
    let cand = mask_at(&n, 0.4, 8, dev);
    for k in [0, 1, 17, 50, cand.count_ones()] {
        for order in [Order::Largest, Order::Smallest] {
            let got = select_mask(&s, k, Some(&cand), order)?;
            let want = select(&n, &sv, k, Candidates::Set(&cand), order, Parallelism::Auto)?;
            assert_eq!(got, want, "k {k} {order:?}");
        }
    }
    // Global selection over two layers equals one selection over the concatenation.
    let s2v: Vec<f32> = (0..30).map(|i| ((i * 11) % 8) as f32).collect();
    let s2 = t(&[30], s2v.clone(), dev);
    let all: Vec<f32> = sv.iter().chain(&s2v).copied().collect();
    let masks = select_global(&[&s, &s2], &[Some(&cand), None], 40, Order::Largest)?;
    let mut c = Mask::zeros(&[150]);
    cand.iter_ones().for_each(|i| c.set(i));
    (120..150).for_each(|i| c.set(i));
    let want = select(
        &[150],
        &all,
        40,
        Candidates::Set(&c),
        Order::Largest,
        Parallelism::Auto,
    )?;
    let got: Vec<usize> = masks[0]
        .iter_ones()
        .chain(masks[1].iter_ones().map(|i| i + 120))
        .collect();
    assert_eq!(got, want.iter_ones().collect::<Vec<_>>());
    assert_eq!(masks[0].shape(), &n);
    // Thresholds and point ops.
    let theta = min_at(&s, &masks[0])?;
    assert_eq!(
        theta,
        masks[0]
            .iter_ones()
            .map(|i| sv[i])
            .fold(f32::INFINITY, f32::min)
    );
    let ge = at_least(&s, 5.0)?;
    assert!((0..120).all(|i| ge.get(i) == (sv[i] >= 5.0)));
    let w = t(&[4], vec![-1.0, 0.0, 2.0, -0.5], dev);
    let within = Mask::from_bools(&[4], &[true, true, false, true])?;
    assert_eq!(
        nonneg_within(&w, &within)?.to_bools(),
        vec![false, true, false, false]
    );
    let mut z = w.clone();
    zero_at(
        &mut z,
        &Mask::from_bools(&[4], &[true, false, true, false])?,
    )?;
    assert_eq!(z.h(), vec![0.0, 0.0, 0.0, -0.5]);
    let mut am = w.clone();
    apply_mask(&mut am, &DeviceMask::new(within, *dev)?)?;
    assert_eq!(am.h(), vec![-1.0, 0.0, 0.0, -0.5]);
    Ok(())
}
test_device!(
    selection_ops_match_sparse_core,
    selection_cpu,
    selection_cuda,
    selection_emu
);

fn score_and_control_variate_steps(dev: &Device) -> TestResult {
    let (g, w) = (randn(&[3, 7], 1, dev), randn(&[3, 7], 2, dev));
    let mut s = randn(&[3, 7], 3, dev);
    let mut b = randn(&[3, 7], 4, dev);
    let (s0, b0, gh, wh) = (s.h(), b.h(), g.h(), w.h());
    score_step(&mut s, &mut b, &g, &w, 0.9, 0.05)?;
    let (s1, b1) = (s.h(), b.h());
    for i in 0..21 {
        let bb = 0.9 * b0[i] as f64 + gh[i] as f64 * wh[i] as f64;
        assert!((b1[i] as f64 - bb).abs() < 1e-6);
        assert!((s1[i] as f64 - (s0[i] as f64 - 0.05 * bb)).abs() < 1e-6);
    }
    // AGC: dst = g + c·(μ − dst).
    let mu = randn(&[3, 7], 5, dev);
    let mut d = w.clone();
    control_variate(&mut d, &g, &mu, 0.25)?;
    let (dh, muh) = (d.h(), mu.h());
    for i in 0..21 {
        let e = gh[i] as f64 + 0.25 * (muh[i] as f64 - wh[i] as f64);
        assert!((dh[i] as f64 - e).abs() < 1e-6);
    }
    let mut x = g.clone();
    scale(&mut x, 0.5)?;
    assert_eq!(x.h(), gh.iter().map(|v| v * 0.5).collect::<Vec<_>>());
    add_assign(&mut x, &g)?;
    assert!(score_step(&mut s, &mut b, &randn(&[2], 1, dev), &w, 0.9, 0.1).is_err());
    Ok(())
}
test_device!(
    score_and_control_variate_steps,
    score_cpu,
    score_cuda,
    score_emu
);
