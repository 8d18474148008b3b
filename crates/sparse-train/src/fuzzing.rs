//! The entry points of the fuzz targets in `fuzz/` (one per reader of untrusted bytes),
//! shared with `tests/fuzz_corpus.rs`, which replays every saved input on every test run.
//! Each must return (an error is fine) for any input: a panic, a hang or an unbounded
//! allocation is a bug.

use std::io::Read;
use std::sync::{Mutex, OnceLock};

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::data::files::{decoded, parse_cifar, parse_idx};
use crate::trainer::Trainer;

/// IDX images and labels: the first byte says where the input splits into the two files
/// (each may be gzipped).
pub fn idx(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let at = rest.len() * cut as usize / 255;
    let (images, labels) = rest.split_at(at);
    if let (Ok(mut i), Ok(mut l)) = (decoded(images), decoded(labels)) {
        let _ = parse_idx(&mut i, &mut l, ("images", "labels"));
    }
}

/// A CIFAR-10 (first byte even) or CIFAR-100 (odd) binary file, possibly gzipped.
pub fn cifar(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (label_bytes, classes) = if kind % 2 == 0 { (1, 10) } else { (2, 100) };
    if let Ok(mut r) = decoded(rest) {
        let _ = parse_cifar(&mut r, label_bytes, classes);
    }
}

/// A gzip stream, inflated as an IDX image file with a fixed label file.
pub fn gzip(data: &[u8]) {
    let mut images: Box<dyn Read> = Box::new(flate2::bufread::MultiGzDecoder::new(data));
    let labels = [0u8, 0, 8, 1, 0, 0, 0, 1, 3];
    let _ = parse_idx(&mut images, &mut &labels[..], ("images.gz", "labels"));
}

/// The run the checkpoint target restores into (and its seed checkpoints come from).
pub fn checkpoint_config() -> TrainConfig {
    TrainConfig {
        width_mult: 0.125,
        method: "dst-ee".into(),
        epochs: 1,
        batch_size: 16,
        train_subset: Some(16),
        eval_subset: Some(16),
        threads: Some(1),
        // The seed checkpoints were made with this threshold; the default depends on the
        // CPU (`ExecPolicy::cpu_default`), and a checkpoint only restores into its own run.
        conv_sparse_below: 0.32,
        ..TrainConfig::default()
    }
}

/// A valid checkpoint of [`checkpoint_config`] after one step, for the seed corpus.
pub fn seed_checkpoint(path: &std::path::Path) -> anyhow::Result<()> {
    let mut t = Trainer::new(checkpoint_config())?;
    t.run_epoch()?;
    checkpoint::save(&mut t, path)
}

/// A checkpoint file: parsed, checked and restored into a trainer of
/// [`checkpoint_config`] (v1 seeds carry no checksum, so mutations reach the content
/// checks).
pub fn checkpoint(data: &[u8]) {
    static TRAINER: OnceLock<Mutex<Trainer>> = OnceLock::new();
    let Ok(ck) = Checkpoint::from_bytes(data.to_vec()) else {
        return;
    };
    let t = TRAINER.get_or_init(|| {
        Mutex::new(Trainer::new(checkpoint_config()).expect("the fuzz run builds"))
    });
    let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
    let _ = ck.restore(&mut t);
}
