//! `cargo xtask grid mnist|fashion-mnist|all`: every method on LeNet-300-100 under one
//! protocol (below), at 90/95/98% sparsity and several seeds, then `docs/results.md` with
//! mean ± sd tables and `sparse-train compare` plots. Finished runs (with `summary.json`)
//! are kept, so an interrupted grid continues where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The methods of the results page, with `--agc` where the name says so.
pub const METHODS: &[&str] = &[
    "dense",
    "static",
    "set",
    "rigl",
    "rigl-itop",
    "dst-ee",
    "gmp",
    "granet",
    "fggp",
    "optg",
    "rigl+agc",
];
/// The sparsities.
pub const SPARSITIES: &[f64] = &[0.9, 0.95, 0.98];

/// The protocol, as flags (and as the results page states it).
pub const PROTOCOL: &[&str] = &[
    "--model",
    "mlp",
    "--batch-size",
    "128",
    "--lr",
    "0.1",
    "--lr-schedule",
    "cosine",
    "--momentum",
    "0.9",
    "--nesterov",
    "true",
    "--weight-decay",
    "5e-4",
    "--init",
    "pytorch-default",
    "--threads",
    "1",
];

/// One run of the grid.
#[derive(Debug, Clone)]
struct Job {
    data: String,
    method: String,
    sparsity: f64,
    seed: u64,
}

impl Job {
    fn dir(&self, out: &Path) -> PathBuf {
        let sp = if self.method == "dense" {
            "dense".to_string()
        } else {
            format!("s{:.0}", self.sparsity * 100.0)
        };
        out.join(&self.data)
            .join(format!("{}-{sp}-seed{}", self.method, self.seed))
    }

    fn args(&self, out: &Path, data_dir: &Path, epochs: u64) -> Vec<String> {
        let mut a: Vec<String> = ["train", "--data", &self.data, "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(data_dir.display().to_string());
        a.extend(PROTOCOL.iter().map(|s| s.to_string()));
        a.extend(["--epochs".into(), epochs.to_string()]);
        let (method, agc) = match self.method.strip_suffix("+agc") {
            Some(m) => (m, true),
            None => (self.method.as_str(), false),
        };
        a.extend([
            "--method".into(),
            method.into(),
            "--seed".into(),
            self.seed.to_string(),
        ]);
        if agc {
            a.push("--agc".into());
        }
        if method != "dense" {
            a.extend([
                "--sparsity".into(),
                self.sparsity.to_string(),
                "--distribution".into(),
                "erk".into(),
            ]);
        }
        a.extend([
            "--out".into(),
            self.dir(out).display().to_string(),
            "--overwrite".into(),
        ]);
        a
    }
}

/// What a finished run reports (from its `summary.json`).
#[derive(Debug, Clone, Copy)]
struct Outcome {
    accuracy: f64,
    best: f64,
    sparsity: f64,
    wall: f64,
}

fn outcome(dir: &Path) -> Option<Outcome> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(Outcome {
        accuracy: v["test_accuracy"].as_f64()?,
        best: v["best_test_accuracy"].as_f64()?,
        sparsity: v["global_sparsity"].as_f64()?,
        wall: v["wall_seconds"].as_f64()?,
    })
}

fn jobs(datasets: &[&str], methods: &[String], seeds: u64) -> Vec<Job> {
    // Seed-major, so a grid stopped early has whole seeds.
    let mut v = Vec::new();
    for seed in 0..seeds {
        for d in datasets {
            for m in methods {
                for &s in SPARSITIES {
                    if m == "dense" && s != SPARSITIES[0] {
                        continue;
                    }
                    v.push(Job {
                        data: d.to_string(),
                        method: m.to_string(),
                        sparsity: s,
                        seed,
                    });
                }
            }
        }
    }
    v
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// What to run.
pub struct GridArgs {
    /// `mnist`, `fashion-mnist` or `all`.
    pub which: String,
    /// Seeds per setting.
    pub seeds: u64,
    /// Runs at a time.
    pub workers: usize,
    /// Epochs (the protocol's 10 unless testing the grid itself).
    pub epochs: u64,
    /// Methods (all of [`METHODS`] when empty).
    pub methods: Vec<String>,
    /// Run directories.
    pub out: PathBuf,
    /// The results page.
    pub results: PathBuf,
}

/// Runs the grid and writes the results page.
pub fn grid(g: &GridArgs) -> Result<()> {
    let (which, seeds, workers, out) = (g.which.as_str(), g.seeds, g.workers, g.out.as_path());
    let methods: Vec<String> = if g.methods.is_empty() {
        METHODS.iter().map(|m| m.to_string()).collect()
    } else {
        g.methods.clone()
    };
    if let Some(m) = methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
        bail!("unknown grid method `{m}` (known: {})", METHODS.join(", "));
    }
    let datasets: Vec<&str> = match which {
        "mnist" => vec!["mnist"],
        "fashion-mnist" => vec!["fashion-mnist"],
        "all" => vec!["mnist", "fashion-mnist"],
        other => bail!("unknown grid `{other}` (mnist, fashion-mnist or all)"),
    };
    let data_dir = std::env::var_os("SPARSE_DATA_DIR")
        .map(PathBuf::from)
        .context("set SPARSE_DATA_DIR to the folder holding mnist/ and fashion-mnist/")?;
    super::cargo(&["build", "--release", "-p", "sparse-train"])?;
    let bin = super::root().join("target/release/sparse-train");
    let all = jobs(&datasets, &methods, seeds);
    let epochs = g.epochs;
    let todo: Vec<Job> = all
        .iter()
        .filter(|j| outcome(&j.dir(out)).is_none())
        .cloned()
        .collect();
    eprintln!(
        "grid: {} runs, {} to do, {workers} at a time",
        all.len(),
        todo.len()
    );
    let start = Instant::now();
    // Workers pop from the back: reversed, the grid runs seed-major from seed 0, so a grid
    // stopped early has whole seeds (and seed 0's plots).
    let queue = Arc::new(Mutex::new(todo.into_iter().rev().collect::<Vec<_>>()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            let (queue, failures, bin, out, data_dir) =
                (queue.clone(), failures.clone(), &bin, out, &data_dir);
            s.spawn(move || loop {
                let Some(job) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                let res = Command::new(bin)
                    .args(job.args(out, data_dir, epochs))
                    .output();
                match res {
                    Ok(o) if o.status.success() => eprintln!(
                        "  {} ({:.0} s)",
                        job.dir(out).display(),
                        t.elapsed().as_secs_f64()
                    ),
                    Ok(o) => failures.lock().unwrap().push(format!(
                        "{}: {}",
                        job.dir(out).display(),
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .find(|l| l.starts_with("error"))
                            .unwrap_or("")
                    )),
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {e}", job.dir(out).display())),
                }
            });
        }
    });
    let failures = failures.lock().unwrap().clone();
    for f in &failures {
        eprintln!("failed: {f}");
    }
    let elapsed = start.elapsed().as_secs_f64();
    write_results(g, &bin, &all, &datasets, &methods, elapsed)?;
    if !failures.is_empty() {
        bail!("{} runs failed", failures.len());
    }
    Ok(())
}

type Cells = BTreeMap<(String, String, u64), Vec<Outcome>>;

/// A Markdown table: one row per method, one column per sparsity, `cell` of each outcome set.
fn table(
    cells: &Cells,
    d: &str,
    methods: &[String],
    cell: impl Fn(&[Outcome]) -> String,
) -> String {
    let mut md = String::from("| method |");
    for s in SPARSITIES {
        md += &format!(" {:.0}% |", s * 100.0);
    }
    md += "\n|---|";
    md += &"---|".repeat(SPARSITIES.len());
    md += "\n";
    for m in methods {
        md += &format!("| {m} |");
        for s in SPARSITIES {
            // Dense runs once per seed; its row repeats in every column.
            let sp = if m == "dense" {
                90
            } else {
                (s * 100.0).round() as u64
            };
            match cells.get(&(d.to_string(), m.to_string(), sp)) {
                Some(v) => md += &format!(" {} |", cell(v)),
                None => md += " — |",
            }
        }
        md += "\n";
    }
    md
}

fn write_results(
    g: &GridArgs,
    bin: &Path,
    all: &[Job],
    datasets: &[&str],
    methods: &[String],
    elapsed: f64,
) -> Result<()> {
    let (out, results, workers) = (g.out.as_path(), g.results.as_path(), g.workers);
    let mut cells: Cells = BTreeMap::new();
    for j in all {
        if let Some(o) = outcome(&j.dir(out)) {
            let key = (
                j.data.clone(),
                j.method.clone(),
                (j.sparsity * 100.0).round() as u64,
            );
            cells.entry(key).or_default().push(o);
        }
    }
    let run_seconds: f64 = cells.values().flatten().map(|o| o.wall).sum();
    let mut md = String::from(include_str!("results_header.md"));
    md +=
        &format!(
        "\nThis page: `cargo xtask grid {}`: {} runs, {:.0} min of run time in all (the sum of \
         the runs' wall times, one thread each), so about {:.0} min of wall time at {workers} \
         runs at a time on a 2-core machine (this invocation: {:.0} min; finished runs are \
         reused).\n",
        if datasets.len() == 2 { "all" } else { datasets[0] },
        cells.values().map(Vec::len).sum::<usize>(),
        run_seconds / 60.0,
        run_seconds / 60.0 / workers.max(1) as f64,
        elapsed / 60.0
    );
    let plots = results.parent().unwrap_or(Path::new(".")).join("results");
    for d in datasets {
        md += &format!("\n## {d}\n\nFinal test accuracy (%), mean ± sd over seeds (n); dense is one row repeated.\n\n");
        md += &table(&cells, d, methods, |v| {
            let acc: Vec<f64> = v.iter().map(|o| 100.0 * o.accuracy).collect();
            let (mu, sd) = mean_sd(&acc);
            format!("{mu:.2} ± {sd:.2} ({})", v.len())
        });
        md += "\nBest epoch's test accuracy (%, mean over seeds; optimistic, for reference):\n\n";
        md += &table(&cells, d, methods, |v| {
            format!(
                "{:.2}",
                v.iter().map(|o| 100.0 * o.best).sum::<f64>() / v.len() as f64
            )
        });
        md += "\nGlobal sparsity reached (mean over seeds):\n\n";
        md += &table(&cells, d, methods, |v| {
            format!(
                "{:.4}",
                v.iter().map(|o| o.sparsity).sum::<f64>() / v.len() as f64
            )
        });
        // Compare plots of seed 0 at each sparsity.
        for s in SPARSITIES {
            let runs: Vec<String> = all
                .iter()
                .filter(|j| {
                    j.data == *d && j.seed == 0 && (j.method == "dense" || j.sparsity == *s)
                })
                .map(|j| j.dir(out))
                .filter(|p| outcome(p).is_some())
                .map(|p| p.display().to_string())
                .collect();
            if runs.is_empty() {
                continue;
            }
            let name = format!("{d}-{:.0}", s * 100.0);
            let dest = plots.join(&name);
            let status = Command::new(bin)
                .arg("compare")
                .args(&runs)
                .args(["--out", &dest.display().to_string()])
                .output()
                .context("running sparse-train compare")?;
            if !status.status.success() {
                bail!(
                    "compare failed: {}",
                    String::from_utf8_lossy(&status.stderr)
                );
            }
            md += &format!(
                "\n### {d}, {:.0}% (seed 0)\n\n![test accuracy and loss](results/{name}/compare_curves.svg)\n\n![density per layer](results/{name}/compare_density.svg)\n",
                s * 100.0
            );
        }
    }
    std::fs::write(results, md).with_context(|| format!("{}: cannot write", results.display()))?;
    eprintln!("wrote {}", results.display());
    Ok(())
}
