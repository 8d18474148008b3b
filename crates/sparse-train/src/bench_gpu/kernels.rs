//! The kernel cases of `bench-gpu`: SpMM against SGEMM, SDDMM against the dense weight
//! gradient, sparse convolution (forward + both gradients) against dense, and the radix
//! select. Candidates are interleaved per repetition and timed with CUDA events; inputs are
//! fresh seeded random values (never zeros).

use anyhow::Result;
use sparse_kernels::backend::gpu::time_ms;
use sparse_kernels::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use sparse_kernels::ops::gemm::gemm;
use sparse_kernels::ops::mask_update::select_words;
use sparse_kernels::ops::sparse::{sparse_weight_mm_into, sparse_weight_sddmm};
use sparse_kernels::sparse_core::{random_mask, standard_normal, stream_rng, Order};
use sparse_kernels::{Device, DeviceMask, SparseWeight, Tensor, WeightGrad, WeightRef};

use super::{median, Row};

/// Seeded N(0, 1) values on `dev`.
pub(super) fn randn(shape: &[usize], seed: u64, dev: Device) -> Result<Tensor> {
    let mut rng = stream_rng(seed, 1234);
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| standard_normal(&mut rng)).collect();
    Ok(Tensor::from_vec(shape, v, dev)?)
}

fn mask(shape: &[usize], sparsity: f64, seed: u64, dev: Device) -> Result<DeviceMask> {
    let n: usize = shape.iter().product();
    let nnz = n - (sparsity * n as f64).round() as usize;
    let m = random_mask(shape, nnz, &mut stream_rng(seed, 99))?;
    Ok(DeviceMask::new(m, dev)?)
}

/// Medians of interleaved timings: each repetition runs every candidate once, in order.
fn interleaved(
    dev: Device,
    reps: usize,
    cands: &mut [&mut dyn FnMut() -> sparse_kernels::Result<()>],
) -> Result<Vec<f64>> {
    for c in cands.iter_mut() {
        for _ in 0..2 {
            time_ms(dev, &mut **c)?;
        }
    }
    let mut t = vec![Vec::with_capacity(reps); cands.len()];
    for _ in 0..reps {
        for (i, c) in cands.iter_mut().enumerate() {
            t[i].push(time_ms(dev, &mut **c)?);
        }
    }
    Ok(t.iter_mut().map(|v| median(v)).collect())
}

/// SpMM (`W_sparse · X`) against SGEMM (`W · X`) at each sparsity, and the SDDMM (`dY · Xᵀ`
/// at the mask) against the dense weight gradient, for an `m x k` weight and `n` columns.
pub(super) fn spmm_sddmm(
    dev: Device,
    (m, k, n): (usize, usize, usize),
    sparsities: &[f64],
    reps: usize,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let w = randn(&[m, k], 1, dev)?;
    let x = randn(&[k, n], 2, dev)?;
    let dy = randn(&[m, n], 3, dev)?;
    let mut y = Tensor::zeros(&[m, n], dev)?;
    let mut dw = Tensor::zeros(&[m, k], dev)?;
    for (i, &s) in sparsities.iter().enumerate() {
        let mk = mask(&[m, k], s, i as u64, dev)?;
        let sw = SparseWeight::new(&w, &mk)?;
        let mut ys = Tensor::zeros(&[m, n], dev)?;
        let layout = time_ms(dev, || SparseWeight::new(&w, &mk).map(drop))?;
        let (mut a, mut b) = (
            || gemm(1.0, &w, false, &x, false, 0.0, &mut y),
            || sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut ys),
        );
        let t = interleaved(dev, reps, &mut [&mut a, &mut b])?;
        let case = format!("{m}x{k} · {k}x{n}, {:.0}% sparse", 100.0 * s);
        rows.push(
            Row::new("SpMM", &case, "our cuBLAS SGEMM", t[0], t[1])
                .note(format!("layout build {layout:.2} ms")),
        );
        let (mut a, mut b) = (
            || gemm(1.0, &dy, false, &x, true, 0.0, &mut dw),
            || sparse_weight_sddmm(&sw, &dy, &x).map(drop),
        );
        let t = interleaved(dev, reps, &mut [&mut a, &mut b])?;
        rows.push(Row::new("SDDMM", &case, "dense dY·Xᵀ (cuBLAS)", t[0], t[1]));
    }
    Ok(())
}

/// One convolution layer, forward + backward (input and weight gradients), dense against
/// sparse at `sparsity` (at-mask weight gradient).
pub(super) fn conv(
    dev: Device,
    (b, c, hw, o): (usize, usize, usize, usize),
    sparsity: f64,
    reps: usize,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let p = Conv2dParams::new(1, 1);
    let x = randn(&[b, c, hw, hw], 4, dev)?;
    let w = randn(&[o, c, 3, 3], 5, dev)?;
    let dy = randn(&[b, o, hw, hw], 6, dev)?;
    let mk = mask(&[o, c, 3, 3], sparsity, 7, dev)?;
    let sw = SparseWeight::new(&w, &mk)?;
    let mut dense = || -> sparse_kernels::Result<()> {
        conv2d_forward(&x, WeightRef::Dense(&w), p)?;
        conv2d_backward(&dy, &x, WeightRef::Dense(&w), p, true, WeightGrad::Dense).map(drop)
    };
    let mut sparse = || -> sparse_kernels::Result<()> {
        conv2d_forward(&x, WeightRef::Sparse(&sw), p)?;
        conv2d_backward(
            &dy,
            &x,
            WeightRef::Sparse(&sw),
            p,
            true,
            WeightGrad::AtMask(&mk),
        )
        .map(drop)
    };
    let t = interleaved(dev, reps, &mut [&mut dense, &mut sparse])?;
    let case = format!(
        "3x3 {c}->{o} at {hw}x{hw}, batch {b}, {:.0}% sparse",
        100.0 * sparsity
    );
    rows.push(Row::new(
        "sparse conv fwd+bwd",
        &case,
        "our dense conv (im2col + cuBLAS)",
        t[0],
        t[1],
    ));
    Ok(())
}

/// The radix select of the `k` largest of `n` scores (device mask words); the PyTorch row
/// comes from `torch.topk` in the PyTorch script.
pub(super) fn select(dev: Device, n: usize, k: usize, reps: usize) -> Result<f64> {
    let s = randn(&[n], 8, dev)?;
    let mut f = || select_words(&s, k, Order::Largest).map(drop);
    Ok(interleaved(dev, reps, &mut [&mut f])?[0])
}
