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

/// Measures the machine's f32 FMA peak in GFLOP/s (2 flops per FMA lane) over all rayon
/// threads: each thread runs 12 independent FMA chains (enough to cover the FMA latency ×
/// throughput product of current x86 cores) for `iters` iterations, 16 lanes wide where the
/// CPU has AVX-512 (full width on Zen 5, two 256-bit halves on Zen 4), else 8.
pub fn measure_peak_gflops(iters: u64) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let t = std::time::Instant::now();
    let sink: f32 = (0..threads)
        .into_par_iter()
        .map(|i| fma_chains(iters, i as f32))
        .sum();
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    let lanes = if has_avx512() {
        16.0
    } else if has_avx2_fma() {
        8.0
    } else {
        4.0
    };
    threads as f64 * iters as f64 * 12.0 * lanes * 2.0 / secs / 1e9
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma() && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn fma_chains(iters: u64, seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: avx512f was detected above.
        return unsafe { fma_chains_avx512(iters, seed) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: avx2 and fma were detected above.
        return unsafe { fma_chains_avx2(iters, seed) };
    }
    let mut acc = [seed; 48];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * 0.999_999 + 1e-7;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(0.999_999);
    let c = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(seed); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(seed); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}
