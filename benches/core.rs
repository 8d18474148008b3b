//! sparse-core benchmarks: exact top-k versus a full sort, and dense+mask -> CSR.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sparse_benches::{mask, scores};
use sparse_core::{drop_and_grow, top_k, Candidates, Csr};
use std::hint::black_box;
use std::time::Duration;

fn topk_vs_sort(c: &mut Criterion) {
    // ResNet-18 (~11M) and ResNet-50 (~25M) parameter counts.
    for (name, n) in [("11M", 11_000_000usize), ("25M", 25_000_000)] {
        let s = scores(n, 1);
        let mut g = c.benchmark_group(format!("topk_{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(6));
        for pct in [1usize, 10, 50] {
            let k = n * pct / 100;
            g.bench_with_input(BenchmarkId::new("radix_select", pct), &k, |b, &k| {
                b.iter(|| top_k(&[n], black_box(&s), k, Candidates::All).unwrap())
            });
        }
        g.bench_function("full_sort", |b| {
            b.iter_batched_ref(
                || s.clone(),
                |v| v.sort_unstable_by(|a, b| b.total_cmp(a)),
                criterion::BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn csr_build(c: &mut Criterion) {
    let shape = [4096usize, 4096];
    let dense = scores(4096 * 4096, 2);
    let m = mask(&shape, 0.1, 3);
    let mut g = c.benchmark_group("csr_from_dense_masked_4096x4096_s90");
    g.sample_size(20);
    g.bench_function("build", |b| {
        b.iter(|| Csr::from_dense_masked(black_box(&dense), &m).unwrap())
    });
    g.finish();
}

/// One RigL update of the MLP's first layer (300x784 at 1.54% density, 30% of it dropped and
/// regrown): the per-update cost that a short run pays every ΔT steps.
fn drop_grow_mlp_fc1(c: &mut Criterion) {
    let shape = [300usize, 784];
    let m = mask(&shape, 0.0154, 4);
    let mut w = scores(300 * 784, 5);
    m.apply(&mut w).unwrap();
    let drop: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    // Gradient magnitudes spread over many octaves: log-uniform over e^±6.
    let grow: Vec<f32> = scores(300 * 784, 6)
        .iter()
        .map(|v| (6.0 * v).exp())
        .collect();
    let k = (m.count_ones() as f64 * 0.3) as usize;
    let mut g = c.benchmark_group("drop_grow_mlp_fc1");
    g.sample_size(30);
    g.bench_function("drop_and_grow", |b| {
        b.iter(|| drop_and_grow(&m, black_box(&drop), black_box(&grow), k).unwrap())
    });
    g.finish();
}

criterion_group!(benches, topk_vs_sort, csr_build, drop_grow_mlp_fc1);
criterion_main!(benches);
