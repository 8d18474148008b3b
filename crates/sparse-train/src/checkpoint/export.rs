//! The sparse export (`sparse-train export`): every masked weight as CSR — `<name>.row_ptr`
//! (u32, rows+1), `<name>.col_idx` (u32), `<name>.values` (f32), `<name>.shape` (i64, the
//! original shape; rows = shape[0], cols = the product of the rest) — and every other
//! parameter dense as `<name>` (f32), BatchNorm statistics as `<bn>.running_mean` /
//! `<bn>.running_var`. Metadata: `format`, `model`, `input` (C,H,W), `classes`, and the
//! input normalisation `mean` / `std` (JSON lists, per channel, applied to `x/255`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Result};
use safetensors::tensor::Dtype;
use sparse_core::Csr;

use super::{f32s, tensor, u32s, write, Owned, FORMAT, FORMAT_V1};
use crate::trainer::Trainer;

const EXPORT_FORMAT: &str =
    "sparse-train-export-v1 (CSR weights: <name>.row_ptr/.col_idx/.values/.shape)";

/// Refuses an export target that would destroy something: a directory, the checkpoint
/// being exported, a training checkpoint, or any existing file unless `overwrite`.
pub fn check_target(checkpoint: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--out {} is a directory; give the export's file name (e.g. {}/model.safetensors)",
            out.display(),
            out.display()
        );
    }
    if !out.exists() {
        return Ok(());
    }
    let same = std::fs::canonicalize(out)? == std::fs::canonicalize(checkpoint)?;
    if same {
        bail!(
            "--out {} is the checkpoint being exported; choose another file",
            out.display()
        );
    }
    let format = super::Checkpoint::format_of(out);
    if matches!(format.as_deref(), Some(FORMAT) | Some(FORMAT_V1)) {
        bail!(
            "--out {} is a training checkpoint; exporting over it would destroy it (choose another file)",
            out.display()
        );
    }
    if !overwrite {
        bail!(
            "--out {} exists; pass --overwrite to replace it",
            out.display()
        );
    }
    Ok(())
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
