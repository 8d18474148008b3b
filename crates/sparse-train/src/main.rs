//! `sparse-train`: train, evaluate, export, compare, list and selftest.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sparse_train::config::{Init, LrSchedule, Schedule, TrainConfig};
use sparse_train::data::DataKind;
use sparse_train::run::RunDir;
use sparse_train::trainer::Trainer;

#[derive(Parser)]
#[command(
    name = "sparse-train",
    version,
    about = "Train sparse neural networks from scratch (dynamic sparse training and gradual pruning)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model (with no flags: a small convnet on built-in data, RigL at 90%).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on its test set.
    Eval {
        /// Checkpoint file (`last.safetensors` or `best.safetensors` of a run).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Dataset directory (overrides the one stored in the checkpoint).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Export a checkpoint: sparse weights as CSR tensors plus dense parameters.
    Export {
        /// Checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output `.safetensors` file.
        #[arg(long)]
        out: PathBuf,
        /// Dataset directory (overrides the one stored in the checkpoint).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace an existing --out file (never a training checkpoint).
        #[arg(long)]
        overwrite: bool,
    },
    /// Compare runs: a table (method, sparsity reached, final and best accuracy, img/s,
    /// wall time, mask updates) and plots of test accuracy, loss and per-layer density.
    Compare {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write compare.md and the plots.
        #[arg(long, default_value = "compare")]
        out: PathBuf,
    },
    /// List models, methods and presets with their defaults.
    List,
    /// Time training steps (or inference passes) of one model on synthetic data; prints
    /// JSON (used by `cargo xtask bench --vs-pytorch`).
    BenchStep(sparse_train::bench::BenchStep),
    /// The GPU benchmark table: SpMM, SDDMM, sparse conv and radix select against cuBLAS /
    /// dense / torch, and training steps against PyTorch (used by `cargo xtask bench
    /// --device cuda` and scripts/gpu-check.sh). Says it skipped when no GPU is usable.
    BenchGpu(sparse_train::bench_gpu::Opts),
    /// Check a CUDA device: every op against the CPU backend (max relative error per op),
    /// then short training runs whose per-step losses must match the CPU's.
    Selftest {
        /// The device to check: cuda (GPU 0) or cuda-emulated.
        #[arg(long, default_value = "cuda")]
        device: String,
    },
}

#[derive(Args, Default)]
struct TrainArgs {
    /// TOML configuration (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model (`sparse-train list`).
    #[arg(long)]
    model: Option<String>,
    /// Channel width multiplier.
    #[arg(long)]
    width_mult: Option<f64>,
    /// Dataset.
    #[arg(long, value_enum)]
    data: Option<DataKind>,
    /// Dataset directory (default: $SPARSE_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Method: dense, set, set-orig, rigl, rigl-itop, dst-ee, gmp, granet, optg, fggp.
    #[arg(long)]
    method: Option<String>,
    /// Wrap the method with AGC gradient correction.
    #[arg(long)]
    agc: bool,
    /// Target global sparsity in [0, 1).
    #[arg(long)]
    sparsity: Option<f64>,
    /// Layer distribution: uniform, er or erk (default: the method's).
    #[arg(long)]
    distribution: Option<String>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<u64>,
    /// Total steps (overrides --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// No weight decay on biases and BatchNorm parameters (conv/linear weights only).
    #[arg(long)]
    no_decay_bias_bn: bool,
    /// SGD momentum.
    #[arg(long)]
    momentum: Option<f64>,
    /// Nesterov momentum (true or false).
    #[arg(long)]
    nesterov: Option<bool>,
    /// Weight initialisation: pytorch-default or kaiming-normal.
    #[arg(long, value_enum)]
    init: Option<Init>,
    /// Label smoothing.
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// LR schedule.
    #[arg(long, value_enum)]
    lr_schedule: Option<LrSchedule>,
    /// Linear warm-up epochs.
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Device: cpu, cuda (GPU 0), cuda-emulated (the CUDA kernels run on the host: slow, for checking without a GPU) or auto.
    #[arg(long)]
    device: Option<String>,
    /// Rayon threads.
    #[arg(long)]
    threads: Option<usize>,
    /// After the run, print (and write to DIR/profile.md) the time per step by layer and
    /// phase: forward, input and weight gradients, BN/ReLU/pool, loss, optimizer, mask
    /// update, data, evaluation. Timing only: results are unchanged.
    #[arg(long)]
    profile: bool,
    /// Output directory (config, metrics, summary, plots, checkpoints).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Resume the run in DIR (reads DIR/last.safetensors, keeps writing to DIR). Only
    /// --epochs / --steps (a longer run), --data-dir and --threads may be given with it.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace the run in --out DIR if it holds one (its files are removed once the new
    /// run's setup has succeeded).
    #[arg(long)]
    overwrite: bool,
    /// Use only the first N training examples.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Use only the first N test examples.
    #[arg(long)]
    eval_subset: Option<usize>,
    /// Hold out the last N training examples for validation.
    #[arg(long)]
    val_split: Option<usize>,
    /// Override the method's mask-update interval ΔT (steps).
    #[arg(long)]
    update_interval: Option<u64>,
    /// How ΔT follows the run: `scaled` (the paper's number of updates) or `paper` (the
    /// paper's ΔT in steps).
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
}

macro_rules! apply {
    ($cfg:ident, $a:ident, $($f:ident),*) => { $( if let Some(v) = $a.$f.clone() { $cfg.$f = v.into(); } )* };
}

fn resolve(a: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::from_file(p)?,
        None => TrainConfig::default(),
    };
    apply!(
        cfg,
        a,
        model,
        width_mult,
        data,
        method,
        sparsity,
        epochs,
        batch_size,
        lr,
        weight_decay,
        label_smoothing,
        lr_schedule,
        warmup_epochs,
        seed,
        device,
        val_split,
        schedule,
        momentum,
        nesterov,
        init
    );
    if a.no_decay_bias_bn {
        cfg.decay_bias_bn = false;
    }
    if a.data_dir.is_some() {
        cfg.data_dir = a.data_dir.clone();
    }
    for (dst, src) in [
        (&mut cfg.steps, a.steps),
        (&mut cfg.update_interval, a.update_interval),
    ] {
        if src.is_some() {
            *dst = src;
        }
    }
    for (dst, src) in [
        (&mut cfg.threads, a.threads),
        (&mut cfg.train_subset, a.train_subset),
        (&mut cfg.eval_subset, a.eval_subset),
    ] {
        if src.is_some() {
            *dst = src;
        }
    }
    if a.distribution.is_some() {
        cfg.distribution = a.distribution.clone();
    }
    if a.agc {
        cfg.agc = true;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The flags given with `--resume` that cannot change a run (its `config.toml` fixes them).
fn fixed_on_resume(a: &TrainArgs, dir: &std::path::Path) -> Vec<&'static str> {
    let given = [
        ("--config", a.config.is_some()),
        ("--model", a.model.is_some()),
        ("--width-mult", a.width_mult.is_some()),
        ("--data", a.data.is_some()),
        ("--method", a.method.is_some()),
        ("--agc", a.agc),
        ("--sparsity", a.sparsity.is_some()),
        ("--distribution", a.distribution.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--lr", a.lr.is_some()),
        ("--weight-decay", a.weight_decay.is_some()),
        ("--label-smoothing", a.label_smoothing.is_some()),
        ("--lr-schedule", a.lr_schedule.is_some()),
        ("--warmup-epochs", a.warmup_epochs.is_some()),
        ("--seed", a.seed.is_some()),
        ("--device", a.device.is_some()),
        ("--train-subset", a.train_subset.is_some()),
        ("--eval-subset", a.eval_subset.is_some()),
        ("--val-split", a.val_split.is_some()),
        ("--update-interval", a.update_interval.is_some()),
        ("--schedule", a.schedule.is_some()),
        ("--momentum", a.momentum.is_some()),
        ("--nesterov", a.nesterov.is_some()),
        ("--init", a.init.is_some()),
        ("--no-decay-bias-bn", a.no_decay_bias_bn),
        ("--overwrite", a.overwrite),
        ("--out", a.out.as_deref().is_some_and(|o| o != dir)),
    ];
    given.into_iter().filter(|g| g.1).map(|g| g.0).collect()
}

fn train(a: TrainArgs) -> Result<()> {
    let (mut trainer, out) = if let Some(dir) = &a.resume {
        let fixed = fixed_on_resume(&a, dir);
        if !fixed.is_empty() {
            anyhow::bail!(
                "{} cannot change when resuming: {}/config.toml fixes the run (only --epochs, \
                 --steps, --data-dir and --threads may be given with --resume; start a new run with --out)",
                fixed.join(", "),
                dir.display()
            );
        }
        if a.epochs.is_some() && a.steps.is_some() {
            anyhow::bail!("give --epochs or --steps with --resume, not both");
        }
        let opts = sparse_train::run::ResumeOptions {
            data_dir: a.data_dir.clone(),
            threads: a.threads,
            epochs: a.epochs,
            steps: a.steps,
        };
        let (run, t) = RunDir::resume(dir, &opts)?;
        eprintln!(
            "resuming {} at step {} (epoch {})",
            dir.display(),
            t.step,
            t.epoch
        );
        (t, Some(run))
    } else {
        let cfg = resolve(&a)?;
        if a.overwrite && a.out.is_none() {
            anyhow::bail!("--overwrite needs --out DIR");
        }
        // Lock and check the directory before the (possibly long) setup; its old files are
        // only removed once the setup has succeeded.
        let mut run = a
            .out
            .as_deref()
            .map(|dir| RunDir::create(dir, a.overwrite))
            .transpose()?;
        Trainer::init_threads(cfg.threads);
        let t = Trainer::new(cfg)?;
        if let Some(r) = &mut run {
            r.start(&t.cfg)?;
        }
        (t, run)
    };
    let target = if trainer.props.masked {
        format!("sparsity {}", trainer.cfg.sparsity)
    } else {
        "all weights active".to_string()
    };
    eprintln!(
        "{} on {:?} ({:?}) | {} | {target} | {} steps ({} per epoch) | {} threads",
        trainer.cfg.model,
        trainer.cfg.data,
        trainer.device,
        trainer.cfg.method,
        trainer.total_steps(),
        trainer.steps_per_epoch(),
        rayon::current_num_threads()
    );
    sparse_kernels::profile::set_enabled(a.profile);
    let (first_step, start) = (trainer.step, std::time::Instant::now());
    let s = sparse_train::run::train(&mut trainer, out.as_ref())?;
    if a.profile {
        let rows = sparse_kernels::profile::take();
        let steps = trainer.step - first_step;
        let t = sparse_train::profile::table(&rows, steps, start.elapsed().as_secs_f64());
        eprintln!("\n{t}");
        if let Some(r) = &out {
            sparse_train::fs::atomic_write(&r.dir().join("profile.md"), t.as_bytes())?;
        }
    }
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}

#[global_allocator]
static ALLOC: sparse_train::alloc::HugePageAlloc = sparse_train::alloc::HugePageAlloc;

fn main() {
    // Like other Unix tools, end quietly when stdout's reader goes away (`list | head`)
    // rather than panicking on the failed print.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = sparse_train::alloc::keep_freed_memory() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    let result = match cli.cmd.unwrap_or_else(|| Cmd::Train(Box::default())) {
        Cmd::Train(a) => train(*a),
        Cmd::Eval {
            checkpoint,
            data_dir,
        } => (|| {
            let mut t = sparse_train::checkpoint::load(&checkpoint, data_dir.as_deref())?;
            let (loss, acc) = t.evaluate_test()?;
            println!(
                "{}",
                serde_json::json!({ "test_loss": loss, "test_accuracy": acc, "step": t.step, "global_sparsity": 1.0 - t.global_density() })
            );
            Ok(())
        })(),
        Cmd::Export {
            checkpoint,
            out,
            data_dir,
            overwrite,
        } => (|| {
            sparse_train::checkpoint::check_export_target(&checkpoint, &out, overwrite)?;
            let mut t = sparse_train::checkpoint::load(&checkpoint, data_dir.as_deref())?;
            sparse_train::checkpoint::export(&mut t, &out)?;
            eprintln!("exported {} to {}", checkpoint.display(), out.display());
            Ok(())
        })(),
        Cmd::Compare { runs, out } => (|| {
            let t = sparse_train::compare::compare(&runs, &out)?;
            print!("{t}");
            eprintln!(
                "wrote {0}/compare.md, {0}/compare_curves.svg, {0}/compare_density.svg",
                out.display()
            );
            Ok(())
        })(),
        Cmd::BenchStep(b) => (|| {
            let r = sparse_train::bench::run(&b)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        })(),
        Cmd::BenchGpu(o) => sparse_train::bench_gpu::run(&o),
        Cmd::Selftest { device } => sparse_train::selftest::run(&device),
        Cmd::List => {
            println!("models:");
            for (n, d) in sparse_train::model::MODELS {
                println!("  {n:<10} {d}");
            }
            println!("methods / presets:");
            for (n, d) in sparse_train::algos::PRESETS {
                println!("  {n:<15} {d}");
                if let Some(p) = sparse_train::algos::paper_interval(n) {
                    let at = |t| sparse_train::algos::scaled_interval(p, t);
                    println!(
                        "  {:<15} ΔT: paper {} (of a {}-step run; --schedule paper); scaled (default) {} at 2,000 steps, {} at 10,000, {} at 100,000",
                        "", p.interval, p.horizon, at(2_000), at(10_000), at(100_000)
                    );
                }
            }
            let c = TrainConfig::default();
            println!("defaults: model {} x{}, data {:?}, method {} at {}, {} epochs, batch {}, lr {} ({:?}), wd {}, seed {}", c.model, c.width_mult, c.data, c.method, c.sparsity, c.epochs, c.batch_size, c.lr, c.lr_schedule, c.weight_decay, c.seed);
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
