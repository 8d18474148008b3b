//! The CUDA backend trains like the CPU: per-step losses on the emulated CUDA device (every
//! kernel from `kernels/`, run on the host) match `--device cpu` to 1e-4 relative over 20
//! steps with the same seed, for the MLP and the convnet, dense and masked (RigL, with mask
//! updates inside the 20 steps). `sparse-train selftest` runs the same comparison.

use sparse_train::selftest::{max_rel_diff, step_losses};

fn losses(model: &str, method: &str, device: &str) -> Vec<f64> {
    let (l, updates) = step_losses(model, method, device, 20)
        .unwrap_or_else(|e| panic!("{model}/{method} on {device}: {e:#}"));
    assert_eq!(l.len(), 20);
    if method != "dense" {
        assert!(updates > 0, "{model}/{method}: no mask update in 20 steps");
    }
    l
}

fn compare(model: &str, method: &str) {
    let cpu = losses(model, method, "cpu");
    let emu = losses(model, method, "cuda-emulated");
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
    compare("mlp", "dense");
    compare("mlp", "rigl");
}

#[test]
fn convnet_dense_and_rigl_match_the_cpu() {
    compare("convnet", "dense");
    compare("convnet", "rigl");
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
