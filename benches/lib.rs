//! Shared inputs for the criterion benchmarks: deterministic data generators.

use rand_core::RngCore;
use sparse_core::{random_mask, stream_rng, Mask};

/// `n` scores drawn uniformly from `[-1, 1)` with a fixed seed (24-bit resolution, so
/// a realistic amount of ties).
pub fn scores(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = stream_rng(seed, 0);
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
        .collect()
}

/// A random mask of `shape` with `density` of its entries set (exact count).
pub fn mask(shape: &[usize], density: f64, seed: u64) -> Mask {
    let n: usize = shape.iter().product();
    let k = (n as f64 * density).round() as usize;
    random_mask(shape, k, &mut stream_rng(seed, 1)).expect("k <= n")
}
