//! Readers of the original binary formats, with validation.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Dataset;

/// Reads a file, transparently gunzipping `.gz` (detected by magic bytes).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// A CIFAR binary file: records of `label_bytes` label bytes (CIFAR-100: coarse, fine; the
/// last one is used) and 3072 pixel bytes.
pub fn cifar(path: &Path, label_bytes: usize, classes: usize) -> Result<Dataset> {
    let bytes = read_maybe_gz(path)?;
    let rec = label_bytes + 3072;
    if bytes.is_empty() || bytes.len() % rec != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {rec}-byte CIFAR records (truncated or not a CIFAR{} file)",
            path.display(),
            bytes.len(),
            if classes == 100 { "-100" } else { "-10" }
        );
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks(rec).enumerate() {
        let label = r[label_bytes - 1];
        if label as usize >= classes {
            bail!(
                "{}: record {i} has label {label}, outside 0..{classes}",
                path.display()
            );
        }
        labels.push(label);
        images.extend_from_slice(&r[label_bytes..]);
    }
    Ok(Dataset {
        images,
        labels,
        chw: (3, 32, 32),
        classes,
    })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// An IDX image file (magic 0x00000803) and its label file (magic 0x00000801).
pub fn idx_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let ib = read_maybe_gz(images)?;
    let lb = read_maybe_gz(labels)?;
    if ib.len() < 16 || be_u32(&ib, 0) != 0x0803 {
        bail!(
            "{}: not an IDX image file (expected magic 0x00000803)",
            images.display()
        );
    }
    if lb.len() < 8 || be_u32(&lb, 0) != 0x0801 {
        bail!(
            "{}: not an IDX label file (expected magic 0x00000801)",
            labels.display()
        );
    }
    let (n, h, w) = (
        be_u32(&ib, 4) as usize,
        be_u32(&ib, 8) as usize,
        be_u32(&ib, 12) as usize,
    );
    if ib.len() != 16 + n * h * w {
        bail!(
            "{}: header says {n} images of {h}x{w} ({} bytes) but the file has {} bytes",
            images.display(),
            16 + n * h * w,
            ib.len()
        );
    }
    let ln = be_u32(&lb, 4) as usize;
    if lb.len() != 8 + ln {
        bail!(
            "{}: header says {ln} labels but the file has {} bytes",
            labels.display(),
            lb.len()
        );
    }
    if ln != n {
        bail!(
            "{} has {n} images but {} has {ln} labels",
            images.display(),
            labels.display()
        );
    }
    if let Some((i, &l)) = lb[8..].iter().enumerate().find(|(_, &l)| l >= 10) {
        bail!(
            "{}: label {l} at index {i} is outside 0..10",
            labels.display()
        );
    }
    Ok(Dataset {
        images: ib[16..].to_vec(),
        labels: lb[8..].to_vec(),
        chw: (1, h, w),
        classes: 10,
    })
}
