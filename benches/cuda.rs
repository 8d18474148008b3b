//! CUDA benchmarks under criterion: SpMM against cuBLAS SGEMM (4096x4096 weight, 4096x256
//! activations) at 90% and 95% sparsity, and the radix select of 25M scores, timed with
//! CUDA events (`iter_custom`). Build with `--features cuda`; on a machine without a usable
//! GPU each group prints that it is skipped. The full GPU table with PyTorch baselines is
//! `cargo xtask bench --device cuda`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sparse_benches::{mask, scores};
use sparse_kernels::backend::gpu::time_ms;
use sparse_kernels::ops::gemm::gemm;
use sparse_kernels::ops::mask_update::select_words;
use sparse_kernels::ops::sparse::sparse_weight_mm_into;
use sparse_kernels::sparse_core::Order;
use sparse_kernels::{Device, DeviceMask, SparseWeight, Tensor};

fn gpu() -> Option<Device> {
    match Device::cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("CUDA benchmarks skipped: {e}");
            None
        }
    }
}

fn tensor(shape: &[usize], seed: u64, dev: Device) -> Tensor {
    Tensor::from_vec(shape, scores(shape.iter().product(), seed), dev).unwrap()
}

/// Criterion's time for `iters` runs of `f`, from CUDA events.
fn events(dev: Device, iters: u64, mut f: impl FnMut() -> sparse_kernels::Result<()>) -> Duration {
    let ms: f64 = (0..iters).map(|_| time_ms(dev, &mut f).unwrap()).sum();
    Duration::from_secs_f64(ms / 1e3)
}

fn spmm_vs_cublas(c: &mut Criterion) {
    let Some(dev) = gpu() else { return };
    let (m, k, n) = (4096, 4096, 256);
    let w = tensor(&[m, k], 1, dev);
    let x = tensor(&[k, n], 2, dev);
    let mut y = Tensor::zeros(&[m, n], dev).unwrap();
    let mut g = c.benchmark_group("cuda_spmm_4096");
    g.bench_function("cublas_sgemm", |b| {
        b.iter_custom(|i| events(dev, i, || gemm(1.0, &w, false, &x, false, 0.0, &mut y)))
    });
    for s in [0.9, 0.95] {
        let mk = DeviceMask::new(mask(&[m, k], 1.0 - s, 3), dev).unwrap();
        let sw = SparseWeight::new(&w, &mk).unwrap();
        g.bench_with_input(BenchmarkId::new("spmm", s), &s, |b, _| {
            b.iter_custom(|i| {
                events(dev, i, || {
                    sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut y)
                })
            })
        });
    }
    g.finish();
}

fn radix_select(c: &mut Criterion) {
    let Some(dev) = gpu() else { return };
    let s = tensor(&[25_000_000], 4, dev);
    let mut g = c.benchmark_group("cuda_select");
    g.sample_size(20);
    g.bench_function("top_2.5M_of_25M", |b| {
        b.iter_custom(|i| {
            events(dev, i, || {
                select_words(&s, 2_500_000, Order::Largest).map(drop)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, spmm_vs_cublas, radix_select);
criterion_main!(benches);
