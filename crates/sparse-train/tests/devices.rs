//! The CUDA backend trains like the CPU: per-step losses on the emulated CUDA device (every
//! kernel from `kernels/`, run on the host) match `--device cpu` to 1e-4 relative over 20
//! steps with the same seed, for the MLP and the convnet, dense and masked (RigL, with mask
//! updates inside the 20 steps). `sparse-train selftest` runs the same comparison.

use sparse_train::selftest::{max_rel_diff, step_losses};

fn losses(model: &str, method: &str, device: &str, updates_expected: bool) -> Vec<f64> {
    let (l, updates) = step_losses(model, method, device, 20)
        .unwrap_or_else(|e| panic!("{model}/{method} on {device}: {e:#}"));
    assert_eq!(l.len(), 20);
    if updates_expected {
        assert!(updates > 0, "{model}/{method}: no mask update in 20 steps");
    }
    l
}

fn compare(model: &str, method: &str, updates_expected: bool) {
    let cpu = losses(model, method, "cpu", updates_expected);
    let emu = losses(model, method, "cuda-emulated", updates_expected);
    let rel = max_rel_diff(&cpu, &emu);
    assert!(
        rel <= 1e-4,
        "{model}/{method}: losses differ by {rel:.2e}\ncpu {cpu:?}\nemulated {emu:?}"
    );
    // The losses move from step to step, so matching them means something.
    let (lo, hi) = cpu
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(hi - lo > 1e-2, "{model}/{method}: {cpu:?}");
}

#[test]
fn mlp_dense_and_rigl_match_the_cpu() {
    compare("mlp", "dense", false);
    compare("mlp", "rigl", true);
}

/// Every method, and RigL with AGC, on the MLP: the same losses on both devices, and the same run twice
/// on the emulated device (reproducible).
#[test]
fn every_method_matches_the_cpu_on_the_emulated_device() {
    let methods = [
        "static",
        "snip",
        "set",
        "set-orig",
        "rigl-itop",
        "dst-ee",
        "gmp",
        "granet",
        "fggp",
        "fggp-annealing",
        "optg",
        "rigl+agc",
    ];
    for m in methods {
        compare("mlp", m, false);
    }
    let a = step_losses("mlp", "rigl", "cuda-emulated", 20).unwrap().0;
    let b = step_losses("mlp", "rigl", "cuda-emulated", 20).unwrap().0;
    assert_eq!(a, b, "the emulated device is not reproducible");
}

#[test]
fn convnet_dense_and_rigl_match_the_cpu() {
    compare("convnet", "dense", false);
    compare("convnet", "rigl", true);
}

mod common;

/// The CLI trains, checkpoints, resumes and evaluates on the emulated device.
#[test]
fn cli_trains_and_resumes_on_the_emulated_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, err) = common::tiny_run(&out, 1, &["--device", "cuda-emulated"]);
    assert!(ok, "{err}");
    let (ok, err) = common::cli(&["train", "--resume", out.to_str().unwrap(), "--epochs", "2"]);
    assert!(ok, "{err}");
    assert_eq!(common::metric_lines(&out).len(), 2);
    let ck = out.join("last.safetensors");
    let (ok, err) = common::cli(&["eval", "--checkpoint", ck.to_str().unwrap()]);
    assert!(ok, "{err}");
}

/// `bench-gpu` runs its whole kernel harness on the emulated device (smallest sizes) and
/// prints the table, and without a usable GPU it says it skipped and succeeds.
#[test]
fn bench_gpu_harness_runs_and_skips_without_a_gpu() {
    let out = common::bin()
        .args(["bench-gpu", "--device", "cuda-emulated", "--smoke"])
        .args(["--python", "/nonexistent/python"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| SpMM |",
        "| SDDMM |",
        "| sparse conv fwd+bwd |",
        "radix select",
        "| goal |",
    ] {
        assert!(text.contains(row), "missing {row}:\n{text}");
    }
    assert!(text.contains("PyTorch comparison skipped"), "{text}");
    let out = common::bin()
        .args(["bench-gpu", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("CUDA benchmarks skipped"));
}
