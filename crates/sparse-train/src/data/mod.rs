//! Datasets: CIFAR-10/100 binary batches, MNIST / Fashion-MNIST IDX (plain or gzip), and a
//! built-in procedural dataset; plus the batch loader with augmentation.
//!
//! Every file is validated (size, record count, magic numbers, label range) and a bad
//! file is reported with its path and what is wrong.

pub mod files;
pub mod loader;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

pub use loader::{Batch, Loader};

/// Which dataset.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum DataKind {
    /// Built-in procedural 10-class 32x32x3 images (no files needed).
    Synthetic,
    /// MNIST (IDX).
    Mnist,
    /// Fashion-MNIST (IDX).
    FashionMnist,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// CIFAR-100 binary (train.bin / test.bin).
    Cifar100,
}

/// An image-classification split held as raw bytes (`N x C x H x W`) plus labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Pixels, `u8`, NCHW.
    pub images: Vec<u8>,
    /// Labels.
    pub labels: Vec<u8>,
    /// Channels, height, width.
    pub chw: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.chw.0 * self.chw.1 * self.chw.2
    }
    /// The first `n` examples.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
    }
    /// Splits off the last `n` examples (validation split).
    pub fn split_off(&mut self, n: usize) -> Dataset {
        let keep = self.len() - n.min(self.len());
        let images = self.images.split_off(keep * self.image_len());
        let labels = self.labels.split_off(keep);
        Dataset {
            images,
            labels,
            chw: self.chw,
            classes: self.classes,
        }
    }
}

/// Train and test splits plus normalisation statistics.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training split (shared by the loaders, never copied).
    pub train: Arc<Dataset>,
    /// Test split (shared by the loaders, never copied).
    pub test: Arc<Dataset>,
    /// Per-channel mean of `x/255`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of `x/255`.
    pub std: Vec<f32>,
    /// Whether crop + flip augmentation applies (CIFAR-style data).
    pub augment: bool,
}

/// The environment variable that points tests and CI at the real datasets.
pub const DATA_DIR_ENV: &str = "SPARSE_DATA_DIR";

/// The directory holding `kind`'s files: `<dir>/<cifar10|cifar100|mnist|fashion-mnist>`
/// when that exists, else `dir` itself.
fn subdir(dir: &Path, kind: DataKind) -> PathBuf {
    let name = match kind {
        DataKind::Cifar10 => "cifar10",
        DataKind::Cifar100 => "cifar100",
        DataKind::Mnist => "mnist",
        DataKind::FashionMnist => "fashion-mnist",
        DataKind::Synthetic => "",
    };
    let sub = dir.join(name);
    if sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Finds `name` or `name.gz` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for cand in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if cand.is_dir() {
            bail!("{}: is a directory, not a data file", cand.display());
        }
        if cand.exists() {
            return Ok(cand);
        }
    }
    bail!(
        "{}: neither {name} nor {name}.gz exists (see the README for where to get the data)",
        dir.display()
    )
}

/// Loads a dataset (`data_dir` is required for every kind but `Synthetic`).
pub fn load(kind: DataKind, data_dir: Option<&Path>, seed: u64) -> Result<Data> {
    let (train, test, augment) = match kind {
        DataKind::Synthetic => {
            let (tr, te) = synthetic::generate(seed);
            (tr, te, true)
        }
        _ => {
            let dir = data_dir.with_context(|| {
                format!("--data {kind:?} needs --data-dir DIR (or the {DATA_DIR_ENV} environment variable)")
            })?;
            let dir = subdir(dir, kind);
            match kind {
                DataKind::Cifar10 => {
                    let mut train = files::cifar(&find(&dir, "data_batch_1.bin")?, 1, 10)?;
                    for i in 2..=5 {
                        let b = files::cifar(&find(&dir, &format!("data_batch_{i}.bin"))?, 1, 10)?;
                        train.images.extend(b.images);
                        train.labels.extend(b.labels);
                    }
                    (
                        train,
                        files::cifar(&find(&dir, "test_batch.bin")?, 1, 10)?,
                        true,
                    )
                }
                DataKind::Cifar100 => (
                    files::cifar(&find(&dir, "train.bin")?, 2, 100)?,
                    files::cifar(&find(&dir, "test.bin")?, 2, 100)?,
                    true,
                ),
                _ => (
                    files::idx_pair(
                        &find(&dir, "train-images-idx3-ubyte")?,
                        &find(&dir, "train-labels-idx1-ubyte")?,
                    )?,
                    files::idx_pair(
                        &find(&dir, "t10k-images-idx3-ubyte")?,
                        &find(&dir, "t10k-labels-idx1-ubyte")?,
                    )?,
                    false,
                ),
            }
        }
    };
    check_splits(&train, &test)?;
    let (mean, std) = channel_stats(&train);
    Ok(Data {
        train: Arc::new(train),
        test: Arc::new(test),
        mean,
        std,
        augment,
    })
}

/// The splits must be non-empty and agree on image shape and classes, so a mismatch is
/// reported before training rather than at the first evaluation.
fn check_splits(train: &Dataset, test: &Dataset) -> Result<()> {
    if train.is_empty() || test.is_empty() {
        bail!(
            "the dataset has {} training and {} test examples; both splits must be non-empty",
            train.len(),
            test.len()
        );
    }
    if train.chw != test.chw {
        bail!(
            "training images are {:?} (C, H, W) but test images are {:?}",
            train.chw,
            test.chw
        );
    }
    Ok(())
}

/// Per-channel mean and standard deviation of `x/255` over a split.
///
/// The sums of `p` and `p²` are exact integers (per plane in `u32`, which vectorises, then
/// in `u64`), so the only roundings are the final divisions.
pub fn channel_stats(d: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let (c, h, w) = d.chw;
    let plane = h * w;
    let mut sum = vec![0u64; c];
    let mut sq = vec![0u64; c];
    // A plane's sum of squares stays below 2^32 up to 66,051 pixels (256x256).
    let chunk = (u32::MAX / (255 * 255)) as usize;
    for img in d.images.chunks(c * plane) {
        for ch in 0..c {
            for part in img[ch * plane..(ch + 1) * plane].chunks(chunk) {
                let (s1, s2) = part.iter().fold((0u32, 0u32), |(a, b), &p| {
                    let p = p as u32;
                    (a + p, b + p * p)
                });
                sum[ch] += s1 as u64;
                sq[ch] += s2 as u64;
            }
        }
    }
    let n = (d.len() * plane).max(1) as f64;
    let m: Vec<f64> = sum.iter().map(|&s| s as f64 / 255.0 / n).collect();
    let s: Vec<f32> = sq
        .iter()
        .zip(&m)
        .map(|(&q, m)| ((q as f64 / (255.0 * 255.0) / n - m * m).max(1e-12)).sqrt() as f32)
        .collect();
    (m.iter().map(|&v| v as f32).collect(), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_stats_match_a_hand_example_and_a_naive_f64_loop() {
        // Two 1x2 images with 2 channels: channel 0 holds 0, 255, 255, 255 (mean 0.75,
        // std sqrt(0.75 - 0.5625) = 0.4330127), channel 1 is constant 51 (0.2, std 0).
        let d = Dataset {
            images: vec![0, 255, 51, 51, 255, 255, 51, 51],
            labels: vec![0, 1],
            chw: (2, 1, 2),
            classes: 2,
        };
        let (m, s) = channel_stats(&d);
        assert_eq!(m, vec![0.75, 0.2]);
        assert!((s[0] - 0.433_012_7).abs() < 1e-7, "{}", s[0]);
        assert!(s[1] < 1e-5, "{}", s[1]);

        // A larger pseudo-random split against per-pixel f64 sums.
        let mut x = 12345u32;
        let (c, h, w, n) = (3, 17, 13, 40);
        let images: Vec<u8> = (0..c * h * w * n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let d = Dataset {
            images,
            labels: vec![0; n],
            chw: (c, h, w),
            classes: 1,
        };
        let (m, s) = channel_stats(&d);
        for ch in 0..c {
            let vals: Vec<f64> = d
                .images
                .chunks(c * h * w)
                .flat_map(|img| img[ch * h * w..(ch + 1) * h * w].iter())
                .map(|&p| p as f64 / 255.0)
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!((m[ch] as f64 - mean).abs() < 1e-6, "mean {ch}");
            assert!((s[ch] as f64 - var.sqrt()).abs() < 1e-6, "std {ch}");
        }
    }
}
