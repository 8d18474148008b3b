//! sparse-core benchmarks: exact top-k versus a full sort, and dense+mask -> CSR.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sparse_benches::{mask, scores};
use sparse_core::{top_k, Candidates, Csr};
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

criterion_group!(benches, topk_vs_sort, csr_build);
criterion_main!(benches);
