//! Every model in the zoo builds, runs forward and backward on a small batch, and exposes
//! its conv/linear weights as sparsifiable.

use sparse_kernels::ops::loss::softmax_cross_entropy;
use sparse_kernels::{Device, ExecPolicy, IndexTensor, Tensor};
use sparse_train::config::Init;
use sparse_train::model::{build, ExecCtx, MODELS};

#[test]
fn every_model_runs_forward_and_backward() {
    let ctx = ExecCtx {
        train: true,
        dense_grad: false,
        keeps_dense_values: false,
        force_dense: false,
        freeze_running_stats: false,
        policy: ExecPolicy::default(),
    };
    for (name, _) in MODELS {
        let input = if *name == "mlp" {
            [1, 28, 28]
        } else {
            [3, 32, 32]
        };
        let mut m = build(name, input, 10, 0.125, 1, Init::PytorchDefault, Device::Cpu).unwrap();
        let n: usize = input.iter().product();
        let x = Tensor::cpu(
            &[2, input[0], input[1], input[2]],
            (0..2 * n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect(),
        )
        .unwrap();
        let logits = m.forward(x, &ctx).unwrap();
        assert_eq!(logits.shape(), &[2, 10], "{name}");
        let ce = softmax_cross_entropy(&logits, &IndexTensor::cpu(&[2], vec![1, 7]).unwrap(), 0.0)
            .unwrap();
        assert!(ce.loss.is_finite(), "{name}");
        m.backward(ce.dlogits, &ctx).unwrap();
        let sparsifiable = m.params().iter().filter(|p| p.sparsifiable).count();
        assert!(
            sparsifiable >= 3,
            "{name}: {sparsifiable} sparsifiable layers"
        );
        assert!(
            m.params()
                .iter()
                .all(|p| p.grad.to_host().unwrap().iter().all(|g| g.is_finite())),
            "{name}"
        );
        assert!(
            m.params()
                .iter()
                .any(|p| p.grad.to_host().unwrap().iter().any(|g| *g != 0.0)),
            "{name}: no gradient"
        );
        let depth = m
            .params()
            .iter()
            .filter(|p| p.sparsifiable && p.value.shape().len() == 4)
            .count();
        let expect = match *name {
            "resnet20" => 19 + 2,
            "resnet32" => 31 + 2,
            "resnet56" => 55 + 2,
            "resnet18" => 17 + 3,
            "resnet34" => 33 + 3,
            "resnet50" => 49 + 4,
            "vgg11" => 8,
            "vgg16" => 13,
            "vgg19" => 16,
            "convnet" => 3,
            _ => 0,
        };
        assert_eq!(
            depth, expect,
            "{name}: conv count (including projection shortcuts)"
        );
    }
    assert!(build(
        "resnet99",
        [3, 32, 32],
        10,
        1.0,
        0,
        Init::PytorchDefault,
        Device::Cpu
    )
    .is_err());
    assert!(build(
        "mlp",
        [1, 28, 28],
        10,
        0.0,
        0,
        Init::PytorchDefault,
        Device::Cpu
    )
    .is_err());
}

#[test]
fn kaiming_normal_init_has_fan_in_variance_and_zero_biases() {
    let m = build(
        "mlp",
        [1, 28, 28],
        10,
        1.0,
        3,
        Init::KaimingNormal,
        Device::Cpu,
    )
    .unwrap();
    for p in m.params() {
        let v = p.value.to_host().unwrap();
        if p.sparsifiable {
            let fan_in = p.value.shape()[1] as f64;
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let want = 2.0 / fan_in;
            // fc3 has 1,000 weights: the sample variance is within ~15% of 2/fan_in.
            assert!(
                (var / want - 1.0).abs() < 0.15,
                "{}: var {var}, want {want}",
                p.name
            );
            assert!(
                mean.abs() < 4.0 * (want / n).sqrt(),
                "{}: mean {mean}",
                p.name
            );
        } else {
            assert!(v.iter().all(|&x| x == 0.0), "{}: biases start at 0", p.name);
        }
    }
}
