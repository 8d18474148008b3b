//! The run directory through the CLI: one writer at a time, nothing destroyed unasked,
//! `--resume` flags honoured or refused, diverged epochs never saved, limits checked up
//! front, exports that cannot overwrite a checkpoint, and clear data and disk errors.

mod common;

use std::time::{Duration, Instant};

use common::{bin, cli, files, metric_lines, tiny_run, TINY};

#[test]
fn a_second_writer_is_refused_naming_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut owner = bin()
        .args([
            "train",
            "--epochs",
            "100000",
            "--out",
            dir.to_str().unwrap(),
        ])
        .args(TINY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = owner.id().to_string();
    let start = Instant::now();
    while std::fs::read_to_string(dir.join(".lock")).unwrap_or_default() != pid {
        assert!(start.elapsed() < Duration::from_secs(20), "no lock taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = dir.to_str().unwrap();
    let (ok, err) = cli(&["train", "--steps", "1", "--out", d, "--overwrite"]);
    assert!(
        !ok && err.contains(&format!("(process {pid}) is using this directory")),
        "{err}"
    );
    let (ok, err) = cli(&["train", "--resume", d]);
    assert!(!ok && err.contains(&format!("process {pid}")), "{err}");
    owner.kill().unwrap();
    owner.wait().unwrap();
    // The OS drops the lock with its owner: the directory can be resumed (or, with no
    // finished epoch, restarted).
    let (ok, err) = tiny_run(&dir, 1, &["--overwrite"]);
    assert!(ok, "{err}");
}

#[test]
fn an_existing_run_is_kept_unless_overwrite_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    assert!(tiny_run(&dir, 1, &[]).0);
    let before = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    let cfg = std::fs::read(dir.join("config.toml")).unwrap();
    let (ok, err) = tiny_run(&dir, 2, &[]);
    assert!(
        !ok && err.contains("already holds a run") && err.contains("--overwrite"),
        "{err}"
    );
    // A new run whose setup fails leaves the old run as it was, even with --overwrite.
    let empty = tmp.path().join("no-data");
    std::fs::create_dir(&empty).unwrap();
    let (ok, err) = tiny_run(
        &dir,
        2,
        &[
            "--overwrite",
            "--data",
            "mnist",
            "--model",
            "mlp",
            "--data-dir",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("train-images-idx3-ubyte"), "{err}");
    assert_eq!(std::fs::read(dir.join("metrics.jsonl")).unwrap(), before);
    assert_eq!(std::fs::read(dir.join("config.toml")).unwrap(), cfg);
    let (ok, err) = tiny_run(&dir, 2, &["--overwrite"]);
    assert!(ok, "{err}");
    assert_eq!(metric_lines(&dir).len(), 2);
}

#[test]
fn resume_refuses_fixed_flags_and_extends_a_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    assert!(tiny_run(&dir, 2, &[]).0);
    for flags in [
        &["--lr", "0.1"][..],
        &["--model", "mlp"],
        &["--seed", "3"],
        &["--agc"],
    ] {
        let mut args = vec!["train", "--resume", d];
        args.extend_from_slice(flags);
        let (ok, err) = cli(&args);
        assert!(
            !ok && err.contains(&format!("{} cannot change", flags[0])),
            "{err}"
        );
    }
    let (ok, err) = cli(&["train", "--resume", d, "--out", "elsewhere"]);
    assert!(!ok && err.contains("--out cannot change"), "{err}");
    let (ok, err) = cli(&["train", "--resume", d]);
    assert!(
        !ok && err.contains("already finished (16 of 16 steps)"),
        "{err}"
    );
    let (ok, err) = cli(&["train", "--resume", d, "--epochs", "3"]);
    assert!(ok, "{err}");
    let steps: Vec<u64> = metric_lines(&dir)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![8, 16, 24]);
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains("epochs = 3"), "{cfg}");
    let (ok, err) = cli(&["train", "--resume", d, "--steps", "20"]);
    assert!(
        !ok && err.contains("beyond the run's 20 steps (a run cannot be shortened)"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (conv, mlp) = (tmp.path().join("conv"), tmp.path().join("mlp"));
    assert!(tiny_run(&conv, 1, &[]).0);
    assert!(tiny_run(&mlp, 1, &["--model", "mlp"]).0);
    let summary = std::fs::read(mlp.join("summary.json")).unwrap();
    std::fs::copy(conv.join("last.safetensors"), mlp.join("last.safetensors")).unwrap();
    let (ok, err) = cli(&["train", "--resume", mlp.to_str().unwrap(), "--epochs", "3"]);
    assert!(
        !ok && err.contains("different run") && err.contains("model \"mlp\" vs \"convnet\""),
        "{err}"
    );
    assert_eq!(std::fs::read(mlp.join("summary.json")).unwrap(), summary);
}

#[test]
fn a_diverged_epoch_is_never_checkpointed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (ok, err) = tiny_run(&dir, 2, &["--lr", "1000"]);
    assert!(!ok && err.contains("training diverged"), "{err}");
    assert!(!dir.join("last.safetensors").exists() && !dir.join("best.safetensors").exists());
    assert!(metric_lines(&dir).is_empty());
}

#[test]
fn limits_are_checked_before_anything_runs() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--width-mult", "1e6"],
            "--width-mult 1000000 is outside (0, 64]",
        ),
        (
            &["--steps", "18446744073709551615"],
            "--steps is limited to",
        ),
        (
            &["--epochs", "18446744073709551615"],
            "--epochs is limited to",
        ),
        (
            &["--warmup-epochs", "NaN"],
            "--warmup-epochs NaN must be finite",
        ),
        (&["--warmup-epochs=-1"], "--warmup-epochs -1 must be finite"),
        (
            &["--warmup-epochs", "1e30"],
            "must be finite and within [0, 4]",
        ),
        (
            &["--weight-decay=-1"],
            "--weight-decay -1 is outside [0, 1)",
        ),
        (
            &["--eval-subset", "0"],
            "--eval-subset 0 leaves no examples",
        ),
        (&["--threads", "0"], "--threads must be within"),
        (
            &["--update-interval", "0"],
            "--update-interval must be >= 1",
        ),
    ];
    for (flags, want) in cases {
        let start = Instant::now();
        let mut args = vec!["train"];
        args.extend_from_slice(flags);
        let (ok, err) = cli(&args);
        assert!(!ok && err.contains(want), "{flags:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{flags:?} took {:?}",
            start.elapsed()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "momentum = 1.5\n").unwrap();
    let (ok, err) = cli(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(
        !ok && err.contains("--momentum 1.5 is outside [0, 1)"),
        "{err}"
    );
    // The memory estimate: a model whose training state cannot fit is refused before
    // its weights are allocated.
    let err = sparse_train::model::build(
        "resnet50",
        [3, 32, 32],
        10,
        64.0,
        0,
        sparse_train::config::Init::PytorchDefault,
        sparse_kernels::Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("lower --width-mult"), "{err}");
}

#[test]
fn export_never_replaces_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    assert!(tiny_run(&dir, 1, &[]).0);
    let last = dir.join("last.safetensors");
    let l = last.to_str().unwrap();
    let before = std::fs::read(&last).unwrap();
    let (ok, err) = cli(&["export", "--checkpoint", l, "--out", l]);
    assert!(
        !ok && err.contains("is the checkpoint being exported"),
        "{err}"
    );
    let best = dir.join("best.safetensors");
    let (ok, err) = cli(&[
        "export",
        "--checkpoint",
        l,
        "--out",
        best.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(!ok && err.contains("is a training checkpoint"), "{err}");
    let (ok, err) = cli(&[
        "export",
        "--checkpoint",
        l,
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("is a directory"), "{err}");
    assert_eq!(std::fs::read(&last).unwrap(), before);
    let out = tmp.path().join("model.safetensors");
    let o = out.to_str().unwrap();
    assert!(cli(&["export", "--checkpoint", l, "--out", o]).0);
    let (ok, err) = cli(&["export", "--checkpoint", l, "--out", o]);
    assert!(!ok && err.contains("exists; pass --overwrite"), "{err}");
    assert!(cli(&["export", "--checkpoint", l, "--out", o, "--overwrite"]).0);
    assert!(
        files(tmp.path()).iter().all(|f| !f.contains("tmp")),
        "{:?}",
        files(tmp.path())
    );
}

#[test]
fn a_directory_in_place_of_a_data_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("mnist/train-images-idx3-ubyte")).unwrap();
    let (ok, err) = cli(&[
        "train",
        "--data",
        "mnist",
        "--model",
        "mlp",
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("train-images-idx3-ubyte: is a directory"),
        "{err}"
    );
}

#[test]
fn test_images_of_another_shape_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    let write = |name: &str, n: u32, side: u32| {
        let mut img = vec![0u8, 0, 8, 3];
        for d in [n, side, side] {
            img.extend(d.to_be_bytes());
        }
        img.resize(16 + (n * side * side) as usize, 7);
        std::fs::write(m.join(format!("{name}-images-idx3-ubyte")), img).unwrap();
        let mut lab = vec![0u8, 0, 8, 1];
        lab.extend(n.to_be_bytes());
        lab.resize(8 + n as usize, 1);
        std::fs::write(m.join(format!("{name}-labels-idx1-ubyte")), lab).unwrap();
    };
    write("train", 64, 28);
    write("t10k", 16, 14);
    let (ok, err) = cli(&[
        "train",
        "--data",
        "mnist",
        "--model",
        "mlp",
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--batch-size",
        "32",
    ]);
    assert!(
        !ok && err
            .contains("training images are (1, 28, 28) (C, H, W) but test images are (1, 14, 14)"),
        "{err}"
    );
    assert!(!err.contains("epoch 1"), "{err}");
}

#[test]
fn a_full_disk_names_the_file_and_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // A file-size limit makes every write past 8 KiB fail (EFBIG, with SIGXFSZ ignored),
    // as a full disk does: config.toml fits, the first checkpoint does not.
    let script = format!(
        "trap '' XFSZ; ulimit -f 8; exec \"{}\" train --epochs 1 --out \"{}\" {}",
        env!("CARGO_BIN_EXE_sparse-train"),
        dir.display(),
        TINY.join(" ")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("best.safetensors: cannot write") && err.contains("disk full?"),
        "{err}"
    );
    let left = files(&dir);
    assert!(left.iter().all(|f| !f.starts_with(".tmp")), "{left:?}");
    assert!(!left.contains(&"best.safetensors".to_string()), "{left:?}");
}
