//! Checkpoints (safetensors, written atomically, checksummed, checked on load) and the
//! sparse export.
//!
//! Checkpoint tensors: `param/<name>` (f32), `momentum/<name>` (f32), `mask/<name>` (u8,
//! 0/1, weight shape), `bn/<name>/mean|var` (f32), `fired/<i>` (u8), `algo/t/<key>` (f32)
//! and `algo/c/<key>` (u32) for the method's (and AGC's) state. Metadata: `format`,
//! `step`, `epoch`, `best_test_accuracy`, `config` (the TOML), `algo_scalars` (JSON),
//! `metrics` (the last epoch's `metrics.jsonl` record, JSON) and `checksum` (CRC-32 of every
//! tensor's name, dtype, shape and data, in name order). All randomness derives from the
//! seed and the step, so these restore a run exactly. Loading checks everything before any
//! of it is used ([`restore`](Checkpoint::restore)).
//!
//! Export (`sparse-train export`, [`export`]): every masked weight as CSR, every other
//! parameter dense.

mod export;
mod restore;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use sparse_algos::AlgoState;
use sparse_core::Mask;
use sparse_kernels::Tensor;

pub use export::{check_target as check_export_target, export};
pub use restore::Checkpoint;

use crate::fs::atomic_write;
use crate::trainer::Trainer;

/// The format this version writes.
pub const FORMAT: &str = "sparse-train-checkpoint-v2";
/// The previous format (no checksum, no metrics record), still read.
pub const FORMAT_V1: &str = "sparse-train-checkpoint-v1";

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
fn mask_u8(m: &Mask) -> Owned {
    Owned {
        dtype: Dtype::U8,
        shape: m.shape().to_vec(),
        bytes: m.to_bools().into_iter().map(u8::from).collect(),
    }
}

/// The checksum of a checkpoint's tensors, given in name order.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    let mut h = crc32fast::Hasher::new();
    for (name, dtype, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(format!("{dtype:?}").as_bytes());
        for &d in shape {
            h.update(&(d as u64).to_le_bytes());
        }
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    format!("crc32:{:08x}", h.finalize())
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

/// Writes a checkpoint of `t` to `path` (unique temporary file, synced, renamed).
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
    let sum = checksum(
        tensors
            .iter()
            .map(|(k, o)| (k.as_str(), o.dtype, o.shape.as_slice(), o.bytes.as_slice())),
    );
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".into(), t.step.to_string()),
        ("epoch".into(), t.epoch.to_string()),
        (
            "best_test_accuracy".into(),
            format!("{:e}", t.best_test_accuracy),
        ),
        ("config".into(), t.cfg.to_toml()?),
        ("algo_scalars".into(), serde_json::to_string(&algo.scalars)?),
        ("checksum".into(), sum),
    ]);
    if let Some(m) = &t.last_epoch {
        meta.insert("metrics".into(), serde_json::to_string(m)?);
    }
    write(path, tensors, meta)
}

/// Loads a trainer from a checkpoint; `data_dir` overrides the stored data directory.
pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Trainer> {
    let ck = Checkpoint::read(path)?;
    let mut cfg = ck.config().clone();
    if let Some(d) = data_dir {
        cfg.data_dir = Some(d.to_path_buf());
    }
    ck.into_trainer(cfg)
        .with_context(|| format!("{}: cannot restore the checkpoint", path.display()))
}
