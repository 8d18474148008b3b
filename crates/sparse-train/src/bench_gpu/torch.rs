//! The PyTorch baselines of `bench-gpu`: `benches/pytorch/gpu_ops.py` (`torch.mm` in fp32
//! and TF32, `torch.topk`) and `benches/pytorch/step.py --device cuda` (training steps).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{median, Row};

/// A Python that imports torch and sees a GPU, and the scripts folder.
pub(super) struct Torch {
    python: PathBuf,
    scripts: PathBuf,
    about: String,
}

/// What `gpu_ops.py` measured.
pub(super) struct Ops {
    /// `(m, k, n, fp32 ms, tf32 ms)`.
    mm: Vec<(usize, usize, usize, f64, f64)>,
    pub(super) topk_ms: Option<f64>,
}

impl Torch {
    /// The first candidate (the flag, `SPARSE_TORCH_PYTHON`, `$VIRTUAL_ENV/bin/python`,
    /// `python3`) whose torch sees a CUDA device; an error saying what was tried.
    pub(super) fn find(given: Option<&Path>, scripts: &Path) -> Result<Torch> {
        if !scripts.join("gpu_ops.py").is_file() {
            bail!(
                "{} has no gpu_ops.py (pass --scripts DIR: the repository's benches/pytorch)",
                scripts.display()
            );
        }
        let cands: Vec<PathBuf> = given
            .map(Path::to_path_buf)
            .into_iter()
            .chain(std::env::var_os("SPARSE_TORCH_PYTHON").map(PathBuf::from))
            .chain(std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python")))
            .chain([PathBuf::from("python3")])
            .collect();
        let probe = "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
                     print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))";
        let mut tried = Vec::new();
        for c in cands {
            match Command::new(&c).args(["-c", probe]).output() {
                Ok(o) if o.status.success() => {
                    return Ok(Torch {
                        about: String::from_utf8_lossy(&o.stdout).trim().to_string(),
                        python: c,
                        scripts: scripts.to_path_buf(),
                    })
                }
                _ => tried.push(c.display().to_string()),
            }
        }
        bail!(
            "no Python whose PyTorch sees a CUDA device (tried {}); pass --python PATH or set \
             SPARSE_TORCH_PYTHON",
            tried.join(", ")
        )
    }

    pub(super) fn describe(&self) -> String {
        format!("{} ({})", self.about, self.python.display())
    }

    fn json(&self, script: &str, args: &[String]) -> Result<Value> {
        let out = Command::new(&self.python)
            .arg(self.scripts.join(script))
            .args(args)
            .output()
            .with_context(|| format!("running {script}"))?;
        if !out.status.success() {
            bail!(
                "{script} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("{script} printed `{line}`"))
    }

    /// `torch.mm` for every `(m, k, n)` and `torch.topk` of `k` out of `n`.
    pub(super) fn ops(
        &self,
        shapes: &[(usize, usize, usize)],
        topk: (usize, usize),
        reps: usize,
    ) -> Result<Ops> {
        let mut args = Vec::new();
        for (m, k, n) in shapes {
            args.push("--mm".to_string());
            args.push(format!("{m}x{k}x{n}"));
        }
        args.extend([
            "--topk".into(),
            format!("{}:{}", topk.0, topk.1),
            "--reps".into(),
            reps.to_string(),
        ]);
        let v = self.json("gpu_ops.py", &args)?;
        let num = |x: &Value, k: &str| x[k].as_f64().context("gpu_ops.py: missing field");
        let mut mm = Vec::new();
        for r in v["mm"].as_array().into_iter().flatten() {
            mm.push((
                num(r, "m")? as usize,
                num(r, "k")? as usize,
                num(r, "n")? as usize,
                num(r, "fp32_ms")?,
                num(r, "tf32_ms")?,
            ));
        }
        Ok(Ops {
            mm,
            topk_ms: v["topk"]["ms"].as_f64(),
        })
    }

    /// The median PyTorch training step (ms) of `model` at batch 128 on the GPU.
    pub(super) fn step_ms(&self, model: &str, steps: usize) -> Result<f64> {
        let args: Vec<String> = ["--model", model, "--device", "cuda", "--batch", "128"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--steps".into(),
                steps.to_string(),
                "--warmup".into(),
                "5".into(),
            ])
            .collect();
        let v = self.json("step.py", &args)?;
        let mut ms: Vec<f64> = v["step_ms"]
            .as_array()
            .context("step.py: no step_ms")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        Ok(median(&mut ms))
    }
}

/// Our SpMM rows at 90, 95 and 99% against `torch.mm` of the same shape, fp32 and TF32.
pub(super) fn mm_rows(ops: &Ops, ours: &[Row]) -> Vec<Row> {
    let mut out = Vec::new();
    for &(m, k, n, fp32, tf32) in &ops.mm {
        let shape = format!("{m}x{k} · {k}x{n},");
        for r in ours
            .iter()
            .filter(|r| r.group == "SpMM" && r.case.starts_with(&shape))
        {
            if ["90%", "95%", "99%"]
                .iter()
                .any(|p| r.case.ends_with(&format!("{p} sparse")))
            {
                out.push(Row::new("SpMM", &r.case, "torch.mm fp32", fp32, r.ours_ms));
                out.push(Row::new("SpMM", &r.case, "torch.mm TF32", tf32, r.ours_ms));
            }
        }
    }
    out
}
