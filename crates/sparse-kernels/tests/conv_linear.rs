//! Conv2d and linear: forward against naive f64, backward against finite differences,
//! dense / masked / sparse paths in agreement at 0-100% sparsity.

mod common;
use common::*;
use sparse_kernels::ops::activation::add_assign;
use sparse_kernels::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use sparse_kernels::ops::linear::{
    linear_backward, linear_backward_kept, linear_forward, linear_forward_keeping, LinearInput,
};
use sparse_kernels::ops::sparse::AtMaskGradMemo;
use sparse_kernels::{test_device, Device, SparseWeight, Tensor, WeightGrad, WeightRef};

/// (batch, in, h, w, out, k, stride, pad)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);
const CONVS: [ConvCase; 25] = [
    // Widths 32/16/8/4 and odd heights exercise the direct sparse kernels' fixed paths.
    (1, 2, 32, 32, 2, 3, 1, 1),
    (2, 3, 5, 16, 4, 3, 1, 1),
    (1, 4, 9, 8, 3, 3, 1, 1),
    (3, 3, 4, 4, 5, 3, 1, 1),
    // Width 4 with a plane of at least 64 outputs (smaller ones run batch-minor).
    (1, 3, 17, 4, 2, 3, 1, 1),
    (2, 8, 6, 10, 9, 1, 1, 0),
    (1, 1, 1, 1, 1, 1, 1, 0),
    (2, 3, 5, 7, 4, 3, 1, 1),
    (3, 4, 9, 9, 5, 3, 2, 1),
    (1, 3, 17, 17, 2, 7, 2, 3),
    (2, 6, 6, 6, 3, 1, 1, 0),
    (2, 5, 8, 8, 7, 1, 2, 0),
    (1, 2, 4, 3, 3, 3, 1, 0),
    // Padding wider than the kernel reach and stride 3: whole output rows/columns of padding.
    (2, 2, 3, 3, 2, 3, 2, 2),
    (1, 2, 5, 4, 2, 3, 3, 2),
    // C >= 16, O < 32, stride 1: the dense input gradient runs as a flipped forward conv.
    (2, 16, 5, 6, 3, 3, 1, 1),
    (1, 17, 4, 3, 2, 1, 1, 0),
    // Odd planes of at least 64 outputs, with and without padding, 3x3 and 1x1: the direct
    // sparse kernels' edge handling (smaller planes run batch-minor).
    (2, 5, 9, 11, 4, 3, 1, 1),
    (1, 3, 10, 11, 2, 3, 1, 0),
    (1, 4, 8, 9, 3, 1, 1, 0),
    // 40 channels of 16x16: the direct sparse kernels split the source planes into several
    // L1 blocks and the destination planes into several tiles.
    (1, 40, 16, 16, 40, 3, 1, 1),
    // Dense same convolutions on planes of at least 256 run without im2col (shifted views
    // of a padded NHWC copy): several images per group and a ragged last group, and 5x5.
    (5, 3, 16, 17, 4, 3, 1, 1),
    (2, 3, 16, 16, 2, 5, 1, 2),
    // Sparse planes under 64 outputs run with the batch as the vector dimension: a batch of
    // 70 takes the 64-image runs and a ragged tail (and the 16-lane weight-gradient tail),
    // with padding 1 and 0.
    (70, 5, 4, 4, 6, 3, 1, 1),
    (67, 4, 3, 5, 3, 3, 1, 0),
];

fn conv_forward_all_paths_match_direct_reference(dev: &Device) -> TestResult {
    for (ci, &(b, c, h, w, o, k, s, p)) in CONVS.iter().enumerate() {
        let x = randn(&[b, c, h, w], ci as u64, dev);
        let wt = randn(&[o, c, k, k], 10 + ci as u64, dev);
        let prm = Conv2dParams::new(s, p);
        for (pi, sp) in [0.0, 0.5, 0.9, 0.99, 1.0].into_iter().enumerate() {
            let mask = mask_at(wt.shape(), sp, (ci * 10 + pi) as u64, dev);
            let wm = masked(&wt, &mask);
            let (r, shape) = conv_ref(&x, &wm, s, p);
            let sw = SparseWeight::new(&wt, &mask).unwrap();
            for (name, wr) in [
                ("dense", WeightRef::Dense(&wm)),
                ("masked", WeightRef::Masked(&wt, &mask)),
                ("sparse", WeightRef::Sparse(&sw)),
            ] {
                let y = conv2d_forward(&x, wr, prm).unwrap();
                assert_eq!(y.shape(), &shape);
                assert_close(y.h(), &r, 1e-4, &format!("conv {ci} {name} s={sp}"));
            }
        }
    }
    Ok(())
}
test_device!(
    conv_forward_all_paths_match_direct_reference,
    conv_forward_all_paths_match_direct_reference_cpu,
    conv_forward_all_paths_match_direct_reference_cuda,
    conv_forward_all_paths_match_direct_reference_emu
);

fn conv_backward_matches_finite_differences_and_paths_agree(dev: &Device) -> TestResult {
    for (ci, &(b, c, h, w, o, k, s, p)) in CONVS.iter().enumerate() {
        let x = randn(&[b, c, h, w], ci as u64, dev);
        let wt = randn(&[o, c, k, k], 10 + ci as u64, dev);
        let prm = Conv2dParams::new(s, p);
        let y = conv2d_forward(&x, WeightRef::Dense(&wt), prm).unwrap();
        let r = randn(y.shape(), 99, dev);
        let g =
            conv2d_backward(&r, &x, WeightRef::Dense(&wt), prm, true, WeightGrad::Dense).unwrap();
        // The loss Σ r⊙conv(x, W) is linear in x and in W: central differences are exact up
        // to rounding, so a large step is fine.
        let loss_x = |xx: &Tensor| {
            dot64(
                r.h(),
                conv2d_forward(xx, WeightRef::Dense(&wt), prm).unwrap().h(),
            )
        };
        let cx = coords(x.numel(), 25);
        let fd = finite_diff(&x, &cx, 0.5, loss_x);
        let got: Vec<f32> = cx.iter().map(|&i| g.dx.as_ref().unwrap().h()[i]).collect();
        assert_close(&got, &fd, 1e-3, "conv dx");
        let loss_w = |ww: &Tensor| {
            dot64(
                r.h(),
                conv2d_forward(&x, WeightRef::Dense(ww), prm).unwrap().h(),
            )
        };
        let cw = coords(wt.numel(), 25);
        let fd = finite_diff(&wt, &cw, 0.5, loss_w);
        let got: Vec<f32> = cw.iter().map(|&i| g.dw.h()[i]).collect();
        assert_close(&got, &fd, 1e-3, "conv dW");

        // Sparse and masked paths: dx equals the dense dx of the masked weight, dW at the
        // mask equals the dense dW there and is exactly 0 elsewhere.
        for (pi, sp) in [0.0, 0.5, 0.9, 0.99, 1.0].into_iter().enumerate() {
            let mask = mask_at(wt.shape(), sp, (ci * 10 + pi) as u64, dev);
            let wm = masked(&wt, &mask);
            let dense =
                conv2d_backward(&r, &x, WeightRef::Dense(&wm), prm, true, WeightGrad::Dense)
                    .unwrap();
            let sw = SparseWeight::new(&wt, &mask).unwrap();
            for (name, wr) in [
                ("masked", WeightRef::Masked(&wt, &mask)),
                ("sparse", WeightRef::Sparse(&sw)),
            ] {
                let gs = conv2d_backward(&r, &x, wr, prm, true, WeightGrad::AtMask(&mask)).unwrap();
                assert_close(
                    gs.dx.unwrap().h(),
                    &to64(dense.dx.as_ref().unwrap().h()),
                    1e-4,
                    name,
                );
                let expect: Vec<f64> = dense
                    .dw
                    .h()
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| if mask.get(i) { v as f64 } else { 0.0 })
                    .collect();
                assert_close(gs.dw.h(), &expect, 1e-4, name);
                assert!(gs
                    .dw
                    .h()
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| mask.get(i) || v == 0.0));
            }
            // Grow steps: a sparse weight with the dense gradient of every position.
            let gs = conv2d_backward(&r, &x, WeightRef::Sparse(&sw), prm, true, WeightGrad::Dense)
                .unwrap();
            assert_close(
                gs.dw.h(),
                &to64(dense.dw.h()),
                1e-4,
                "sparse weight, dense grad",
            );
            assert_close(
                gs.dx.unwrap().h(),
                &to64(dense.dx.as_ref().unwrap().h()),
                1e-4,
                "sparse weight dx",
            );
        }
    }
    Ok(())
}
test_device!(
    conv_backward_matches_finite_differences_and_paths_agree,
    conv_backward_matches_finite_differences_and_paths_agree_cpu,
    conv_backward_matches_finite_differences_and_paths_agree_cuda,
    conv_backward_matches_finite_differences_and_paths_agree_emu
);

fn conv_large_batch_uses_groups_and_stays_correct(dev: &Device) -> TestResult {
    // 40 images of 8x8 -> several image groups, exercising the grouped reduction.
    let x = randn(&[40, 3, 8, 8], 1, dev);
    let wt = randn(&[4, 3, 3, 3], 2, dev);
    let prm = Conv2dParams::new(1, 1);
    let (r, _) = conv_ref(&x, &wt, 1, 1);
    let y = conv2d_forward(&x, WeightRef::Dense(&wt), prm).unwrap();
    assert_close(y.h(), &r, 1e-4, "grouped conv");
    let dy = randn(y.shape(), 3, dev);
    let g = conv2d_backward(
        &dy,
        &x,
        WeightRef::Dense(&wt),
        prm,
        false,
        WeightGrad::Dense,
    )
    .unwrap();
    assert!(g.dx.is_none());
    let loss_w = |ww: &Tensor| {
        dot64(
            dy.h(),
            conv2d_forward(&x, WeightRef::Dense(ww), prm).unwrap().h(),
        )
    };
    let cw = coords(wt.numel(), 27);
    let fd = finite_diff(&wt, &cw, 0.5, loss_w);
    let got: Vec<f32> = cw.iter().map(|&i| g.dw.h()[i]).collect();
    assert_close(&got, &fd, 1e-3, "grouped dW");
    Ok(())
}
test_device!(
    conv_large_batch_uses_groups_and_stays_correct,
    conv_large_batch_uses_groups_and_stays_correct_cpu,
    conv_large_batch_uses_groups_and_stays_correct_cuda,
    conv_large_batch_uses_groups_and_stays_correct_emu
);

fn conv_rejects_bad_shapes(dev: &Device) -> TestResult {
    let x = randn(&[1, 3, 4, 4], 1, dev);
    assert!(conv2d_forward(
        &x,
        WeightRef::Dense(&randn(&[2, 2, 3, 3], 1, dev)),
        Conv2dParams::new(1, 0)
    )
    .is_err());
    assert!(conv2d_forward(
        &x,
        WeightRef::Dense(&randn(&[2, 3, 7, 7], 1, dev)),
        Conv2dParams::new(1, 0)
    )
    .is_err());
    assert!(conv2d_forward(
        &x,
        WeightRef::Dense(&randn(&[2, 3, 3, 3], 1, dev)),
        Conv2dParams::new(0, 0)
    )
    .is_err());
    assert!(conv2d_forward(
        &randn(&[3, 4, 4], 1, dev),
        WeightRef::Dense(&randn(&[2, 3, 3, 3], 1, dev)),
        Conv2dParams::new(1, 0)
    )
    .is_err());
    Ok(())
}
test_device!(
    conv_rejects_bad_shapes,
    conv_rejects_bad_shapes_cpu,
    conv_rejects_bad_shapes_cuda,
    conv_rejects_bad_shapes_emu
);

fn linear_all_paths_forward_backward(dev: &Device) -> TestResult {
    for (li, &(b, i, o)) in [
        (1usize, 1usize, 1usize),
        (3, 17, 5),
        (8, 64, 10),
        (5, 3, 33),
    ]
    .iter()
    .enumerate()
    {
        let x = randn(&[b, i], li as u64, dev);
        let w = randn(&[o, i], 10 + li as u64, dev);
        let bias = randn(&[o], 20 + li as u64, dev);
        let y = linear_forward(&x, WeightRef::Dense(&w), Some(&bias)).unwrap();
        let mut r = gemm_ref(x.h(), false, w.h(), true, b, i, o);
        for (j, v) in r.iter_mut().enumerate() {
            *v += bias.h()[j % o] as f64;
        }
        assert_close(y.h(), &r, 1e-4, "linear forward");
        let dy = randn(&[b, o], 5, dev);
        let g =
            linear_backward(&dy, &x, WeightRef::Dense(&w), true, true, WeightGrad::Dense).unwrap();
        let loss_x = |xx: &Tensor| {
            dot64(
                dy.h(),
                linear_forward(xx, WeightRef::Dense(&w), Some(&bias))
                    .unwrap()
                    .h(),
            )
        };
        let cx = coords(x.numel(), 20);
        let got: Vec<f32> = cx.iter().map(|&k| g.dx.as_ref().unwrap().h()[k]).collect();
        assert_close(&got, &finite_diff(&x, &cx, 0.5, loss_x), 1e-3, "linear dx");
        let loss_w = |ww: &Tensor| {
            dot64(
                dy.h(),
                linear_forward(&x, WeightRef::Dense(ww), Some(&bias))
                    .unwrap()
                    .h(),
            )
        };
        let cw = coords(w.numel(), 20);
        let got: Vec<f32> = cw.iter().map(|&k| g.dw.h()[k]).collect();
        assert_close(&got, &finite_diff(&w, &cw, 0.5, loss_w), 1e-3, "linear dW");
        let loss_b = |bb: &Tensor| {
            dot64(
                dy.h(),
                linear_forward(&x, WeightRef::Dense(&w), Some(bb))
                    .unwrap()
                    .h(),
            )
        };
        let cb: Vec<usize> = (0..o).collect();
        assert_close(
            g.db.as_ref().unwrap().h(),
            &finite_diff(&bias, &cb, 0.5, loss_b),
            1e-3,
            "linear db",
        );

        for (pi, sp) in [0.0, 0.5, 0.9, 0.99, 1.0].into_iter().enumerate() {
            let mask = mask_at(w.shape(), sp, (li * 10 + pi) as u64, dev);
            let wm = masked(&w, &mask);
            let yd = linear_forward(&x, WeightRef::Dense(&wm), None).unwrap();
            let gd = linear_backward(
                &dy,
                &x,
                WeightRef::Dense(&wm),
                false,
                true,
                WeightGrad::Dense,
            )
            .unwrap();
            let sw = SparseWeight::new(&w, &mask).unwrap();
            for wr in [WeightRef::Masked(&w, &mask), WeightRef::Sparse(&sw)] {
                assert_close(
                    linear_forward(&x, wr, None).unwrap().h(),
                    &to64(yd.h()),
                    1e-4,
                    "linear sparse fwd",
                );
                let gs =
                    linear_backward(&dy, &x, wr, false, true, WeightGrad::AtMask(&mask)).unwrap();
                assert_close(
                    gs.dx.unwrap().h(),
                    &to64(gd.dx.as_ref().unwrap().h()),
                    1e-4,
                    "linear sparse dx",
                );
                let expect: Vec<f64> = gd
                    .dw
                    .h()
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| if mask.get(k) { v as f64 } else { 0.0 })
                    .collect();
                assert_close(gs.dw.h(), &expect, 1e-4, "linear sparse dW");
                assert!(gs.db.is_none());
                // The training pair (the forward's kept `xᵀ` feeding the backward) gives the
                // same bits as the plain calls.
                let (yk, input) = linear_forward_keeping(x.clone(), wr, None).unwrap();
                assert_eq!(
                    f32_bits(yk.h()),
                    f32_bits(linear_forward(&x, wr, None).unwrap().h())
                );
                if let Some(xt) = &input.xt {
                    let xh = x.h();
                    let xth = xt.h();
                    let (b, i) = (x.shape()[0], x.shape()[1]);
                    assert!((0..b * i).all(|k| xth[(k % i) * b + k / i] == xh[k]), "xᵀ");
                }
                let gk = linear_backward_kept(
                    &dy,
                    &input,
                    wr,
                    false,
                    true,
                    WeightGrad::AtMask(&mask),
                    None,
                )
                .unwrap();
                assert_eq!(f32_bits(gk.dw.h()), f32_bits(gs.dw.h()), "kept-input dW");
                assert_eq!(
                    f32_bits(gk.dx.unwrap().h()),
                    f32_bits(
                        linear_backward(&dy, &x, wr, false, true, WeightGrad::AtMask(&mask))
                            .unwrap()
                            .dx
                            .unwrap()
                            .h()
                    ),
                    "kept-input dx"
                );
            }
        }
    }
    assert!(linear_forward(
        &randn(&[2, 3], 1, dev),
        WeightRef::Dense(&randn(&[4, 5], 1, dev)),
        None
    )
    .is_err());
    assert!(linear_forward(
        &randn(&[2, 3], 1, dev),
        WeightRef::Dense(&randn(&[4, 3], 1, dev)),
        Some(&randn(&[3], 1, dev))
    )
    .is_err());
    Ok(())
}
test_device!(
    linear_all_paths_forward_backward,
    linear_all_paths_forward_backward_cpu,
    linear_all_paths_forward_backward_cuda,
    linear_all_paths_forward_backward_emu
);

/// Kernels called from inside the rayon pool, many at once (several trainers in one
/// process, each step running on the pool): a worker waiting inside one sparse product
/// steals another job that runs the same kernel on the same thread. The per-thread scratch
/// buffers must be re-entrant, and every result equals the one computed alone. (On an
/// AVX-512 machine this runs the cache-blocked SpMM, whose buffers once panicked here.)
#[test]
fn sparse_kernels_nested_on_one_worker_give_the_same_results() {
    let dev = Device::Cpu;
    let x = randn(&[128, 784], 41, &dev);
    let w = randn(&[300, 784], 42, &dev);
    let mask = mask_at(&[300, 784], 0.9, 43, &dev);
    let wm = masked(&w, mask.mask());
    let sw = SparseWeight::new(&wm, &mask).unwrap();
    let wr = WeightRef::Sparse(&sw);
    let alone = linear_forward(&x, wr, None).unwrap().h();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Jobs injected from several outside threads, the way concurrent trainers enter the
    // pool: a worker that waits inside one product picks up the next injected job.
    let outs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..16)
                        .map(|_| pool.install(|| linear_forward(&x, wr, None).unwrap().h()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        runs.into_iter().flat_map(|r| r.join().unwrap()).collect()
    });
    for y in outs {
        assert_eq!(y, alone);
    }
}

fn linear_reuses_its_at_mask_gradient_only_while_valid(dev: &Device) -> TestResult {
    let (b, i, o) = (6, 40, 12);
    let x = randn(&[b, i], 1, dev);
    let w = randn(&[o, i], 2, dev);
    let mut mask = mask_at(w.shape(), 0.9, 3, dev);
    let sw = SparseWeight::new(&w, &mask)?;
    let mut memo = AtMaskGradMemo::default();
    let mut grad = Tensor::zeros(w.shape(), *dev)?;
    let bits = |t: &Tensor| t.h().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for step in 0..3u64 {
        let dy = randn(&[b, o], 10 + step, dev);
        let wg = WeightGrad::AtMask(&mask);
        let version = AtMaskGradMemo::version_of(&wg);
        let buf = memo.take(&mut grad, version);
        // Nothing is recorded before the first step; device tensors are never reused.
        assert_eq!(
            buf.is_some(),
            step > 0 && *dev == Device::Cpu,
            "step {step}"
        );
        let wr = WeightRef::Sparse(&sw);
        let input = LinearInput {
            x: x.clone(),
            xt: None,
        };
        let g = linear_backward_kept(&dy, &input, wr, false, false, wg, buf)?;
        let fresh = linear_backward(&dy, &x, wr, false, false, wg)?;
        assert_eq!(bits(&g.dw), bits(&fresh.dw), "step {step}");
        grad = g.dw;
        memo.record(&grad, version);
    }
    // A gradient changed since it was recorded is not reused.
    let version = AtMaskGradMemo::version_of(&WeightGrad::AtMask(&mask));
    let mut changed = grad.clone();
    add_assign(&mut changed, &grad)?;
    assert!(memo.take(&mut changed, version).is_none());
    // Nor is one recorded under an earlier mask.
    memo.record(&grad, version);
    mask.set(mask_at(w.shape(), 0.9, 4, dev).mask().clone())?;
    let new_version = AtMaskGradMemo::version_of(&WeightGrad::AtMask(&mask));
    assert!(memo.take(&mut grad, new_version).is_none());
    // A dense gradient is never recorded.
    memo.record(&grad, None);
    assert!(memo.take(&mut grad, new_version).is_none());
    Ok(())
}

test_device!(
    linear_reuses_its_at_mask_gradient_only_while_valid,
    linear_reuses_its_at_mask_gradient_only_while_valid_cpu,
    linear_reuses_its_at_mask_gradient_only_while_valid_cuda,
    linear_reuses_its_at_mask_gradient_only_while_valid_emu
);

/// The bit patterns of `v`, for exact comparisons.
fn f32_bits(v: Vec<f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}
