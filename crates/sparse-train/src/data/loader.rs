//! Mini-batches: seeded shuffling, normalisation, CIFAR augmentation (random crop with
//! 4-pixel zero padding and horizontal flip), prepared on a background thread.
//!
//! Every random choice derives from `(seed, epoch, batch index)`, so a run resumed at any
//! step sees exactly the batches of an uninterrupted run.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use anyhow::Result;
use rand_core::RngCore;
use sparse_core::stream_rng;
use sparse_kernels::{IndexTensor, Tensor};

use super::{Data, Dataset};

/// A prepared batch, as host tensors the trainer takes over and moves to its device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised pixels `[B, C, H, W]`.
    pub x: Tensor,
    /// Labels `[B]`.
    pub y: IndexTensor,
    /// Batch size.
    pub n: usize,
}

/// Batch production for one split.
#[derive(Clone)]
pub struct Loader {
    data: Arc<Dataset>,
    mean: Vec<f32>,
    std: Vec<f32>,
    augment: bool,
    batch: usize,
    seed: u64,
}

impl Loader {
    /// A training loader (shuffled, augmented when the data are CIFAR-style).
    pub fn train(d: &Data, batch: usize, seed: u64) -> Loader {
        Loader {
            data: d.train.clone(),
            mean: d.mean.clone(),
            std: d.std.clone(),
            augment: d.augment,
            batch,
            seed,
        }
    }

    /// An evaluation loader over `split` (in order, no augmentation).
    pub fn eval(d: &Data, split: Arc<Dataset>, batch: usize) -> Loader {
        Loader {
            data: split,
            mean: d.mean.clone(),
            std: d.std.clone(),
            augment: false,
            batch,
            seed: 0,
        }
    }

    /// Full batches per epoch for training (the last partial batch is dropped).
    pub fn train_batches(&self) -> usize {
        self.data.len() / self.batch
    }

    /// Batches to cover the split in evaluation (last one partial).
    pub fn eval_batches(&self) -> usize {
        self.data.len().div_ceil(self.batch)
    }

    /// The epoch's permutation (Fisher–Yates on the `(seed, epoch)` stream).
    fn permutation(&self, epoch: u64) -> Vec<u32> {
        let n = self.data.len();
        let mut p: Vec<u32> = (0..n as u32).collect();
        let mut rng = stream_rng(self.seed, 1_000_000 + epoch);
        for i in (1..n).rev() {
            let j = sparse_core::rng::uniform_below(&mut rng, (i + 1) as u64) as usize;
            p.swap(i, j);
        }
        p
    }

    fn make(&self, idx: &[u32], epoch: u64, b: usize) -> Result<Batch> {
        let d = &self.data;
        let (c, h, w) = d.chw;
        let mut x = vec![0f32; idx.len() * c * h * w];
        let mut rng = stream_rng(self.seed ^ 0xA06, (epoch << 32) | b as u64);
        // Normalised value of every byte, per channel: `(p / 255 - mean) / std`, the zero
        // padding being byte 0.
        let luts: Vec<[f32; 256]> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| std::array::from_fn(|p| (p as f32 / 255.0 - m) / s))
            .collect();
        touch_images(&d.images, c * h * w, idx);
        for (k, &i) in idx.iter().enumerate() {
            let img = &d.images[i as usize * c * h * w..][..c * h * w];
            let out = &mut x[k * c * h * w..][..c * h * w];
            let (oy, ox, flip) = if self.augment {
                (
                    (rng.next_u32() % 9) as isize - 4,
                    (rng.next_u32() % 9) as isize - 4,
                    rng.next_u32() & 1 == 1,
                )
            } else {
                (0, 0, false)
            };
            for ch in 0..c {
                let lut = &luts[ch];
                let src = &img[ch * h * w..][..h * w];
                for (yy, row) in out[ch * h * w..][..h * w]
                    .chunks_exact_mut(w.max(1))
                    .enumerate()
                {
                    let sy = yy as isize + oy;
                    if sy < 0 || sy >= h as isize {
                        row.fill(lut[0]);
                        continue;
                    }
                    let srow = &src[sy as usize * w..][..w];
                    if (ox, flip) == (0, false) {
                        row.iter_mut()
                            .zip(srow)
                            .for_each(|(o, &p)| *o = lut[p as usize]);
                        continue;
                    }
                    for (xx, o) in row.iter_mut().enumerate() {
                        let sx = if flip { w - 1 - xx } else { xx } as isize + ox;
                        *o = if sx >= 0 && sx < w as isize {
                            lut[srow[sx as usize] as usize]
                        } else {
                            lut[0]
                        };
                    }
                }
            }
        }
        let y = idx.iter().map(|&i| d.labels[i as usize] as u32).collect();
        Ok(Batch {
            x: Tensor::cpu(&[idx.len(), c, h, w], x)?,
            y: IndexTensor::cpu(&[idx.len()], y)?,
            n: idx.len(),
        })
    }

    /// Training batches `from..` of `epoch`, produced on a background thread.
    pub fn epoch(&self, epoch: u64, from: usize) -> Receiver<Result<Batch>> {
        let (tx, rx) = sync_channel(2);
        let me = self.clone();
        std::thread::spawn(move || {
            let perm = me.permutation(epoch);
            for b in from..me.train_batches() {
                let batch = me.make(&perm[b * me.batch..(b + 1) * me.batch], epoch, b);
                let stop = batch.is_err();
                if tx.send(batch).is_err() || stop {
                    return;
                }
            }
        });
        rx
    }

    /// Evaluation batch `b` (in order).
    pub fn eval_batch(&self, b: usize) -> Result<Batch> {
        let n = self.data.len();
        let idx: Vec<u32> = (b * self.batch..((b + 1) * self.batch).min(n))
            .map(|i| i as u32)
            .collect();
        self.make(&idx, 0, b)
    }
}

/// Reads one byte of every cache line of the batch's images. They lie scattered over the
/// dataset (a shuffled epoch of MNIST is 47 MB), so converting them one by one stalls on
/// each image's first miss; these independent loads let the misses overlap. A profile
/// of MNIST training put 63% of the conversion's time on that first load.
fn touch_images(images: &[u8], len: usize, idx: &[u32]) {
    let mut acc = 0u8;
    for &i in idx {
        let img = &images[i as usize * len..][..len];
        acc ^= img.iter().step_by(64).fold(0, |a, &p| a ^ p);
    }
    std::hint::black_box(acc);
}
