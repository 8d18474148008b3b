//! Checkpoints (safetensors, written atomically) and the sparse export.
//!
//! Checkpoint tensors: `param/<name>` (f32), `momentum/<name>` (f32), `mask/<name>` (u8,
//! 0/1, weight shape), `bn/<name>/mean|var` (f32), `fired/<i>` (u8), `algo/t/<key>` (f32)
//! and `algo/c/<key>` (u32) for the method's (and AGC's) state. Metadata: `format`,
//! `step`, `epoch`, `best_test_accuracy`, `config` (the TOML) and `algo_scalars` (JSON).
//! All randomness derives from the seed and the step, so these restore a run exactly.
//!
//! Export (`sparse-train export`): every masked weight as CSR — `<name>.row_ptr` (u32,
//! rows+1), `<name>.col_idx` (u32), `<name>.values` (f32), `<name>.shape` (i64, the
//! original shape; rows = shape[0], cols = the product of the rest) — and every other
//! parameter dense as `<name>` (f32), BatchNorm statistics as `<bn>.running_mean` /
//! `<bn>.running_var`. Metadata: `format`, `model`, `input` (C,H,W), `classes`, and the
//! input normalisation `mean` / `std` (JSON lists, per channel, applied to `x/255`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sparse_algos::AlgoState;
use sparse_core::{Csr, Mask};
use sparse_kernels::Tensor;

use crate::config::TrainConfig;
use crate::fs::atomic_write;
use crate::trainer::Trainer;

const FORMAT: &str = "sparse-train-checkpoint-v1";
const EXPORT_FORMAT: &str =
    "sparse-train-export-v1 (CSR weights: <name>.row_ptr/.col_idx/.values/.shape)";

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

// safetensors is little-endian, like every target this crate supports.
#[cfg(not(target_endian = "little"))]
compile_error!("checkpoints are written as little-endian byte casts");

fn f32s(shape: &[usize], v: &[f32]) -> Owned {
    Owned {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: bytemuck::cast_slice(v).to_vec(),
    }
}
/// A device tensor's values (the checkpoint and export boundary: a host copy).
fn tensor(t: &Tensor) -> Result<Owned> {
    Ok(f32s(t.shape(), &t.to_host()?))
}
fn u32s(v: &[u32]) -> Owned {
    Owned {
        dtype: Dtype::U32,
        shape: vec![v.len()],
        bytes: bytemuck::cast_slice(v).to_vec(),
    }
}
/// Little-endian bytes as values (safetensors data may be unaligned, so this copies).
fn from_bytes<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(b)
}
fn mask_u8(m: &Mask) -> Owned {
    Owned {
        dtype: Dtype::U8,
        shape: m.shape().to_vec(),
        bytes: m.to_bools().into_iter().map(u8::from).collect(),
    }
}

fn write(
    path: &Path,
    tensors: BTreeMap<String, Owned>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, o)| {
            Ok((
                k.clone(),
                TensorView::new(o.dtype, o.shape.clone(), &o.bytes)
                    .map_err(|e| anyhow!("{k}: {e:?}"))?,
            ))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, &Some(meta))
        .map_err(|e| anyhow!("serialising {}: {e:?}", path.display()))?;
    atomic_write(path, &bytes)
}

fn algo_state(t: &Trainer) -> Result<AlgoState> {
    let mut s = t.method.state()?;
    if let Some(a) = &t.agc {
        let a = a.state()?;
        s.tensors.extend(a.tensors);
        s.counters.extend(a.counters);
        s.scalars.extend(a.scalars);
    }
    Ok(s)
}

/// Writes a checkpoint of `t` to `path` (temp file + rename).
pub fn save(t: &mut Trainer, path: &Path) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for p in t.model.params() {
        tensors.insert(format!("param/{}", p.name), tensor(&p.value)?);
        tensors.insert(format!("momentum/{}", p.name), tensor(&p.momentum)?);
        if let Some(m) = p.mask() {
            tensors.insert(format!("mask/{}", p.name), mask_u8(m.mask()));
        }
    }
    for (name, m, v) in t.model.running_stats_mut() {
        tensors.insert(format!("bn/{name}/mean"), tensor(m)?);
        tensors.insert(format!("bn/{name}/var"), tensor(v)?);
    }
    for (i, f) in t.coverage.masks().iter().enumerate() {
        tensors.insert(format!("fired/{i}"), mask_u8(&f.reshape(&[f.len()])?));
    }
    let algo = algo_state(t)?;
    for (k, v) in &algo.tensors {
        tensors.insert(format!("algo/t/{k}"), f32s(&[v.len()], v));
    }
    for (k, v) in &algo.counters {
        tensors.insert(format!("algo/c/{k}"), u32s(v));
    }
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".into(), t.step.to_string()),
        ("epoch".into(), t.epoch.to_string()),
        (
            "best_test_accuracy".into(),
            format!("{:e}", t.best_test_accuracy),
        ),
        ("config".into(), t.cfg.to_toml()?),
        ("algo_scalars".into(), serde_json::to_string(&algo.scalars)?),
    ]);
    write(path, tensors, meta)
}

/// A parsed checkpoint file.
pub struct Checkpoint {
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl Checkpoint {
    /// Reads and validates the container and its metadata.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
        let (_, md) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            anyhow!(
                "{}: corrupt or truncated checkpoint ({e:?})",
                path.display()
            )
        })?;
        SafeTensors::deserialize(&bytes).map_err(|e| {
            anyhow!(
                "{}: corrupt or truncated checkpoint ({e:?})",
                path.display()
            )
        })?;
        let meta = md.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            bail!(
                "{}: not a sparse-train checkpoint (format {:?})",
                path.display(),
                meta.get("format")
            );
        }
        Ok(Checkpoint { bytes, meta })
    }

    /// The run configuration stored in the checkpoint.
    pub fn config(&self) -> Result<TrainConfig> {
        toml::from_str(
            self.meta
                .get("config")
                .context("checkpoint has no config")?,
        )
        .context("checkpoint config is invalid")
    }

    fn get<T: std::str::FromStr>(&self, k: &str) -> Result<T> {
        self.meta
            .get(k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("checkpoint metadata `{k}` missing or invalid"))
    }

    /// Restores everything into a trainer built from [`config`](Self::config).
    pub fn restore(&self, t: &mut Trainer) -> Result<()> {
        let st = SafeTensors::deserialize(&self.bytes)
            .map_err(|e| anyhow!("corrupt checkpoint: {e:?}"))?;
        let f32v = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let v = st
                .tensor(name)
                .map_err(|_| anyhow!("checkpoint lacks tensor `{name}`"))?;
            if v.dtype() != Dtype::F32 || v.shape() != shape {
                bail!(
                    "checkpoint tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                    v.dtype(),
                    v.shape()
                );
            }
            Ok(from_bytes(v.data()))
        };
        let mask = |name: &str, shape: &[usize]| -> Result<Mask> {
            let v = st
                .tensor(name)
                .map_err(|_| anyhow!("checkpoint lacks mask `{name}`"))?;
            if v.dtype() != Dtype::U8 || v.shape() != shape {
                bail!("checkpoint mask `{name}` has the wrong type or shape");
            }
            Ok(Mask::from_bools(
                shape,
                &v.data().iter().map(|&b| b != 0).collect::<Vec<_>>(),
            )?)
        };
        let dev = t.device;
        for p in t.model.params_mut() {
            let shape = p.value.shape().to_vec();
            p.value = Tensor::from_vec(&shape, f32v(&format!("param/{}", p.name), &shape)?, dev)?;
            p.momentum =
                Tensor::from_vec(&shape, f32v(&format!("momentum/{}", p.name), &shape)?, dev)?;
            if p.mask().is_some() {
                p.set_mask(mask(&format!("mask/{}", p.name), &shape)?)?;
            }
        }
        for (name, m, v) in t.model.running_stats_mut() {
            let shape = m.shape().to_vec();
            *m = Tensor::from_vec(&shape, f32v(&format!("bn/{name}/mean"), &shape)?, dev)?;
            *v = Tensor::from_vec(&shape, f32v(&format!("bn/{name}/var"), &shape)?, dev)?;
        }
        let fired = t
            .coverage
            .masks()
            .iter()
            .enumerate()
            .map(|(i, f)| mask(&format!("fired/{i}"), &[f.len()]))
            .collect::<Result<Vec<_>>>()?;
        t.coverage.restore(fired)?;
        let mut algo = AlgoState {
            scalars: serde_json::from_str(
                self.meta.get("algo_scalars").context("no algo_scalars")?,
            )?,
            ..Default::default()
        };
        for name in st.names() {
            let v = st.tensor(name).map_err(|e| anyhow!("{e:?}"))?;
            if let Some(k) = name.strip_prefix("algo/t/") {
                algo.tensors.insert(k.to_string(), from_bytes(v.data()));
            } else if let Some(k) = name.strip_prefix("algo/c/") {
                algo.counters.insert(k.to_string(), from_bytes(v.data()));
            }
        }
        t.method.load_state(&algo)?;
        if let Some(a) = &mut t.agc {
            a.load_state(&algo)?;
        }
        t.step = self.get("step")?;
        t.epoch = self.get("epoch")?;
        t.best_test_accuracy = self.get("best_test_accuracy")?;
        Ok(())
    }
}

/// Loads a trainer from a checkpoint; `data_dir` overrides the stored data directory.
pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Trainer> {
    let ck = Checkpoint::read(path)?;
    let mut cfg = ck.config()?;
    if let Some(d) = data_dir {
        cfg.data_dir = Some(d.to_path_buf());
    }
    let mut t = Trainer::new(cfg)?;
    ck.restore(&mut t).with_context(|| {
        format!(
            "{}: checkpoint does not fit its configuration",
            path.display()
        )
    })?;
    Ok(t)
}

/// Writes the sparse export of a trained model (see the module docs for the naming).
pub fn export(t: &mut Trainer, path: &Path) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for p in t.model.params() {
        match p.mask() {
            Some(m) => {
                let csr = Csr::from_dense_masked(&p.value.to_host()?, m.mask())?;
                tensors.insert(format!("{}.row_ptr", p.name), u32s(csr.row_ptr()));
                tensors.insert(format!("{}.col_idx", p.name), u32s(csr.col_idx()));
                tensors.insert(
                    format!("{}.values", p.name),
                    f32s(&[csr.nnz()], csr.values()),
                );
                let shape: Vec<i64> = p.value.shape().iter().map(|&d| d as i64).collect();
                tensors.insert(
                    format!("{}.shape", p.name),
                    Owned {
                        dtype: Dtype::I64,
                        shape: vec![shape.len()],
                        bytes: bytemuck::cast_slice(&shape).to_vec(),
                    },
                );
            }
            None => {
                tensors.insert(p.name.clone(), tensor(&p.value)?);
            }
        }
    }
    for (name, m, v) in t.model.running_stats_mut() {
        tensors.insert(format!("{name}.running_mean"), tensor(m)?);
        tensors.insert(format!("{name}.running_var"), tensor(v)?);
    }
    let (c, h, w) = t.data.train.chw;
    let meta = HashMap::from([
        ("format".to_string(), EXPORT_FORMAT.to_string()),
        ("model".into(), t.cfg.model.clone()),
        ("input".into(), format!("{c},{h},{w}")),
        ("classes".into(), t.data.train.classes.to_string()),
        ("mean".into(), serde_json::to_string(&t.data.mean)?),
        ("std".into(), serde_json::to_string(&t.data.std)?),
    ]);
    write(path, tensors, meta)
}
