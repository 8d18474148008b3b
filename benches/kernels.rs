//! sparse-kernels benchmarks: SGEMM vs the machine's FMA peak, SpMM vs dense at several
//! sparsities, conv2d (forward + backward-to-input + weight gradient) sparse vs dense, BatchNorm, and a
//! ResNet-50-sized mask update. Ratios are computed from medians of the same run.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use sparse_benches::{mask, measure_peak_gflops, scores};
use sparse_core::{drop_and_grow, Mask};
use sparse_kernels::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use sparse_kernels::ops::gemm::gemm;
use sparse_kernels::ops::linear::{linear_backward, linear_forward};
use sparse_kernels::ops::norm::{batch_norm_backward, batch_norm_train, BatchNormParams};
use sparse_kernels::ops::sparse::{sparse_weight_mm_into, spmm_into};
use sparse_kernels::{DeviceMask, SparseWeight, Tensor, WeightGrad, WeightRef};
use std::hint::black_box;
use std::time::Duration;

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::cpu(shape, scores(shape.iter().product(), seed)).unwrap()
}

fn masked(w: &Tensor, m: &Mask) -> Tensor {
    let mut v = w.to_host().unwrap();
    m.apply(&mut v).unwrap();
    Tensor::cpu(w.shape(), v).unwrap()
}

fn peak(c: &mut Criterion) {
    let gflops = measure_peak_gflops(20_000_000);
    println!(
        "measured FMA peak: {gflops:.1} GFLOP/s over {} threads",
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("peak");
    g.sample_size(10);
    // 200k iterations × 12 chains × 8 lanes × 2 flops per thread.
    g.throughput(Throughput::Elements(
        200_000 * 12 * 8 * 2 * rayon::current_num_threads() as u64,
    ));
    g.bench_function("fma_loop", |b| b.iter(|| measure_peak_gflops(200_000)));
    g.finish();
}

fn sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("sgemm");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, m, k, n) in [
        ("1024", 1024, 1024, 1024),
        ("4096", 4096, 4096, 4096),
        ("conv_256x2304x8192", 256, 2304, 8192),
    ] {
        let a = tensor(&[m, k], 1);
        let b = tensor(&[k, n], 2);
        let mut out = Tensor::zeros(&[m, n], sparse_kernels::Device::Cpu).unwrap();
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(name, |bch| {
            bch.iter(|| gemm(1.0, &a, false, &b, false, 0.0, &mut out).unwrap())
        });
    }
    g.finish();
}

fn spmm_vs_dense(c: &mut Criterion) {
    let (m, k, n) = (4096, 4096, 256);
    let w = tensor(&[m, k], 3);
    let x = tensor(&[k, n], 4);
    let mut g = c.benchmark_group("spmm_4096x4096x256");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut out = Tensor::zeros(&[m, n], sparse_kernels::Device::Cpu).unwrap();
    g.bench_function("dense_sgemm", |b| {
        b.iter(|| gemm(1.0, &w, false, &x, false, 0.0, &mut out).unwrap())
    });
    for s in [70u32, 80, 90, 95, 98, 99] {
        let mk = DeviceMask::cpu(mask(&[m, k], 1.0 - s as f64 / 100.0, s as u64));
        let sw = SparseWeight::new(&w, &mk).unwrap();
        g.bench_with_input(BenchmarkId::new("csr", s), &sw, |b, sw| {
            b.iter(|| spmm_into(1.0, black_box(sw.csr()), &x, 0.0, &mut out).unwrap())
        });
        // The layer product: row-grouped blocked layout on AVX-512 machines from 1% density (built
        // by the first call, outside the measurement as in training, where it lives as long
        // as the mask).
        sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut out).unwrap();
        g.bench_with_input(BenchmarkId::new("weight", s), &sw, |b, sw| {
            b.iter(|| sparse_weight_mm_into(1.0, black_box(sw), false, &x, 0.0, &mut out).unwrap())
        });
    }
    g.finish();
}

fn conv_train_step(c: &mut Criterion) {
    let x = tensor(&[32, 256, 16, 16], 5);
    let w = tensor(&[256, 256, 3, 3], 6);
    let dy = tensor(&[32, 256, 16, 16], 7);
    let p = Conv2dParams::new(1, 1);
    let mut g = c.benchmark_group("conv3x3_256_16x16_b32_fwd_bwd");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("dense", |b| {
        b.iter(|| {
            let y = conv2d_forward(&x, WeightRef::Dense(&w), p).unwrap();
            let gr =
                conv2d_backward(&dy, &x, WeightRef::Dense(&w), p, true, WeightGrad::Dense).unwrap();
            black_box((y, gr))
        })
    });
    for s in [70u32, 80, 90, 98] {
        let mk = DeviceMask::cpu(mask(w.shape(), 1.0 - s as f64 / 100.0, s as u64));
        let wm = masked(&w, mk.mask());
        let sw = SparseWeight::new(&wm, &mk).unwrap();
        g.bench_with_input(BenchmarkId::new("sparse", s), &sw, |b, sw| {
            b.iter(|| {
                let y = conv2d_forward(&x, WeightRef::Sparse(sw), p).unwrap();
                let gr = conv2d_backward(
                    &dy,
                    &x,
                    WeightRef::Sparse(sw),
                    p,
                    true,
                    WeightGrad::AtMask(&mk),
                )
                .unwrap();
                black_box((y, gr))
            })
        });
    }
    g.finish();
}

/// Dense conv fwd + bwd (input and weight gradients) on the three ResNet-20 stage shapes at
/// batch 128, reported in GFLOP/s of useful work (3 x 2·B·O·P·C·k²) to compare with the peak.
fn conv_resnet20_stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3_resnet20_b128_dense_fwd_bwd");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (ch, hw) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let x = tensor(&[128, ch, hw, hw], 11);
        let w = tensor(&[ch, ch, 3, 3], 12);
        let dy = tensor(&[128, ch, hw, hw], 13);
        let p = Conv2dParams::new(1, 1);
        g.throughput(Throughput::Elements(
            (3 * 2 * 128 * ch * hw * hw * ch * 9) as u64,
        ));
        g.bench_function(BenchmarkId::new("channels", ch), |b| {
            b.iter(|| {
                let y = conv2d_forward(&x, WeightRef::Dense(&w), p).unwrap();
                let gr = conv2d_backward(&dy, &x, WeightRef::Dense(&w), p, true, WeightGrad::Dense)
                    .unwrap();
                black_box((y, gr))
            })
        });
    }
    g.finish();
}

/// Where sparse execution starts to pay on ResNet-20's stage shapes (batch 128, forward and
/// both gradients at the mask): the dense-executed masked weight (`dense_at_mask`, what
/// `ExecPolicy` runs above its threshold) against the sparse weight, by density in percent.
fn conv_resnet20_by_density(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3_resnet20_b128_by_density");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (ch, hw) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let x = tensor(&[128, ch, hw, hw], 21);
        let w = tensor(&[ch, ch, 3, 3], 22);
        let dy = tensor(&[128, ch, hw, hw], 23);
        let p = Conv2dParams::new(1, 1);
        for d in [5u32, 10, 20, 30, 40] {
            let mk = DeviceMask::cpu(mask(w.shape(), d as f64 / 100.0, d as u64));
            let wm = masked(&w, mk.mask());
            let sw = SparseWeight::new(&wm, &mk).unwrap();
            for (name, wr) in [
                ("dense_at_mask", WeightRef::Dense(&wm)),
                ("sparse", WeightRef::Sparse(&sw)),
            ] {
                let id = BenchmarkId::new(format!("c{ch}_{hw}x{hw}/{name}"), d);
                g.bench_function(id, |b| {
                    b.iter(|| {
                        let y = conv2d_forward(&x, wr, p).unwrap();
                        let at = WeightGrad::AtMask(&mk);
                        let gr = conv2d_backward(&dy, &x, wr, p, true, at).unwrap();
                        black_box((y, gr))
                    })
                });
            }
        }
    }
    g.finish();
}

/// The at-mask weight gradient alone (no input gradient) on ResNet-18's stage shapes at
/// batch 128, at the densities ERK gives them at 90%: the sparse weight's path (plane dots
/// on the direct path, SDDMM over the unfolding, or the dense product masked above the
/// thresholds in `conv/cpu.rs`) against the dense weight's full gradient.
fn conv_resnet18_wgrad(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3_resnet18_b128_wgrad");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // Each stage at its ERK density and at 0.1-0.5, to place the thresholds.
    let stages = [
        (64usize, 32usize, 0.48f64),
        (128, 16, 0.234),
        (256, 8, 0.116),
        (512, 4, 0.058),
    ];
    for (ch, hw, erk) in stages {
        let x = tensor(&[128, ch, hw, hw], 31);
        let w = tensor(&[ch, ch, 3, 3], 32);
        let dy = tensor(&[128, ch, hw, hw], 33);
        let p = Conv2dParams::new(1, 1);
        let name = format!("c{ch}_{hw}x{hw}");
        g.bench_function(BenchmarkId::new(&name, "dense"), |b| {
            b.iter(|| {
                let wr = WeightRef::Dense(&w);
                black_box(conv2d_backward(&dy, &x, wr, p, false, WeightGrad::Dense).unwrap())
            })
        });
        for d in [erk, 0.1, 0.2, 0.3, 0.5] {
            let mk = DeviceMask::cpu(mask(w.shape(), d, 34));
            let wm = masked(&w, mk.mask());
            let sw = SparseWeight::new(&wm, &mk).unwrap();
            let id = BenchmarkId::new(&name, format!("sparse_at_mask_{d}"));
            g.bench_function(id, |b| {
                b.iter(|| {
                    let (wr, at) = (WeightRef::Sparse(&sw), WeightGrad::AtMask(&mk));
                    black_box(conv2d_backward(&dy, &x, wr, p, false, at).unwrap())
                })
            });
        }
    }
    g.finish();
}

/// The forward pass alone on ResNet-18's stage shapes at batch 128 and their ERK 90%
/// densities: the dense weight against the sparse one.
fn conv_resnet18_forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3_resnet18_b128_fwd");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (ch, hw, d) in [
        (128usize, 16usize, 0.234f64),
        (256, 8, 0.116),
        (512, 4, 0.058),
    ] {
        let x = tensor(&[128, ch, hw, hw], 41);
        let w = tensor(&[ch, ch, 3, 3], 42);
        let p = Conv2dParams::new(1, 1);
        let mk = DeviceMask::cpu(mask(w.shape(), d, 43));
        let sw = SparseWeight::new(&masked(&w, mk.mask()), &mk).unwrap();
        let name = format!("c{ch}_{hw}x{hw}");
        g.bench_function(BenchmarkId::new(&name, "dense"), |b| {
            b.iter(|| black_box(conv2d_forward(&x, WeightRef::Dense(&w), p).unwrap()))
        });
        g.bench_function(BenchmarkId::new(&name, format!("sparse_{d}")), |b| {
            b.iter(|| black_box(conv2d_forward(&x, WeightRef::Sparse(&sw), p).unwrap()))
        });
    }
    g.finish();
}

/// The MLP 784-300-100-10's layers at batch 64 (forward, then both gradients at the mask),
/// dense against sparse at the densities ERK gives them at 98% global sparsity.
fn linear_mlp(c: &mut Criterion) {
    let mut g = c.benchmark_group("linear_mlp_b64_fwd_bwd");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, i, o, density) in [
        ("fc1", 784usize, 300usize, 0.0154),
        ("fc2", 300, 100, 0.0446),
    ] {
        let x = tensor(&[64, i], 31);
        let w = tensor(&[o, i], 32);
        let b = tensor(&[o], 33);
        let dy = tensor(&[64, o], 34);
        let mk = DeviceMask::cpu(mask(w.shape(), density, 35));
        let wm = masked(&w, mk.mask());
        let sw = SparseWeight::new(&wm, &mk).unwrap();
        for (kind, wr, at) in [
            ("dense", WeightRef::Dense(&w), WeightGrad::Dense),
            ("sparse", WeightRef::Sparse(&sw), WeightGrad::AtMask(&mk)),
        ] {
            g.bench_function(BenchmarkId::new(name, kind), |bn| {
                bn.iter(|| {
                    let y = linear_forward(&x, wr, Some(&b)).unwrap();
                    let gr = linear_backward(&dy, &x, wr, true, name != "fc1", at).unwrap();
                    black_box((y, gr))
                })
            });
        }
    }
    g.finish();
}

fn mask_update(c: &mut Criterion) {
    // ResNet-50-sized: 25M weights, 90% sparse, drop fraction 0.3.
    let n = 25_000_000;
    let mk = mask(&[n], 0.1, 8);
    let mut w = scores(n, 9);
    mk.apply(&mut w).unwrap();
    let drop: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let grow: Vec<f32> = scores(n, 10).iter().map(|v| v.abs()).collect();
    let k = (mk.count_ones() as f64 * 0.3) as usize;
    let mut g = c.benchmark_group("mask_update_25M_s90_f0.3");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("drop_and_grow", |b| {
        b.iter(|| drop_and_grow(&mk, &drop, &grow, k).unwrap())
    });
    g.finish();
}

/// BatchNorm+ReLU training forward and backward at ResNet-20's three stage shapes and
/// ResNet-18's first (batch 128): memory-bound passes over 2-32 MiB activations.
fn batch_norm_resnet(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_norm_relu_b128_fwd_bwd");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (ch, hw) in [(16usize, 32usize), (32, 16), (64, 8), (64, 32)] {
        let x = tensor(&[128, ch, hw, hw], 21);
        let dy = tensor(&[128, ch, hw, hw], 22);
        let gamma = tensor(&[ch], 23);
        let beta = tensor(&[ch], 24);
        let (mut rm, mut rv) = (tensor(&[ch], 25), tensor(&[ch], 26));
        g.throughput(Throughput::Bytes((128 * ch * hw * hw * 4) as u64));
        g.bench_function(BenchmarkId::new("shape", format!("{ch}x{hw}x{hw}")), |b| {
            b.iter(|| {
                let p = BatchNormParams::with_relu();
                let (y, cache) = batch_norm_train(&x, &gamma, &beta, &mut rm, &mut rv, p).unwrap();
                let gr = batch_norm_backward(&dy, &cache, &gamma).unwrap();
                black_box((y, gr))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    batch_norm_resnet,
    peak,
    sgemm,
    spmm_vs_dense,
    conv_train_step,
    conv_resnet20_stages,
    conv_resnet20_by_density,
    conv_resnet18_wgrad,
    conv_resnet18_forward,
    linear_mlp,
    mask_update
);
/// The training binary's allocator: freed activations are reused from one iteration to the
/// next, as they are from step to step in `sparse-train`. Under glibc's defaults a buffer of
/// a few MiB is mapped afresh and faulted in on every iteration, and the page faults, not
/// the kernel, set the time (BatchNorm at 16x32x32: 9.6 ms with them, against about 1.6 in
/// training).
#[global_allocator]
static ALLOC: sparse_train::alloc::HugePageAlloc = sparse_train::alloc::HugePageAlloc;

fn main() {
    sparse_train::alloc::keep_freed_memory().expect("allocator settings");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
