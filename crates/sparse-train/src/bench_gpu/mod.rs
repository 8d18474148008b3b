//! `sparse-train bench-gpu` (run by `cargo xtask bench --device cuda`, and by
//! `scripts/gpu-check.sh` on a machine without Rust): one table of same-run ratios on a GPU.
//!
//! * SpMM against our cuBLAS SGEMM (and `torch.mm` in fp32 and TF32) at 70-99% sparsity,
//!   for a 4096x4096 weight times 4096x256 activations and the ResNet-50 1x1 shapes;
//! * SDDMM against the dense weight gradient;
//! * sparse convolution forward + backward against our dense convolution;
//! * the radix select of 25M scores against `torch.topk`;
//! * training steps of ResNet-18 and ResNet-20 at batch 128, dense and RigL 90% ERK, against
//!   the same models in PyTorch on the same GPU (`benches/pytorch/step.py`).
//!
//! Kernels are timed with CUDA events after warm-up, candidates interleaved, medians
//! reported. Without a usable GPU it prints that it skipped and succeeds, so that the
//! command works on every machine; without PyTorch it skips the PyTorch rows with a message.

mod kernels;
mod torch;

use std::path::PathBuf;

use anyhow::Result;
use sparse_kernels::{Device, DeviceRequest};

use crate::bench::{run as run_steps, BenchStep};

/// Options of `bench-gpu` (also its flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Device: cuda, or cuda-emulated with --smoke to check the harness.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// The short form (about 5 minutes on an H100/H200): fewer shapes, batch 32 for the 1x1
    /// shapes, fewer repetitions.
    #[arg(long)]
    pub quick: bool,
    /// Python with PyTorch for the baselines (else SPARSE_TORCH_PYTHON, then python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The PyTorch scripts (the repository's benches/pytorch).
    #[arg(long, default_value = "benches/pytorch")]
    pub scripts: PathBuf,
    /// Smallest sizes, kernels only (a check of the harness itself).
    #[arg(long)]
    pub smoke: bool,
}

/// One compared pair.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    group: String,
    case: String,
    baseline: String,
    base_ms: f64,
    ours_ms: f64,
    note: Option<String>,
}

impl Row {
    pub(crate) fn new(group: &str, case: &str, baseline: &str, base_ms: f64, ours_ms: f64) -> Self {
        Row {
            group: group.into(),
            case: case.into(),
            baseline: baseline.into(),
            base_ms,
            ours_ms,
            note: None,
        }
    }

    pub(crate) fn note(mut self, n: String) -> Self {
        self.note = Some(n);
        self
    }

    fn speedup(&self) -> f64 {
        self.base_ms / self.ours_ms
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const SPARSITIES: [f64; 6] = [0.7, 0.8, 0.9, 0.95, 0.98, 0.99];

/// The 1x1 convolutions of ResNet-50 as `(out, in, positions per image)`.
const RESNET50_1X1: [(usize, usize, usize); 4] = [
    (256, 64, 56 * 56),
    (512, 128, 28 * 28),
    (1024, 256, 14 * 14),
    (2048, 512, 7 * 7),
];

/// The 3x3 convolutions of CIFAR ResNet-18 as `(channels, spatial size)`.
const RESNET18_3X3: [(usize, usize); 4] = [(64, 32), (128, 16), (256, 8), (512, 4)];

/// Runs the benchmark and prints the tables.
pub fn run(o: &Opts) -> Result<()> {
    let req: DeviceRequest = o.device.parse()?;
    let dev = match req.resolve() {
        Ok((d, _)) if d.is_cuda() => d,
        Ok(_) => {
            println!(
                "CUDA benchmarks skipped: no CUDA device (asked for `{}`)",
                o.device
            );
            return Ok(());
        }
        Err(e) => {
            println!("CUDA benchmarks skipped: {e}");
            return Ok(());
        }
    };
    println!("device: {}", dev.describe());
    if dev == Device::CudaEmulated {
        println!("(emulated: this checks the harness; its timings say nothing about a GPU)");
    }
    let py = torch::Torch::find(o.python.as_deref(), &o.scripts);
    match &py {
        Ok(t) => println!("baselines: {}", t.describe()),
        Err(e) => println!("PyTorch comparison skipped: {e}"),
    }
    let reps = if o.smoke {
        2
    } else if o.quick {
        10
    } else {
        30
    };
    let batch_1x1 = if o.quick || o.smoke { 32 } else { 128 };
    let mut shapes = vec![(4096, 4096, 256)];
    if o.smoke {
        shapes = vec![(64, 48, 40)];
    } else {
        for (i, &(m, k, p)) in RESNET50_1X1.iter().enumerate() {
            if !o.quick || i % 2 == 0 {
                shapes.push((m, k, batch_1x1 * p));
            }
        }
    }
    let mut rows = Vec::new();
    for &s in &shapes {
        kernels::spmm_sddmm(dev, s, &SPARSITIES, reps, &mut rows)?;
    }
    let convs: Vec<(usize, usize, usize, usize)> = if o.smoke {
        vec![(2, 8, 6, 8)]
    } else {
        RESNET18_3X3
            .iter()
            .map(|&(c, hw)| (128, c, hw, c))
            .collect()
    };
    for &c in &convs {
        kernels::conv(dev, c, 0.9, reps, &mut rows)?;
    }
    let (n_sel, k_sel) = if o.smoke {
        (10_000, 1_000)
    } else {
        (25_000_000, 2_500_000)
    };
    let ours_select = kernels::select(dev, n_sel, k_sel, reps)?;
    let mut steps = Vec::new();
    if !o.smoke {
        for model in ["resnet18", "resnet20"] {
            steps.push(step_row(dev, model, o.quick)?);
        }
    }
    let mut torch_rows = Vec::new();
    if let Ok(t) = &py {
        match t.ops(&shapes, (n_sel, k_sel), reps) {
            Ok(ops) => {
                torch_rows = torch::mm_rows(&ops, &rows);
                if let Some(ms) = ops.topk_ms {
                    rows.push(Row::new(
                        "select",
                        &format!("top {k_sel} of {n_sel} scores"),
                        "torch.topk",
                        ms,
                        ours_select,
                    ));
                }
            }
            Err(e) => println!("PyTorch kernel baselines failed: {e:#}"),
        }
        for s in &mut steps {
            match t.step_ms(&s.model, if o.quick { 10 } else { 30 }) {
                Ok(ms) => s.torch_ms = Some(ms),
                Err(e) => println!("PyTorch {} step failed: {e:#}", s.model),
            }
        }
    }
    if !rows.iter().any(|r| r.group == "select") {
        println!("radix select: top {k_sel} of {n_sel} scores in {ours_select:.3} ms");
    }
    rows.extend(torch_rows);
    print_kernels(&rows);
    print_steps(&steps);
    print_goals(&rows, &steps);
    Ok(())
}

/// One model's training step on the GPU.
struct StepRow {
    model: String,
    dense_ms: f64,
    rigl_ms: f64,
    torch_ms: Option<f64>,
}

/// Dense and RigL 90% ERK steps at batch 128; RigL amortised over ΔT = 100 from its
/// ordinary and mask-update steps (timed with an update every 5 steps).
fn step_row(dev: Device, model: &str, quick: bool) -> Result<StepRow> {
    let steps = if quick { 10 } else { 30 };
    let b = |method: &str| BenchStep {
        model: model.into(),
        method: method.into(),
        sparsity: 0.9,
        batch: 128,
        threads: 1,
        steps,
        warmup: 3,
        update_interval: 5,
        infer: false,
        device: dev.kind().into(),
    };
    let mut dense = run_steps(&b("dense"))?.step_ms;
    let r = run_steps(&b("rigl"))?;
    let (mut ord, mut upd): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for (ms, u) in r.step_ms.iter().zip(&r.update) {
        if *u {
            upd.push(*ms)
        } else {
            ord.push(*ms)
        }
    }
    let (o, u) = (median(&mut ord), median(&mut upd));
    let rigl = if u.is_nan() {
        o
    } else {
        (99.0 * o + u) / 100.0
    };
    Ok(StepRow {
        model: model.into(),
        dense_ms: median(&mut dense),
        rigl_ms: rigl,
        torch_ms: None,
    })
}

fn print_kernels(rows: &[Row]) {
    println!("\n| op | case | baseline | baseline ms | ours ms | speed-up | note |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2}x | {} |",
            r.group,
            r.case,
            r.baseline,
            r.base_ms,
            r.ours_ms,
            r.speedup(),
            r.note.as_deref().unwrap_or("")
        );
    }
}

fn ips(ms: f64) -> f64 {
    128.0 * 1e3 / ms
}

fn print_steps(steps: &[StepRow]) {
    if steps.is_empty() {
        return;
    }
    println!("\n| model (batch 128) | PyTorch dense img/s | ours dense img/s | ours RigL 90% ERK img/s (amortised, ΔT 100) | RigL / PyTorch | RigL / our dense |");
    println!("|---|---|---|---|---|---|");
    for s in steps {
        let t = s
            .torch_ms
            .map_or("skipped".into(), |m| format!("{:.0}", ips(m)));
        let rt = s
            .torch_ms
            .map_or("-".into(), |m| format!("{:.2}x", m / s.rigl_ms));
        println!(
            "| {} | {t} | {:.0} | {:.0} | {rt} | {:.2}x |",
            s.model,
            ips(s.dense_ms),
            ips(s.rigl_ms),
            s.dense_ms / s.rigl_ms
        );
    }
}

fn print_goals(rows: &[Row], steps: &[StepRow]) {
    let find = |group: &str, case: &str| {
        rows.iter()
            .find(|r| r.group == group && r.case.contains(case) && r.baseline.starts_with("our"))
            .map(Row::speedup)
    };
    let mut goals: Vec<(String, Option<f64>, f64)> = vec![
        (
            "SpMM at 90% vs cuBLAS SGEMM (4096²)".into(),
            find("SpMM", "4096x4096 · 4096x256, 90%"),
            2.0,
        ),
        (
            "SpMM at 95% vs cuBLAS SGEMM (4096²)".into(),
            find("SpMM", "4096x4096 · 4096x256, 95%"),
            4.0,
        ),
        (
            "SDDMM at 90% vs dense weight gradient (4096²)".into(),
            find("SDDMM", "4096x4096 · 4096x256, 90%"),
            2.0,
        ),
        (
            "radix select vs torch.topk".into(),
            rows.iter().find(|r| r.group == "select").map(Row::speedup),
            2.0,
        ),
    ];
    if let Some(s) = steps.iter().find(|s| s.model == "resnet18") {
        goals.push((
            "ResNet-18 RigL 90% vs PyTorch dense".into(),
            s.torch_ms.map(|m| m / s.rigl_ms),
            1.0,
        ));
        goals.push((
            "ResNet-18 RigL 90% vs our dense".into(),
            Some(s.dense_ms / s.rigl_ms),
            1.5,
        ));
    }
    println!("\n| goal | target | measured | met |");
    println!("|---|---|---|---|");
    for (name, got, target) in goals {
        let (m, ok) = match got {
            Some(v) => (format!("{v:.2}x"), if v >= target { "yes" } else { "no" }),
            None => ("not measured".into(), "-"),
        };
        println!("| {name} | ≥ {target:.1}x | {m} | {ok} |");
    }
}
