//! BatchNorm, activations, pooling, loss, SGD and devices against references.

mod common;
use common::*;
use sparse_kernels::ops::activation::{add, add_assign, add_relu_assign, relu, relu_backward};
use sparse_kernels::ops::loss::{softmax_cross_entropy, topk_correct};
use sparse_kernels::ops::norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_relu_eval, batch_norm_train, BatchNormParams,
};
use sparse_kernels::ops::optim::{sgd_step, MaskPolicy, SgdConfig};
use sparse_kernels::ops::pool::*;
use sparse_kernels::{test_device, Device, Tensor};

fn bn_loss(x: &Tensor, g: &Tensor, b: &Tensor, r: &Tensor) -> f64 {
    let c = g.numel();
    let (mut rm, mut rv) = (
        Tensor::zeros(&[c], x.device()).unwrap(),
        Tensor::zeros(&[c], x.device()).unwrap(),
    );
    let (y, _) = batch_norm_train(x, g, b, &mut rm, &mut rv, BatchNormParams::default()).unwrap();
    dot64(r.h(), y.h())
}

fn batch_norm_forward_backward_and_running_stats(dev: &Device) -> TestResult {
    for (ti, shape) in [vec![4usize, 3, 5, 5], vec![2, 5, 3, 1], vec![7, 4]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let hw: usize = shape[2..].iter().product();
        let b = shape[0];
        let x = randn(&shape, ti as u64, dev);
        let g = randn(&[c], 10 + ti as u64, dev);
        let bt = randn(&[c], 20 + ti as u64, dev);
        let mut rm = Tensor::full(&[c], 0.5, *dev).unwrap();
        let mut rv = Tensor::full(&[c], 2.0, *dev).unwrap();
        let (y, cache) =
            batch_norm_train(&x, &g, &bt, &mut rm, &mut rv, BatchNormParams::default()).unwrap();
        // Naive f64 reference.
        let xs = x.h();
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
                expect[i] = g.h()[ch] as f64 * (xs[i] as f64 - mean) / (var + 1e-5).sqrt()
                    + bt.h()[ch] as f64;
            }
            let erm = 0.9 * 0.5 + 0.1 * mean;
            let erv = 0.9 * 2.0 + 0.1 * var * n / (n - 1.0);
            assert!((rm.h()[ch] as f64 - erm).abs() < 1e-5);
            assert!((rv.h()[ch] as f64 - erv).abs() < 1e-4);
        }
        assert_close(y.h(), &expect, 1e-4, "bn forward");
        // Eval with running stats.
        let ye = batch_norm_eval(&x, &g, &bt, &rm, &rv, 1e-5).unwrap();
        let exp_eval: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i / hw % c;
                g.h()[ch] as f64 * (v as f64 - rm.h()[ch] as f64)
                    / (rv.h()[ch] as f64 + 1e-5).sqrt()
                    + bt.h()[ch] as f64
            })
            .collect();
        assert_close(ye.h(), &exp_eval, 1e-4, "bn eval");
        // Backward vs finite differences (non-linear: small step, looser tolerance).
        let r = randn(&shape, 99, dev);
        let gr = batch_norm_backward(&r, &cache, &g).unwrap();
        let cx = coords(x.numel(), 15);
        let fd = finite_diff(&x, &cx, 1e-2, |xx| bn_loss(xx, &g, &bt, &r));
        let got: Vec<f32> = cx.iter().map(|&i| gr.dx.h()[i]).collect();
        assert_close(&got, &fd, 2e-2, "bn dx");
        let cg: Vec<usize> = (0..c).collect();
        assert_close(
            gr.dgamma.h(),
            &finite_diff(&g, &cg, 1e-2, |gg| bn_loss(&x, gg, &bt, &r)),
            1e-2,
            "bn dgamma",
        );
        assert_close(
            gr.dbeta.h(),
            &finite_diff(&bt, &cg, 1e-2, |bb| bn_loss(&x, &g, bb, &r)),
            1e-2,
            "bn dbeta",
        );
    }
    let x = randn(&[1, 2, 1, 1], 1, dev);
    let p = Tensor::zeros(&[2], *dev).unwrap();
    let (mut a, mut b) = (p.clone(), p.clone());
    assert!(batch_norm_train(&x, &p, &p, &mut a, &mut b, BatchNormParams::default()).is_err());
    Ok(())
}
test_device!(
    batch_norm_forward_backward_and_running_stats,
    batch_norm_forward_backward_and_running_stats_cpu,
    batch_norm_forward_backward_and_running_stats_cuda,
    batch_norm_forward_backward_and_running_stats_emu
);

fn bits(t: &Tensor) -> Vec<u32> {
    t.h().iter().map(|v| v.to_bits()).collect()
}

/// The fused BN+ReLU is the unfused pair bit for bit: forward, running statistics, eval,
/// and the backward of `relu_backward`'s masked gradient (runs of 9 and 35 elements cover
/// the vector lanes and their tails; β near zero puts half the outputs below zero).
fn batch_norm_relu_fused_matches_the_unfused_pair(dev: &Device) -> TestResult {
    for (ti, shape) in [vec![3usize, 4, 3, 3], vec![2, 3, 5, 7], vec![9, 5]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let x = randn(&shape, 40 + ti as u64, dev);
        let g = randn(&[c], 50 + ti as u64, dev);
        let bt = randn(&[c], 60 + ti as u64, dev);
        let stats = || {
            (
                Tensor::full(&[c], 0.5, *dev).unwrap(),
                Tensor::full(&[c], 2.0, *dev).unwrap(),
            )
        };
        let (mut rm, mut rv) = stats();
        let (yb, cb) = batch_norm_train(&x, &g, &bt, &mut rm, &mut rv, BatchNormParams::default())?;
        let y_ref = relu(&yb)?;
        let (mut rmf, mut rvf) = stats();
        let (yf, cf) = batch_norm_train(
            &x,
            &g,
            &bt,
            &mut rmf,
            &mut rvf,
            BatchNormParams::with_relu(),
        )?;
        assert_eq!(bits(&yf), bits(&y_ref), "fused forward");
        assert!(yf.h().contains(&0.0) && yf.h().iter().any(|&v| v > 0.0));
        assert_eq!(bits(&cf.xhat), bits(&cb.xhat), "cached x̂");
        assert_eq!(
            (bits(&rmf), bits(&rvf)),
            (bits(&rm), bits(&rv)),
            "running stats"
        );
        let e_ref = relu(&batch_norm_eval(&x, &g, &bt, &rm, &rv, 1e-5)?)?;
        let ef = batch_norm_relu_eval(&x, &g, &bt, &rm, &rv, 1e-5)?;
        assert_eq!(bits(&ef), bits(&e_ref), "fused eval");
        let dy = randn(&shape, 70 + ti as u64, dev);
        let want = batch_norm_backward(&relu_backward(&dy, &yb)?, &cb, &g)?;
        let got = batch_norm_backward(&dy, &cf, &g)?;
        assert_eq!(bits(&got.dx), bits(&want.dx), "fused dx");
        assert_eq!(bits(&got.dgamma), bits(&want.dgamma), "fused dγ");
        assert_eq!(bits(&got.dbeta), bits(&want.dbeta), "fused dβ");
    }
    Ok(())
}
test_device!(
    batch_norm_relu_fused_matches_the_unfused_pair,
    batch_norm_relu_fused_matches_the_unfused_pair_cpu,
    batch_norm_relu_fused_matches_the_unfused_pair_cuda,
    batch_norm_relu_fused_matches_the_unfused_pair_emu
);

fn relu_add_and_pools(dev: &Device) -> TestResult {
    let x = randn(&[2, 3, 5, 4], 1, dev);
    let y = relu(&x).unwrap();
    assert!(y
        .h()
        .iter()
        .zip(x.h().iter())
        .all(|(&a, &b)| a == b.max(0.0)));
    let dy = randn(x.shape(), 2, dev);
    let dx = relu_backward(&dy, &y).unwrap();
    assert!(dx
        .h()
        .iter()
        .zip(dy.h().iter())
        .zip(x.h().iter())
        .all(|((&d, &g), &v)| d == if v > 0.0 { g } else { 0.0 }));
    let s = add(&x, &dy).unwrap();
    assert!(s
        .h()
        .iter()
        .zip(x.h().iter())
        .zip(dy.h().iter())
        .all(|((&s, &a), &b)| s == a + b));
    assert!(add(&x, &randn(&[2, 3], 1, dev)).is_err());
    // The fused residual sum + ReLU is the pair bit for bit, and a clone taken before an
    // in-place op keeps its values (tensors share buffers copy-on-write).
    let (mut a, before) = (x.clone(), x.clone());
    add_relu_assign(&mut a, &dy)?;
    let mut pair = x.clone();
    add_assign(&mut pair, &dy)?;
    assert_eq!(bits(&a), bits(&relu(&pair)?), "add_relu_assign");
    assert_eq!(
        bits(&before),
        bits(&x),
        "a clone is unchanged by in-place ops on another"
    );
    assert!(add_relu_assign(&mut a, &randn(&[2, 3], 1, dev)).is_err());

    // Max-pool on a hand-worked 1x1x2x4 (+ an odd trailing row dropped).
    let t = t(
        &[1, 1, 3, 4],
        vec![1., 5., 2., 2., 3., 4., 0., 1., 9., 9., 9., 9.],
        dev,
    );
    let (p, arg) = max_pool2x2(&t).unwrap();
    assert_eq!(p.h(), vec![5.0, 2.0]);
    assert_eq!(arg.to_host()?, vec![1, 2]); // tie 2 vs 2: first index wins
    let g = max_pool2x2_backward(
        &Tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0], *dev).unwrap(),
        &arg,
        t.shape(),
    )
    .unwrap();
    assert_eq!(g.h(), vec![0., 1., 2., 0., 0., 0., 0., 0., 0., 0., 0., 0.]);

    // Average pools vs finite differences (linear).
    let x = randn(&[2, 3, 6, 6], 4, dev);
    let ap = avg_pool(&x, 3).unwrap();
    assert_eq!(ap.shape(), &[2, 3, 2, 2]);
    let expect0: f64 = (0..3)
        .flat_map(|i| (0..3).map(move |j| i * 6 + j))
        .map(|k| x.h()[k] as f64)
        .sum::<f64>()
        / 9.0;
    assert!((ap.h()[0] as f64 - expect0).abs() < 1e-5);
    let r = randn(ap.shape(), 5, dev);
    let dx = avg_pool_backward(&r, 3, x.shape()).unwrap();
    let cx = coords(x.numel(), 20);
    let fd = finite_diff(&x, &cx, 0.5, |xx| {
        dot64(r.h(), avg_pool(xx, 3).unwrap().h())
    });
    assert_close(
        cx.iter().map(|&i| dx.h()[i]).collect::<Vec<_>>(),
        &fd,
        1e-3,
        "avg pool",
    );
    let gp = global_avg_pool(&x).unwrap();
    assert_eq!(gp.shape(), &[2, 3]);
    let r = randn(&[2, 3], 6, dev);
    let dx = global_avg_pool_backward(&r, x.shape()).unwrap();
    let fd = finite_diff(&x, &cx, 0.5, |xx| {
        dot64(r.h(), global_avg_pool(xx).unwrap().h())
    });
    assert_close(
        cx.iter().map(|&i| dx.h()[i]).collect::<Vec<_>>(),
        &fd,
        1e-3,
        "global pool",
    );
    assert!(avg_pool(&x, 7).is_err());
    Ok(())
}
test_device!(
    relu_add_and_pools,
    relu_add_and_pools_cpu,
    relu_add_and_pools_cuda,
    relu_add_and_pools_emu
);

fn cross_entropy_with_label_smoothing(dev: &Device) -> TestResult {
    let logits = randn(&[5, 7], 3, dev);
    let labels = labels(&[0, 6, 3, 3, 1], dev);
    for eps in [0.0f32, 0.1] {
        let ce = softmax_cross_entropy(&logits, &labels, eps).unwrap();
        // f64 reference.
        let mut expect = 0f64;
        for (r, &y) in logits.h().chunks(7).zip(&labels.to_host()?) {
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
        assert_close(ce.dlogits.h(), &fd, 1e-3, "ce grad");
    }
    assert!(softmax_cross_entropy(&logits, &common::labels(&[0, 1, 2, 3, 7], dev), 0.0).is_err());
    assert!(softmax_cross_entropy(&logits, &common::labels(&[0, 1], dev), 0.0).is_err());
    assert!(softmax_cross_entropy(&logits, &labels, 1.0).is_err());
    let z = Tensor::from_vec(&[3, 3], vec![1., 2., 3., 5., 5., 0., 0., 0., 9.], *dev).unwrap();
    assert_eq!(
        topk_correct(&z, &common::labels(&[2, 1, 0], dev), 1).unwrap(),
        1
    ); // row1: tie, class 0 ranks first
    assert_eq!(
        topk_correct(&z, &common::labels(&[2, 1, 0], dev), 2).unwrap(),
        3
    );
    Ok(())
}
test_device!(
    cross_entropy_with_label_smoothing,
    cross_entropy_with_label_smoothing_cpu,
    cross_entropy_with_label_smoothing_cuda,
    cross_entropy_with_label_smoothing_emu
);

/// The SGD settings of the optimizer tests (PyTorch's CIFAR recipe).
const NESTEROV_SGD: SgdConfig = SgdConfig {
    lr: 0.1,
    momentum: 0.9,
    nesterov: true,
    weight_decay: 5e-4,
};

fn sgd_matches_pytorch_formula_and_respects_masks(dev: &Device) -> TestResult {
    let cfg = NESTEROV_SGD;
    let w0 = randn(&[4, 5], 1, dev);
    let g = randn(&[4, 5], 2, dev);
    let gh = g.h();
    let mask = mask_at(&[4, 5], 0.5, 3, dev);
    let mut w = masked(&w0, &mask);
    let mut buf = Tensor::zeros(&[4, 5], *dev)?;
    for step in 0..3 {
        let (wb, bb) = (w.h(), buf.h());
        sgd_step(&mut w, &g, &mut buf, MaskPolicy::Weights(&mask), &cfg)?;
        let (wn, bn) = (w.h(), buf.h());
        for i in 0..20 {
            if !mask.get(i) {
                assert_eq!((wn[i], bn[i]), (0.0, 0.0), "step {step}");
                continue;
            }
            let d = gh[i] as f64 + 5e-4 * wb[i] as f64;
            let b = 0.9 * bb[i] as f64 + d;
            let expect = wb[i] as f64 - 0.1 * (d + 0.9 * b);
            assert!((wn[i] as f64 - expect).abs() < 1e-5);
            assert!((bn[i] as f64 - b).abs() < 1e-5);
        }
    }
    // The gradient policy (OptG): G ⊙ M enters the update, stored values stay dense.
    let mut w = w0.clone();
    let mut buf = Tensor::zeros(&[4, 5], *dev)?;
    sgd_step(&mut w, &g, &mut buf, MaskPolicy::Gradient(&mask), &cfg)?;
    let (w0h, wn, bn) = (w0.h(), w.h(), buf.h());
    for i in 0..20 {
        let gi = if mask.get(i) { gh[i] as f64 } else { 0.0 };
        let d = gi + 5e-4 * w0h[i] as f64;
        let expect = w0h[i] as f64 - 0.1 * (d + 0.9 * d);
        assert!(
            (wn[i] as f64 - expect).abs() < 1e-5,
            "gradient policy at {i}"
        );
        assert!((bn[i] as f64 - d).abs() < 1e-5);
        assert!(wn[i] != 0.0, "pruned stored values are kept");
    }
    // Plain momentum, no mask.
    let cfg = SgdConfig {
        nesterov: false,
        weight_decay: 0.0,
        ..cfg
    };
    let mut w = w0.clone();
    let mut buf = Tensor::zeros(&[4, 5], *dev)?;
    sgd_step(&mut w, &g, &mut buf, MaskPolicy::None, &cfg)?;
    sgd_step(&mut w, &g, &mut buf, MaskPolicy::None, &cfg)?;
    let wn = w.h();
    for i in 0..20 {
        let e = w0h[i] as f64 - 0.1 * gh[i] as f64 * (1.0 + 1.9);
        assert!((wn[i] as f64 - e).abs() < 1e-5);
    }
    let nan = SgdConfig {
        lr: f32::NAN,
        ..cfg
    };
    assert!(sgd_step(&mut w, &g, &mut buf, MaskPolicy::None, &nan).is_err());
    let wrong = randn(&[5, 4], 1, dev);
    assert!(sgd_step(&mut w, &wrong, &mut buf, MaskPolicy::None, &cfg).is_err());
    Ok(())
}
test_device!(
    sgd_matches_pytorch_formula_and_respects_masks,
    sgd_cpu,
    sgd_cuda,
    sgd_emu
);

/// `MaskPolicy::Active` (only the active entries) gives bit for bit what `Weights` gives
/// once the inactive weights and momentum are zero, also with a dense gradient (nonzero off
/// the mask), a shape that is no multiple of 64 and more than one parallel chunk.
fn sgd_active_policy_matches_weights(dev: &Device) -> TestResult {
    let cfg = NESTEROV_SGD;
    let shape = [300, 301];
    let mask = mask_at(&shape, 0.9, 5, dev);
    let w0 = masked(&randn(&shape, 6, dev), &mask);
    let run = |active: bool| -> Result<(Vec<f32>, Vec<f32>), sparse_kernels::KernelError> {
        let mut w = w0.clone();
        let mut buf = Tensor::zeros(&shape, *dev)?;
        for step in 0..4 {
            let g = randn(&shape, 10 + step, dev);
            let policy = if active && step > 0 {
                MaskPolicy::Active(&mask)
            } else {
                MaskPolicy::Weights(&mask)
            };
            sgd_step(&mut w, &g, &mut buf, policy, &cfg)?;
        }
        Ok((w.h(), buf.h()))
    };
    let (wa, ba) = run(true)?;
    let (ww, bw) = run(false)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&wa), bits(&ww), "weights");
    assert_eq!(bits(&ba), bits(&bw), "momentum");
    assert!(wa.iter().enumerate().all(|(i, &v)| mask.get(i) || v == 0.0));
    assert!(
        wa.iter().filter(|&&v| v != 0.0).count() > 8000,
        "active entries moved"
    );
    Ok(())
}
test_device!(
    sgd_active_policy_matches_weights,
    sgd_active_cpu,
    sgd_active_cuda,
    sgd_active_emu
);

#[cfg(not(feature = "cuda"))]
#[test]
fn devices_fail_clearly_without_cuda() {
    use sparse_kernels::sparse_core::Mask;
    use sparse_kernels::{DeviceMask, DeviceRequest, KernelError};

    let err = Device::cuda(0).unwrap_err();
    assert!(matches!(err, KernelError::DeviceUnavailable(_)));
    assert!(err.to_string().contains("CUDA not available"));
    assert!(Tensor::zeros(&[2], Device::Cuda(0)).is_err());
    assert!(DeviceMask::new(Mask::ones(&[3]), Device::Cuda(0)).is_err());
    assert!("cuda".parse::<DeviceRequest>().unwrap().resolve().is_err());
    let (d, notice) = "auto".parse::<DeviceRequest>().unwrap().resolve().unwrap();
    assert_eq!(d, Device::Cpu);
    assert!(notice.unwrap().contains("CPU"));
    assert!("tpu".parse::<DeviceRequest>().is_err());
    // The emulated device needs no feature and no GPU.
    let (d, _) = "cuda-emulated"
        .parse::<DeviceRequest>()
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(d, Device::CudaEmulated);
}
