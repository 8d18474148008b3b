//! Readers of the original binary formats, with validation.
//!
//! Every reader takes a byte stream (the fuzz targets in `fuzz/` call these same functions)
//! and never reads past the size its format implies: an IDX reader stops at the size its
//! header gives, a CIFAR reader at the largest real file, so neither a lying header nor a
//! gzip bomb can make it allocate more. Sizes are multiplied with overflow checks, and every
//! error says what is wrong; the path is added by the caller.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::bufread::MultiGzDecoder;

use super::Dataset;

/// The most bytes one IDX file may hold (4 GiB; MNIST's training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 32;
/// The most records one CIFAR file may hold (CIFAR-100's `train.bin` has 50,000).
pub const MAX_CIFAR_RECORDS: u64 = 60_000;

const IDX_IMAGES: u32 = 0x0803;
const IDX_LABELS: u32 = 0x0801;

/// The content of a stream, gunzipped when it starts with the gzip magic bytes.
pub fn decoded<'a, R: BufRead + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>> {
    let gz = r
        .fill_buf()
        .context("cannot read")?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Opens a data file for reading, gunzipping `.gz` content (detected by magic bytes).
fn open(path: &Path) -> Result<Box<dyn Read>> {
    if path.is_dir() {
        bail!("{}: is a directory, not a data file", path.display());
    }
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    decoded(BufReader::new(f)).with_context(|| path.display().to_string())
}

/// Reads at most `limit` bytes; `Ok(None)` when the stream holds more.
fn read_at_most(r: &mut dyn Read, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .context("corrupt or truncated data (or gzip stream)")?;
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// Reads a whole file (gunzipped), refusing more than `limit` bytes.
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut r = open(path)?;
    read_at_most(&mut r, limit)
        .with_context(|| path.display().to_string())?
        .with_context(|| format!("{}: holds more than {limit} bytes", path.display()))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An IDX file's dimensions and payload: `magic` 0x0803 (images: count, rows, cols) or
/// 0x0801 (labels: count).
fn read_idx(r: &mut dyn Read, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let (kind, ndims) = match magic {
        IDX_IMAGES => ("image", 3),
        _ => ("label", 1),
    };
    let mut header = vec![0u8; 4 + 4 * ndims];
    let not_idx = || format!("not an IDX {kind} file (expected magic 0x{magic:08x})");
    r.read_exact(&mut header).with_context(not_idx)?;
    if be_u32(&header) != magic {
        bail!(not_idx());
    }
    let dims: Vec<usize> = header[4..].chunks(4).map(|c| be_u32(c) as usize).collect();
    if dims[1..].contains(&0) {
        bail!(
            "header gives an image size of {}x{}: rows and columns must be >= 1",
            dims[1],
            dims[2]
        );
    }
    let what = match ndims {
        3 => format!("{} images of {}x{}", dims[0], dims[1], dims[2]),
        _ => format!("{} labels", dims[0]),
    };
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&p| p <= MAX_IDX_BYTES)
        .with_context(|| format!("header says {what}: more than {MAX_IDX_BYTES} bytes"))?;
    let expected = payload + header.len() as u64;
    let data = read_at_most(r, payload)?.with_context(|| {
        format!("header says {what} ({expected} bytes) but the file has more bytes")
    })?;
    if data.len() as u64 != payload {
        bail!(
            "header says {what} ({expected} bytes) but the file has {} bytes (truncated?)",
            data.len() + header.len()
        );
    }
    Ok((dims, data))
}

/// An IDX image stream and its label stream as a 10-class dataset; `names` name the two
/// streams in errors (the files' paths, or anything for the fuzz targets).
pub fn parse_idx(
    images: &mut dyn Read,
    labels: &mut dyn Read,
    names: (&str, &str),
) -> Result<Dataset> {
    let (dims, pixels) = read_idx(images, IDX_IMAGES).with_context(|| names.0.to_string())?;
    let (ldims, lb) = read_idx(labels, IDX_LABELS).with_context(|| names.1.to_string())?;
    if ldims[0] != dims[0] {
        bail!(
            "{} has {} images but {} has {} labels",
            names.0,
            dims[0],
            names.1,
            ldims[0]
        );
    }
    if let Some((i, &l)) = lb.iter().enumerate().find(|(_, &l)| l >= 10) {
        bail!("{}: label {l} at index {i} is outside 0..10", names.1);
    }
    Ok(Dataset {
        images: pixels,
        labels: lb,
        chw: (1, dims[1], dims[2]),
        classes: 10,
    })
}

/// An IDX image file (magic 0x00000803) and its label file (magic 0x00000801).
pub fn idx_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    parse_idx(
        &mut open(images)?,
        &mut open(labels)?,
        (&images.display().to_string(), &labels.display().to_string()),
    )
}

/// A CIFAR binary stream: records of `label_bytes` label bytes (CIFAR-100: coarse, fine;
/// the last one is used) and 3072 pixel bytes.
pub fn parse_cifar(r: &mut dyn Read, label_bytes: usize, classes: usize) -> Result<Dataset> {
    let rec = label_bytes + 3072;
    let name = if classes == 100 {
        "CIFAR-100"
    } else {
        "CIFAR-10"
    };
    let bytes = read_at_most(r, MAX_CIFAR_RECORDS * rec as u64)?
        .with_context(|| format!("more than {MAX_CIFAR_RECORDS} records: not a {name} file"))?;
    if bytes.is_empty() || bytes.len() % rec != 0 {
        bail!(
            "{} bytes is not a whole number of {rec}-byte CIFAR records (truncated or not a {name} file)",
            bytes.len(),
        );
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks(rec).enumerate() {
        let label = r[label_bytes - 1];
        if label as usize >= classes {
            bail!("record {i} has label {label}, outside 0..{classes}");
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

/// A CIFAR binary file (see [`parse_cifar`]).
pub fn cifar(path: &Path, label_bytes: usize, classes: usize) -> Result<Dataset> {
    parse_cifar(&mut open(path)?, label_bytes, classes).with_context(|| path.display().to_string())
}
