//! GEMM, masked GEMM, SpMM and SDDMM against naive f64 references, dense vs sparse agreement.

mod common;
use common::*;
use sparse_kernels::ops::gemm::{gemm, matmul};
use sparse_kernels::ops::sparse::{
    masked_matmul, masked_matmul_t, sddmm, sddmm_masked, sparse_weight_mm_into,
    sparse_weight_sddmm, spmm, spmm_into,
};
use sparse_kernels::sparse_core::{Csr, Mask};
use sparse_kernels::{test_device, Device, DeviceMask, SparseWeight, Tensor};

const SPARSITIES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (3, 17, 5),
    (17, 3, 1),
    (1, 64, 65),
    (33, 70, 130),
    (64, 9, 3),
    // Long reductions exercise the K-blocked SpMM path.
    (20, 600, 256),
    (7, 1500, 100),
];

fn gemm_all_transposes_match_reference(dev: &Device) -> TestResult {
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randn(&if ta { [k, m] } else { [m, k] }, si as u64, dev);
            let b = randn(&if tb { [n, k] } else { [k, n] }, 100 + si as u64, dev);
            let r = gemm_ref(a.h(), ta, b.h(), tb, m, k, n);
            let c = matmul(&a, ta, &b, tb)?;
            assert_close(c.h(), &r, 1e-4, "matmul");
            // alpha/beta: C = 2·AB − 0.5·C0
            let c0 = randn(&[m, n], 7, dev);
            let mut c = c0.clone();
            gemm(2.0, &a, ta, &b, tb, -0.5, &mut c)?;
            let expect: Vec<f64> = r
                .iter()
                .zip(c0.h().iter())
                .map(|(x, &y)| 2.0 * x - 0.5 * y as f64)
                .collect();
            assert_close(c.h(), &expect, 1e-4, "gemm alpha/beta");
        }
    }
    assert!(matmul(
        &randn(&[2, 3], 1, dev),
        false,
        &randn(&[4, 2], 1, dev),
        false
    )
    .is_err());
    Ok(())
}
test_device!(
    gemm_all_transposes_match_reference,
    gemm_all_transposes_match_reference_cpu,
    gemm_all_transposes_match_reference_cuda,
    gemm_all_transposes_match_reference_emu
);

fn masked_gemm_and_spmm_match_reference_at_every_sparsity(dev: &Device) -> TestResult {
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        for (pi, &s) in SPARSITIES.iter().enumerate() {
            let w = randn(&[m, k], si as u64, dev);
            let mask = mask_at(&[m, k], s, (si * 10 + pi) as u64, dev);
            let wm = masked(&w, &mask);
            let x = randn(&[k, n], 50 + si as u64, dev);
            let y = randn(&[m, n], 60 + si as u64, dev);
            let fwd = gemm_ref(wm.h(), false, x.h(), false, m, k, n);
            let bwd = gemm_ref(wm.h(), true, y.h(), false, k, m, n);
            assert_close(
                masked_matmul(&w, &mask, &x).unwrap().h(),
                &fwd,
                1e-4,
                "masked",
            );
            assert_close(
                masked_matmul_t(&w, &mask, &y).unwrap().h(),
                &bwd,
                1e-4,
                "masked_t",
            );
            let sw = SparseWeight::new(&w, &mask).unwrap();
            assert_close(spmm(sw.csr(), &x).unwrap().h(), &fwd, 1e-4, "spmm");
            assert_close(spmm(sw.csr_t(), &y).unwrap().h(), &bwd, 1e-4, "spmm csr_t");
            // In place with alpha/beta: out = 2·A·X − 0.5·out0.
            let out0 = randn(&[m, n], 70 + si as u64, dev);
            let mut out = out0.clone();
            spmm_into(2.0, sw.csr(), &x, -0.5, &mut out).unwrap();
            let expect: Vec<f64> = fwd
                .iter()
                .zip(out0.h().iter())
                .map(|(f, &o)| 2.0 * f - 0.5 * o as f64)
                .collect();
            assert_close(out.h(), &expect, 1e-4, "spmm_into");
            let mut wrong = randn(&[m + 1, n], 1, dev);
            assert!(spmm_into(1.0, sw.csr(), &x, 0.0, &mut wrong).is_err());
            // The layer product (cache-blocked on AVX-512 machines), both orientations.
            let mut out = out0.clone();
            sparse_weight_mm_into(2.0, &sw, false, &x, -0.5, &mut out).unwrap();
            assert_close(out.h(), &expect, 1e-4, "sparse_weight_mm_into");
            let mut out_t = Tensor::from_vec(&[k, n], vec![f32::NAN; k * n], *dev).unwrap();
            sparse_weight_mm_into(1.0, &sw, true, &y, 0.0, &mut out_t).unwrap();
            assert_close(out_t.h(), &bwd, 1e-4, "sparse_weight_mm_into transposed");
            assert!(sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut wrong).is_err());
            assert!(sparse_weight_mm_into(1.0, &sw, true, &x, 0.0, &mut out_t).is_err() || k == m);
            // Dense GEMM on the masked copy agrees with both sparse paths.
            let dense = matmul(&wm, false, &x, false).unwrap();
            assert_close(dense.h(), &fwd, 1e-4, "dense");
        }
    }
    Ok(())
}
test_device!(
    masked_gemm_and_spmm_match_reference_at_every_sparsity,
    masked_gemm_and_spmm_match_reference_at_every_sparsity_cpu,
    masked_gemm_and_spmm_match_reference_at_every_sparsity_cuda,
    masked_gemm_and_spmm_match_reference_at_every_sparsity_emu
);

fn sparse_weight_refresh_tracks_new_values(dev: &Device) -> TestResult {
    let w = randn(&[5, 7], 1, dev);
    let mask = mask_at(&[5, 7], 0.6, 2, dev);
    let mut sw = SparseWeight::new(&w, &mask).unwrap();
    // A product first, so that any cached execution layout exists before the refresh.
    let x = randn(&[7, 40], 4, dev);
    let mut out = Tensor::zeros(&[5, 40], *dev).unwrap();
    sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut out).unwrap();
    let w2 = randn(&[5, 7], 3, dev);
    sw.refresh(&w2).unwrap();
    let expect = Csr::from_dense_masked(&w2.h(), &mask).unwrap();
    let expect_t = expect.transpose();
    assert_eq!(sw.csr().row_ptr(), expect.row_ptr());
    assert_eq!(sw.csr().col_idx(), expect.col_idx());
    assert_eq!(sw.csr_t().col_idx(), expect_t.col_idx());
    assert_eq!(sw.values()?, expect.values());
    assert_eq!(sw.values_t()?, expect_t.values());
    sparse_weight_mm_into(1.0, &sw, false, &x, 0.0, &mut out).unwrap();
    let w2m = masked(&w2, &mask);
    let r = gemm_ref(w2m.h(), false, x.h(), false, 5, 7, 40);
    assert_close(out.h(), &r, 1e-5, "product after refresh");
    // The transposed form follows the refresh too.
    let y = randn(&[5, 9], 6, dev);
    let mut out_t = Tensor::zeros(&[7, 9], *dev).unwrap();
    sparse_weight_mm_into(1.0, &sw, true, &y, 0.0, &mut out_t).unwrap();
    let r = gemm_ref(w2m.h(), true, y.h(), false, 7, 5, 9);
    assert_close(out_t.h(), &r, 1e-5, "transposed product after refresh");
    assert!(sw.refresh(&randn(&[7, 5], 3, dev)).is_err());
    Ok(())
}
test_device!(
    sparse_weight_refresh_tracks_new_values,
    sparse_weight_refresh_tracks_new_values_cpu,
    sparse_weight_refresh_tracks_new_values_cuda,
    sparse_weight_refresh_tracks_new_values_emu
);

fn sddmm_matches_reference(dev: &Device) -> TestResult {
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        for (pi, &s) in SPARSITIES.iter().enumerate() {
            let mask = mask_at(&[m, k], s, (si * 10 + pi) as u64, dev);
            let dy = randn(&[m, n], si as u64, dev);
            let x = randn(&[k, n], 9 + si as u64, dev);
            let full = gemm_ref(dy.h(), false, x.h(), true, m, n, k);
            let at_mask: Vec<f64> = full
                .iter()
                .enumerate()
                .map(|(i, &v)| if mask.get(i) { v } else { 0.0 })
                .collect();
            let got = sddmm_masked(&mask, &dy, &x).unwrap();
            assert_close(got.h(), &at_mask, 1e-4, "sddmm_masked");
            // Exactly zero off the mask.
            assert!(got
                .h()
                .iter()
                .enumerate()
                .all(|(i, &v)| mask.get(i) || v == 0.0));
            let csr = Csr::from_dense_masked(&vec![0.0; m * k], &mask).unwrap();
            let vals = sddmm(&csr, &dy, &x).unwrap();
            let expect: Vec<f64> = mask.iter_ones().map(|i| full[i]).collect();
            assert_close(vals.h(), &expect, 1e-4, "sddmm csr");
        }
    }
    // A sparse weight's own SDDMM, with an inner dimension long enough (5000) to split
    // into chunks on the GPU, against the f64 reference.
    let (m, k, n) = (6, 40, 5000);
    let mask = mask_at(&[m, k], 0.8, 3, dev);
    let sw = SparseWeight::new(&randn(&[m, k], 2, dev), &mask).unwrap();
    let dy = randn(&[m, n], 4, dev);
    let x = randn(&[k, n], 5, dev);
    let full = gemm_ref(dy.h(), false, x.h(), true, m, n, k);
    let expect: Vec<f64> = mask.iter_ones().map(|i| full[i]).collect();
    let vals = sparse_weight_sddmm(&sw, &dy, &x).unwrap();
    assert_close(vals.h(), &expect, 1e-4, "sparse_weight_sddmm");
    assert!(sparse_weight_sddmm(&sw, &x, &dy).is_err());
    let mask = DeviceMask::new(Mask::ones(&[2, 3]), *dev)?;
    assert!(sddmm_masked(&mask, &randn(&[2, 4], 1, dev), &randn(&[3, 5], 1, dev)).is_err());
    let t = Tensor::from_vec(&[1], vec![1.0], *dev).unwrap();
    assert!(masked_matmul(&t, &mask, &t).is_err());
    Ok(())
}
test_device!(
    sddmm_matches_reference,
    sddmm_matches_reference_cpu,
    sddmm_matches_reference_cuda,
    sddmm_matches_reference_emu
);
