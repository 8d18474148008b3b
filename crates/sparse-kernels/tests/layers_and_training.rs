//! BatchNorm, activations, pooling, loss, SGD, mask updates and devices against references.

mod common;
use common::*;
use sparse_kernels::ops::activation::{add, relu, relu_backward};
use sparse_kernels::ops::loss::{softmax_cross_entropy, topk_correct};
use sparse_kernels::ops::mask_update::{accumulate_activity, count_nonzero, update_layer};
use sparse_kernels::ops::norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_train, BatchNormParams,
};
use sparse_kernels::ops::optim::{sgd_step, SgdConfig};
use sparse_kernels::ops::pool::*;
use sparse_kernels::sparse_core::Mask;
use sparse_kernels::{Device, DeviceRequest, KernelError, Tensor};

fn bn_loss(x: &Tensor, g: &Tensor, b: &Tensor, r: &Tensor) -> f64 {
    let c = g.numel();
    let (mut rm, mut rv) = (
        Tensor::zeros(&[c], Device::Cpu).unwrap(),
        Tensor::zeros(&[c], Device::Cpu).unwrap(),
    );
    let (y, _) = batch_norm_train(x, g, b, &mut rm, &mut rv, BatchNormParams::default()).unwrap();
    dot64(r.as_slice(), y.as_slice())
}

#[test]
fn batch_norm_forward_backward_and_running_stats() {
    for (ti, shape) in [vec![4usize, 3, 5, 5], vec![2, 5, 3, 1], vec![7, 4]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let hw: usize = shape[2..].iter().product();
        let b = shape[0];
        let x = randn(&shape, ti as u64);
        let g = randn(&[c], 10 + ti as u64);
        let bt = randn(&[c], 20 + ti as u64);
        let mut rm = Tensor::full(&[c], 0.5, Device::Cpu).unwrap();
        let mut rv = Tensor::full(&[c], 2.0, Device::Cpu).unwrap();
        let (y, cache) =
            batch_norm_train(&x, &g, &bt, &mut rm, &mut rv, BatchNormParams::default()).unwrap();
        // Naive f64 reference.
        let xs = x.as_slice();
        let n = (b * hw) as f64;
        let mut expect = vec![0f64; xs.len()];
        for ch in 0..c {
            let idx: Vec<usize> = (0..b)
                .flat_map(|bi| (0..hw).map(move |k| (bi * c + ch) * hw + k))
                .collect();
            let mean = idx.iter().map(|&i| xs[i] as f64).sum::<f64>() / n;
            let var = idx
                .iter()
                .map(|&i| (xs[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            for &i in &idx {
                expect[i] = g.as_slice()[ch] as f64 * (xs[i] as f64 - mean) / (var + 1e-5).sqrt()
                    + bt.as_slice()[ch] as f64;
            }
            let erm = 0.9 * 0.5 + 0.1 * mean;
            let erv = 0.9 * 2.0 + 0.1 * var * n / (n - 1.0);
            assert!((rm.as_slice()[ch] as f64 - erm).abs() < 1e-5);
            assert!((rv.as_slice()[ch] as f64 - erv).abs() < 1e-4);
        }
        assert_close(y.as_slice(), &expect, 1e-4, "bn forward");
        // Eval with running stats.
        let ye = batch_norm_eval(&x, &g, &bt, &rm, &rv, 1e-5).unwrap();
        let exp_eval: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i / hw % c;
                g.as_slice()[ch] as f64 * (v as f64 - rm.as_slice()[ch] as f64)
                    / (rv.as_slice()[ch] as f64 + 1e-5).sqrt()
                    + bt.as_slice()[ch] as f64
            })
            .collect();
        assert_close(ye.as_slice(), &exp_eval, 1e-4, "bn eval");
        // Backward vs finite differences (non-linear: small step, looser tolerance).
        let r = randn(&shape, 99);
        let gr = batch_norm_backward(&r, &cache, &g).unwrap();
        let cx = coords(x.numel(), 15);
        let fd = finite_diff(&x, &cx, 1e-2, |xx| bn_loss(xx, &g, &bt, &r));
        let got: Vec<f32> = cx.iter().map(|&i| gr.dx.as_slice()[i]).collect();
        assert_close(&got, &fd, 2e-2, "bn dx");
        let cg: Vec<usize> = (0..c).collect();
        assert_close(
            gr.dgamma.as_slice(),
            &finite_diff(&g, &cg, 1e-2, |gg| bn_loss(&x, gg, &bt, &r)),
            1e-2,
            "bn dgamma",
        );
        assert_close(
            gr.dbeta.as_slice(),
            &finite_diff(&bt, &cg, 1e-2, |bb| bn_loss(&x, &g, bb, &r)),
            1e-2,
            "bn dbeta",
        );
    }
    let x = randn(&[1, 2, 1, 1], 1);
    let p = Tensor::zeros(&[2], Device::Cpu).unwrap();
    let (mut a, mut b) = (p.clone(), p.clone());
    assert!(batch_norm_train(&x, &p, &p, &mut a, &mut b, BatchNormParams::default()).is_err());
}

#[test]
fn relu_add_and_pools() {
    let x = randn(&[2, 3, 5, 4], 1);
    let y = relu(&x).unwrap();
    assert!(y
        .as_slice()
        .iter()
        .zip(x.as_slice())
        .all(|(&a, &b)| a == b.max(0.0)));
    let dy = randn(x.shape(), 2);
    let dx = relu_backward(&dy, &y).unwrap();
    assert!(dx
        .as_slice()
        .iter()
        .zip(dy.as_slice())
        .zip(x.as_slice())
        .all(|((&d, &g), &v)| d == if v > 0.0 { g } else { 0.0 }));
    let s = add(&x, &dy).unwrap();
    assert!(s
        .as_slice()
        .iter()
        .zip(x.as_slice())
        .zip(dy.as_slice())
        .all(|((&s, &a), &b)| s == a + b));
    assert!(add(&x, &randn(&[2, 3], 1)).is_err());

    // Max-pool on a hand-worked 1x1x2x4 (+ an odd trailing row dropped).
    let t = Tensor::cpu(
        &[1, 1, 3, 4],
        vec![1., 5., 2., 2., 3., 4., 0., 1., 9., 9., 9., 9.],
    )
    .unwrap();
    let (p, arg) = max_pool2x2(&t).unwrap();
    assert_eq!(p.as_slice(), &[5.0, 2.0]);
    assert_eq!(arg, vec![1, 2]); // tie 2 vs 2: first index wins
    let g = max_pool2x2_backward(
        &Tensor::cpu(&[1, 1, 1, 2], vec![1.0, 2.0]).unwrap(),
        &arg,
        t.shape(),
    )
    .unwrap();
    assert_eq!(
        g.as_slice(),
        &[0., 1., 2., 0., 0., 0., 0., 0., 0., 0., 0., 0.]
    );

    // Average pools vs finite differences (linear).
    let x = randn(&[2, 3, 6, 6], 4);
    let ap = avg_pool(&x, 3).unwrap();
    assert_eq!(ap.shape(), &[2, 3, 2, 2]);
    let expect0: f64 = (0..3)
        .flat_map(|i| (0..3).map(move |j| i * 6 + j))
        .map(|k| x.as_slice()[k] as f64)
        .sum::<f64>()
        / 9.0;
    assert!((ap.as_slice()[0] as f64 - expect0).abs() < 1e-5);
    let r = randn(ap.shape(), 5);
    let dx = avg_pool_backward(&r, 3, x.shape()).unwrap();
    let cx = coords(x.numel(), 20);
    let fd = finite_diff(&x, &cx, 0.5, |xx| {
        dot64(r.as_slice(), avg_pool(xx, 3).unwrap().as_slice())
    });
    assert_close(
        &cx.iter().map(|&i| dx.as_slice()[i]).collect::<Vec<_>>(),
        &fd,
        1e-3,
        "avg pool",
    );
    let gp = global_avg_pool(&x).unwrap();
    assert_eq!(gp.shape(), &[2, 3]);
    let r = randn(&[2, 3], 6);
    let dx = global_avg_pool_backward(&r, x.shape()).unwrap();
    let fd = finite_diff(&x, &cx, 0.5, |xx| {
        dot64(r.as_slice(), global_avg_pool(xx).unwrap().as_slice())
    });
    assert_close(
        &cx.iter().map(|&i| dx.as_slice()[i]).collect::<Vec<_>>(),
        &fd,
        1e-3,
        "global pool",
    );
    assert!(avg_pool(&x, 7).is_err());
}

#[test]
fn cross_entropy_with_label_smoothing() {
    let logits = randn(&[5, 7], 3);
    let labels = [0u32, 6, 3, 3, 1];
    for eps in [0.0f32, 0.1] {
        let ce = softmax_cross_entropy(&logits, &labels, eps).unwrap();
        // f64 reference.
        let mut expect = 0f64;
        for (r, &y) in logits.as_slice().chunks(7).zip(&labels) {
            let lse = r.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            for (j, &v) in r.iter().enumerate() {
                let q = if j == y as usize {
                    1.0 - eps as f64 + eps as f64 / 7.0
                } else {
                    eps as f64 / 7.0
                };
                expect -= q * (v as f64 - lse);
            }
        }
        assert!((ce.loss - expect / 5.0).abs() < 1e-6);
        let cz: Vec<usize> = (0..35).collect();
        let fd = finite_diff(&logits, &cz, 1e-2, |z| {
            softmax_cross_entropy(z, &labels, eps).unwrap().loss
        });
        assert_close(ce.dlogits.as_slice(), &fd, 1e-3, "ce grad");
    }
    assert!(softmax_cross_entropy(&logits, &[0, 1, 2, 3, 7], 0.0).is_err());
    assert!(softmax_cross_entropy(&logits, &[0, 1], 0.0).is_err());
    assert!(softmax_cross_entropy(&logits, &labels, 1.0).is_err());
    let z = Tensor::cpu(&[3, 3], vec![1., 2., 3., 5., 5., 0., 0., 0., 9.]).unwrap();
    assert_eq!(topk_correct(&z, &[2, 1, 0], 1).unwrap(), 1); // row1: tie, class 0 ranks first
    assert_eq!(topk_correct(&z, &[2, 1, 0], 2).unwrap(), 3);
}

#[test]
fn sgd_matches_pytorch_formula_and_respects_masks() {
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
    };
    let w0 = randn(&[4, 5], 1);
    let g = randn(&[4, 5], 2);
    let mask = mask_at(&[4, 5], 0.5, 3);
    let mut w = masked(&w0, &mask);
    let mut buf = Tensor::zeros(&[4, 5], Device::Cpu).unwrap();
    for step in 0..3 {
        let (wb, bb) = (w.to_vec(), buf.to_vec());
        sgd_step(&mut w, &g, &mut buf, Some(&mask), &cfg).unwrap();
        for i in 0..20 {
            if !mask.get(i) {
                assert_eq!(
                    (w.as_slice()[i], buf.as_slice()[i]),
                    (0.0, 0.0),
                    "step {step}"
                );
                continue;
            }
            let d = g.as_slice()[i] as f64 + 5e-4 * wb[i] as f64;
            let b = 0.9 * bb[i] as f64 + d;
            let expect = wb[i] as f64 - 0.1 * (d + 0.9 * b);
            assert!((w.as_slice()[i] as f64 - expect).abs() < 1e-5);
            assert!((buf.as_slice()[i] as f64 - b).abs() < 1e-5);
        }
    }
    // Plain momentum, no mask.
    let cfg = SgdConfig {
        nesterov: false,
        weight_decay: 0.0,
        ..cfg
    };
    let mut w = w0.clone();
    let mut buf = Tensor::zeros(&[4, 5], Device::Cpu).unwrap();
    sgd_step(&mut w, &g, &mut buf, None, &cfg).unwrap();
    sgd_step(&mut w, &g, &mut buf, None, &cfg).unwrap();
    for i in 0..20 {
        let e = w0.as_slice()[i] as f64 - 0.1 * g.as_slice()[i] as f64 * (1.0 + 1.9);
        assert!((w.as_slice()[i] as f64 - e).abs() < 1e-5);
    }
    assert!(sgd_step(
        &mut w,
        &g,
        &mut buf,
        None,
        &SgdConfig {
            lr: f32::NAN,
            ..cfg
        }
    )
    .is_err());
    assert!(sgd_step(&mut w, &randn(&[5, 4], 1), &mut buf, None, &cfg).is_err());
}

#[test]
fn mask_update_keeps_budget_and_resets_grown_state() {
    let shape = [6, 10];
    let mut mask = mask_at(&shape, 0.7, 4);
    let mut w = masked(&randn(&shape, 1), &mask);
    let mut mom = masked(&randn(&shape, 2), &mask);
    let grad = randn(&shape, 3);
    let before = mask.clone();
    let a = mask.count_ones();
    let drop: Vec<f32> = w.as_slice().iter().map(|v| v.abs()).collect();
    let grow: Vec<f32> = grad.as_slice().iter().map(|v| v.abs()).collect();
    let (w_old, m_old) = (w.clone(), mom.clone());
    let dg = update_layer(&mut w, &mut mask, &mut [&mut mom], &drop, &grow, 6, |_| 0.0).unwrap();
    assert_eq!(mask.count_ones(), a);
    assert_eq!(dg.mask, mask);
    for i in 0..60 {
        let (was, is) = (before.get(i), mask.get(i));
        match (was, is) {
            (true, true) => assert_eq!(
                (w.as_slice()[i], mom.as_slice()[i]),
                (w_old.as_slice()[i], m_old.as_slice()[i])
            ),
            (false, true) => assert_eq!((w.as_slice()[i], mom.as_slice()[i]), (0.0, 0.0)),
            (true, false) => assert_eq!((w.as_slice()[i], mom.as_slice()[i]), (0.0, 0.0)),
            (false, false) => {}
        }
    }
    let mut counter = vec![u32::MAX - 1; 60];
    accumulate_activity(&mut counter, &mask).unwrap();
    accumulate_activity(&mut counter, &mask).unwrap();
    assert!(counter
        .iter()
        .enumerate()
        .all(|(i, &c)| c == if mask.get(i) { u32::MAX } else { u32::MAX - 1 }));
    assert!(accumulate_activity(&mut counter[..5], &mask).is_err());
    assert_eq!(
        count_nonzero(&w),
        w.as_slice().iter().filter(|v| **v != 0.0).count()
    );
    let wrong = Mask::ones(&[60]);
    let mut m2 = wrong.clone();
    assert!(update_layer(&mut w, &mut m2, &mut [], &drop, &grow, 1, |_| 0.0).is_err());
}

#[test]
fn devices_fail_clearly_without_cuda() {
    let err = Device::cuda(0).unwrap_err();
    assert!(matches!(err, KernelError::DeviceUnavailable(_)));
    assert!(err.to_string().contains("CUDA not available"));
    assert!(Tensor::zeros(&[2], Device::Cuda(0)).is_err());
    assert!("cuda".parse::<DeviceRequest>().unwrap().resolve().is_err());
    let (d, notice) = "auto".parse::<DeviceRequest>().unwrap().resolve().unwrap();
    assert_eq!(d, Device::Cpu);
    assert!(notice.unwrap().contains("CPU"));
    assert!("tpu".parse::<DeviceRequest>().is_err());
    assert_eq!(Device::test_devices(), vec![Device::Cpu]);
}
