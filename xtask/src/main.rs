//! `cargo xtask <command>`: project automation that needs more than one cargo call.
//!
//! * `bench [FILTER]`: runs the criterion benchmarks (optionally filtered) and prints a
//!   summary of the medians from `target/criterion`; `bench --vs-pytorch` compares our
//!   training step and inference with PyTorch's on the same models; `bench --device cuda
//!   [--quick]` prints the GPU table (`sparse-train bench-gpu`), or says it skipped.
//! * `kernels`: compiles every `kernels/*.cu` through NVRTC for sm_80 and sm_90 and
//!   through the host compiler, with registers and spills per kernel.
//! * `gpu-stage`: the stripped release binary with the `cuda` feature,
//!   `scripts/gpu-check.sh` and the PyTorch scripts in `gpu-stage/`, ready to carry to a GPU
//!   machine.
//! * `ci`: the checks CI runs (fmt, clippy with `-D warnings`, the `cuda` feature build,
//!   tests).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod grid;
mod kernels;
mod vs_pytorch;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the sparse-train workspace"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the criterion benchmarks, then print a table of medians.
    Bench {
        /// Only benchmarks whose name contains this (criterion's filter).
        filter: Option<String>,
        /// Instead: our training step and inference against PyTorch's, interleaved.
        #[arg(long)]
        vs_pytorch: bool,
        /// Python with torch (else SPARSE_TORCH_PYTHON, $VIRTUAL_ENV, .venv-torch, python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Models for --vs-pytorch.
        #[arg(long, value_delimiter = ',', default_value = "resnet20,resnet18,vgg16")]
        models: Vec<String>,
        /// Threads (ours and torch.set_num_threads).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Interleaved rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Timed steps per run.
        #[arg(long, default_value_t = 6)]
        steps: usize,
        /// RigL's sparsity.
        #[arg(long, default_value_t = 0.9)]
        sparsity: f64,
        /// Instead: the GPU table (`cuda`: SpMM, SDDMM, sparse conv, radix select and
        /// training steps against cuBLAS and PyTorch); says it skipped without a GPU.
        #[arg(long)]
        device: Option<String>,
        /// With --device: the short form (about 5 minutes on an H100/H200).
        #[arg(long)]
        quick: bool,
    },
    /// Run the checks CI runs.
    Ci,
    /// Build the release `sparse-train` with the `cuda` feature, strip it and stage it with
    /// scripts/gpu-check.sh in gpu-stage/ (for a GPU machine without a Rust toolchain).
    GpuStage,
    /// Compile every kernels/*.cu through NVRTC (no GPU needed) and the host compiler;
    /// print registers and spills per kernel; fail on any error.
    Kernels {
        /// Target architectures.
        #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
        arch: Vec<String>,
    },
    /// Every method on LeNet-300-100 (90/95/98%, several seeds), then docs/results.md.
    Grid {
        /// `mnist`, `fashion-mnist` or `all`.
        which: String,
        /// Seeds per setting.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Runs at a time (each on one thread).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Epochs per run (the protocol's 10; fewer only to test the grid itself).
        #[arg(long, default_value_t = 10)]
        epochs: u64,
        /// Only these methods (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Where the run directories go.
        #[arg(long, default_value = "runs/grid")]
        out: PathBuf,
        /// The results page.
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Bench {
            filter,
            vs_pytorch,
            python,
            models,
            threads,
            rounds,
            steps,
            sparsity,
            device,
            quick,
        } => {
            if let Some(device) = device {
                bench_gpu(&device, quick, python.as_deref())
            } else if vs_pytorch {
                vs_pytorch::vs_pytorch(&vs_pytorch::Opts {
                    python,
                    models,
                    threads,
                    rounds,
                    steps,
                    sparsity,
                })
            } else {
                bench(filter.as_deref())
            }
        }
        Cmd::Ci => ci(),
        Cmd::Kernels { arch } => kernels::kernels(&arch),
        Cmd::GpuStage => gpu_stage(),
        Cmd::Grid {
            which,
            seeds,
            jobs,
            epochs,
            methods,
            out,
            results,
        } => grid::grid(&grid::GridArgs {
            which,
            seeds,
            workers: jobs,
            epochs,
            methods,
            out: root().join(out),
            results: root().join(results),
        }),
    }
}

/// The release binary with the `cuda` feature.
fn build_cuda_release(root: &Path) -> Result<()> {
    run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "sparse-train",
        "--features",
        "cuda",
    ]))
}

/// `cargo xtask bench --device cuda`: `sparse-train bench-gpu` from the CUDA build.
fn bench_gpu(device: &str, quick: bool, python: Option<&Path>) -> Result<()> {
    let root = root();
    build_cuda_release(&root)?;
    let mut cmd = Command::new(root.join("target/release/sparse-train"));
    cmd.current_dir(&root).args([
        "bench-gpu",
        "--device",
        device,
        "--scripts",
        "benches/pytorch",
    ]);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(p) = python {
        cmd.arg("--python").arg(p);
    }
    run(&mut cmd)
}

/// `cargo xtask gpu-stage`: `gpu-stage/{sparse-train, gpu-check.sh, pytorch/*.py}`.
fn gpu_stage() -> Result<()> {
    let root = root();
    build_cuda_release(&root)?;
    let stage = root.join("gpu-stage");
    std::fs::create_dir_all(&stage)?;
    let bin = stage.join("sparse-train");
    std::fs::copy(root.join("target/release/sparse-train"), &bin)?;
    run(Command::new("strip").arg(&bin))?;
    std::fs::copy(
        root.join("scripts/gpu-check.sh"),
        stage.join("gpu-check.sh"),
    )?;
    let py = stage.join("pytorch");
    std::fs::create_dir_all(&py)?;
    for f in ["step.py", "gpu_ops.py"] {
        std::fs::copy(root.join("benches/pytorch").join(f), py.join(f))?;
    }
    let size = std::fs::metadata(&bin)?.len();
    println!(
        "staged {} ({:.1} MiB) and gpu-check.sh; on the GPU machine: bash gpu-stage/gpu-check.sh",
        bin.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&[
        "clippy",
        "-p",
        "sparse-kernels",
        "--features",
        "cuda",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    kernels::kernels(&["sm_80".into(), "sm_90".into()])?;
    cargo(&["test", "--workspace"])
}

fn bench(filter: Option<&str>) -> Result<()> {
    let mut args = vec!["bench", "-p", "sparse-benches", "--"];
    if let Some(f) = filter {
        args.push(f);
    }
    cargo(&args)?;
    summarize(&root().join("target/criterion"))
}

/// Prints `group/function/param: median` for every estimate criterion wrote.
fn summarize(dir: &Path) -> Result<()> {
    let mut rows = Vec::new();
    collect(dir, dir, &mut rows)?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!("\n{:<70} {:>14}", "benchmark", "median");
    for (name, ns) in rows {
        println!("{name:<70} {:>14}", human(ns));
    }
    Ok(())
}

fn collect(root: &Path, dir: &Path, rows: &mut Vec<(String, f64)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.ends_with("new/estimates.json") {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            let ns = median_ns(&text).with_context(|| format!("{}: no median", p.display()))?;
            let rel = p.parent().and_then(|d| d.parent()).unwrap_or(&p);
            let name = rel.strip_prefix(root).unwrap_or(rel).display().to_string();
            rows.push((name, ns));
        } else if p.is_dir() && !p.ends_with("report") {
            collect(root, &p, rows)?;
        }
    }
    Ok(())
}

/// `median.point_estimate` (nanoseconds) of criterion's `estimates.json`.
fn median_ns(json: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    v["median"]["point_estimate"]
        .as_f64()
        .context("median.point_estimate is not a number")
}

fn human(ns: f64) -> String {
    match ns {
        x if x >= 1e9 => format!("{:.3} s", x / 1e9),
        x if x >= 1e6 => format!("{:.3} ms", x / 1e6),
        x if x >= 1e3 => format!("{:.3} µs", x / 1e3),
        x => format!("{x:.1} ns"),
    }
}
