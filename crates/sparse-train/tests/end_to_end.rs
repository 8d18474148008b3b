//! End-to-end tests: every method on real MNIST, ResNet-20 on real CIFAR-10, exact resume,
//! bad inputs, and the Python export check. Real-data tests read `SPARSE_DATA_DIR` and are
//! skipped with a notice when it is unset (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

use sparse_train::config::{LrSchedule, TrainConfig};
use sparse_train::data::DataKind;
use sparse_train::trainer::Trainer;

fn data_dir() -> Option<PathBuf> {
    match std::env::var_os("SPARSE_DATA_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set SPARSE_DATA_DIR"
            );
            eprintln!("SPARSE_DATA_DIR is not set: skipping a real-data test");
            None
        }
    }
}

fn mnist_cfg(dir: &Path, method: &str) -> TrainConfig {
    TrainConfig {
        model: "mlp".into(),
        data: DataKind::Mnist,
        data_dir: Some(dir.to_path_buf()),
        method: method.into(),
        sparsity: 0.9,
        epochs: 2,
        batch_size: 64,
        lr: 0.05,
        train_subset: Some(8000),
        eval_subset: Some(2000),
        update_interval: Some(25),
        lr_schedule: LrSchedule::Cosine,
        ..TrainConfig::default()
    }
}

#[test]
fn every_method_learns_mnist_with_exact_budgets() {
    let Some(dir) = data_dir() else { return };
    for (method, agc) in [
        ("dense", false),
        ("static", false),
        ("snip", false),
        ("set", false),
        ("set-orig", false),
        ("rigl", false),
        ("rigl-itop", false),
        ("dst-ee", false),
        ("gmp", false),
        ("granet", false),
        ("optg", false),
        ("fggp", false),
        ("rigl", true),
    ] {
        let mut cfg = mnist_cfg(&dir, method);
        cfg.agc = agc;
        let mut t = Trainer::new(cfg).unwrap();
        let initial: Vec<usize> = t.layer_metrics().iter().map(|l| l.nnz).collect();
        let mut updates = 0;
        while !t.finished() {
            let m = t.run_epoch().unwrap();
            updates += m.dropped + m.grown;
            // Constant-budget methods: the trainer also checks every update (Budget::check).
            if ["static", "set", "set-orig", "rigl", "rigl-itop", "dst-ee"].contains(&method) {
                assert_eq!(
                    m.layers.iter().map(|l| l.nnz).collect::<Vec<_>>(),
                    initial,
                    "{method}: budget"
                );
            }
        }
        let (_, acc) = t.evaluate_test().unwrap();
        eprintln!(
            "{method}{}: test accuracy {acc:.4}, global density {:.4}",
            if agc { "+agc" } else { "" },
            t.global_density()
        );
        assert!(
            acc > 0.7,
            "{method}: accuracy {acc} not well above chance (0.1)"
        );
        if method != "dense" {
            assert!(
                method == "static" || updates > 0,
                "{method}: no mask changes"
            );
            let d = t.global_density();
            assert!(
                (d - 0.1).abs() < 0.005,
                "{method}: density {d} missed the target"
            );
        }
    }
}

#[test]
fn resnet20_learns_cifar10() {
    let Some(dir) = data_dir() else { return };
    let cfg = TrainConfig {
        model: "resnet20".into(),
        width_mult: 0.5,
        data: DataKind::Cifar10,
        data_dir: Some(dir),
        method: "rigl".into(),
        sparsity: 0.8,
        steps: Some(250),
        batch_size: 64,
        lr: 0.1,
        eval_subset: Some(2000),
        update_interval: Some(50),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(cfg).unwrap();
    let s = sparse_train::run::train(&mut t, None).unwrap();
    eprintln!(
        "resnet20 (x0.5) rigl 80% on CIFAR-10, 250 steps: test accuracy {:.4}",
        s.test_accuracy
    );
    assert!(
        s.test_accuracy > 0.3,
        "test accuracy {} not clearly above chance (0.1)",
        s.test_accuracy
    );
}

fn resume_cfg(method: &str, agc: bool) -> TrainConfig {
    TrainConfig {
        model: "convnet".into(),
        width_mult: 0.25,
        method: method.into(),
        agc,
        epochs: 2,
        batch_size: 32,
        train_subset: Some(640),
        eval_subset: Some(200),
        update_interval: Some(7),
        ..TrainConfig::default()
    }
}

fn state(t: &Trainer) -> (Vec<Vec<f32>>, Vec<Vec<bool>>) {
    let p = t.model.params();
    (
        p.iter().map(|p| p.value.to_host().unwrap()).collect(),
        p.iter()
            .filter_map(|p| p.mask().map(|m| m.mask().to_bools()))
            .collect(),
    )
}

#[test]
fn resume_is_bitwise_identical() {
    for (method, agc) in [("dst-ee", false), ("optg", false), ("rigl", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut straight = Trainer::new(resume_cfg(method, agc)).unwrap();
        let a1 = straight.run_epoch().unwrap();
        let a2 = straight.run_epoch().unwrap();

        let mut first = Trainer::new(resume_cfg(method, agc)).unwrap();
        let b1 = first.run_epoch().unwrap();
        let ck = dir.path().join("last.safetensors");
        sparse_train::checkpoint::save(&mut first, &ck).unwrap();
        drop(first);
        let mut resumed = sparse_train::checkpoint::load(&ck, None).unwrap();
        let b2 = resumed.run_epoch().unwrap();

        let strip = |mut m: sparse_train::report::EpochMetrics| {
            m.epoch_seconds = 0.0;
            m.images_per_sec = 0.0;
            m
        };
        assert_eq!(strip(a1), strip(b1), "{method}: epoch 1 metrics");
        assert_eq!(
            strip(a2),
            strip(b2),
            "{method}: epoch 2 metrics after resume"
        );
        assert!(
            state(&straight) == state(&resumed),
            "{method}: weights or masks differ after resume"
        );
        assert_eq!(straight.step, resumed.step);
    }
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparse-train"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The allocator cache's size comes from the environment: a bad value is a clear error
/// before anything runs, and 0 (cache off) works.
#[test]
fn the_allocator_cache_setting_is_checked() {
    let run = |v: &str| {
        Command::new(env!("CARGO_BIN_EXE_sparse-train"))
            .arg("list")
            .env("SPARSE_ALLOC_CACHE_MIB", v)
            .output()
            .unwrap()
    };
    let out = run("4 GiB");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SPARSE_ALLOC_CACHE_MIB"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = run("0");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("resnet18"));
}

/// A reader that stops early (`sparse-train list | head -1`) ends the program quietly, as
/// for other Unix tools, instead of a panic on the failed print.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparse-train"))
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_give_clear_errors_and_nonzero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Truncated CIFAR file.
    std::fs::create_dir_all(d.join("cifar10")).unwrap();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(d.join("cifar10").join(f), vec![1u8; 3073 * 2 + 100]).unwrap();
    }
    let (ok, err) = cli(&[
        "train",
        "--data",
        "cifar10",
        "--data-dir",
        d.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(
        !ok && err.contains("data_batch_1.bin") && err.contains("not a whole number"),
        "{err}"
    );
    // Wrong IDX magic.
    std::fs::create_dir_all(d.join("mnist")).unwrap();
    let mut img = vec![0u8, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
    img.extend(vec![0u8; 784]);
    std::fs::write(d.join("mnist/train-images-idx3-ubyte"), &img).unwrap();
    std::fs::write(
        d.join("mnist/train-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 1, 3],
    )
    .unwrap();
    let (ok, err) = cli(&[
        "train",
        "--data",
        "mnist",
        "--model",
        "mlp",
        "--data-dir",
        d.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(
        !ok && err.contains("train-images-idx3-ubyte") && err.contains("magic"),
        "{err}"
    );
    // Unknown model and invalid sparsity.
    let (ok, err) = cli(&["train", "--model", "resnet99", "--steps", "1"]);
    assert!(!ok && err.contains("unknown model `resnet99`"), "{err}");
    let (ok, err) = cli(&["train", "--sparsity", "1.0", "--steps", "1"]);
    assert!(!ok && err.contains("outside [0, 1)"), "{err}");
    // Missing GPU: --device cuda is a clear error.
    let (ok, err) = cli(&["train", "--device", "cuda", "--steps", "1"]);
    assert!(!ok && err.contains("CUDA not available"), "{err}");
    // Corrupt and truncated checkpoints.
    let run = d.join("run");
    let (ok, err) = cli(&[
        "train",
        "--width-mult",
        "0.25",
        "--steps",
        "3",
        "--train-subset",
        "256",
        "--eval-subset",
        "64",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for f in sparse_train::run::RUN_FILES {
        assert!(run.join(f).exists(), "missing {f}");
    }
    let good = std::fs::read(run.join("last.safetensors")).unwrap();
    let bad = d.join("truncated.safetensors");
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let (ok, err) = cli(&["eval", "--checkpoint", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("corrupt or truncated"), "{err}");
    std::fs::write(&bad, b"not a checkpoint at all").unwrap();
    let (ok, err) = cli(&["eval", "--checkpoint", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("checkpoint"), "{err}");
    let (ok, err) = cli(&[
        "eval",
        "--checkpoint",
        run.join("last.safetensors").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

#[test]
fn python_reads_the_export_and_matches_rust_predictions() {
    let Some(dir) = data_dir() else { return };
    let py = Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .status();
    if !matches!(py, Ok(s) if s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install safetensors and numpy"
        );
        eprintln!("python3 with safetensors + numpy not available: skipping the export check");
        return;
    }
    let mut cfg = mnist_cfg(&dir, "rigl");
    cfg.epochs = 1;
    let mut t = Trainer::new(cfg).unwrap();
    sparse_train::run::train(&mut t, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("mlp.safetensors");
    sparse_train::checkpoint::export(&mut t, &export).unwrap();
    // Rust predictions on the first 500 test images.
    let loader = sparse_train::data::Loader::eval(&t.data, t.data.test.clone(), 500);
    let b = loader.eval_batch(0).unwrap();
    let ctx = sparse_train::model::ExecCtx {
        train: false,
        dense_grad: false,
        keeps_dense_values: false,
        force_dense: false,
        freeze_running_stats: true,
        policy: sparse_kernels::ExecPolicy::default(),
    };
    let logits = t.model.forward(b.x.clone(), &ctx).unwrap();
    let l = logits.to_host().unwrap();
    let preds: Vec<usize> = l
        .chunks(10)
        .map(|r| (0..10).fold(0, |best, j| if r[j] > r[best] { j } else { best }))
        .collect();
    let rows: Vec<Vec<f32>> = l.chunks(10).map(|r| r.to_vec()).collect();
    let pj = tmp.path().join("preds.json");
    std::fs::write(
        &pj,
        serde_json::json!({ "predictions": preds, "logits": rows }).to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_check.py");
    let mnist = if dir.join("mnist").is_dir() {
        dir.join("mnist")
    } else {
        dir
    };
    let out = Command::new("python3")
        .arg(script)
        .arg(&export)
        .arg(&pj)
        .arg(&mnist)
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python export check failed");
}
