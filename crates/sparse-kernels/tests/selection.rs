//! Exact selection on every device against sparse-core's `select` and `drop_and_grow`:
//! random inputs with many ties (few distinct values, both zeros, infinities), sizes that
//! are not multiples of 64 and span several scan blocks, both orders, every candidate mode,
//! global selection, and the NaN / not-enough-candidates errors. Masks must be identical
//! bit for bit (spec §0.2).

mod common;
use common::*;
use rand_core::RngCore;
use sparse_kernels::ops::mask_update::GrowInit;
use sparse_kernels::ops::mask_update::{
    mask_nonzero, select_global, select_mask, select_words, update_layer,
};
use sparse_kernels::sparse_core::{
    drop_and_grow, random_mask, select, stream_rng, Candidates, Mask, Order, Parallelism,
};
use sparse_kernels::{test_device, Device, DeviceMask, KernelError, Tensor};

/// Scores from a small alphabet, so most entries tie with others.
fn tied_scores(n: usize, seed: u64) -> Vec<f32> {
    let alphabet = [
        -1.5f32,
        -0.0,
        0.0,
        0.25,
        0.25,
        1.0,
        3.0,
        f32::INFINITY,
        -f32::INFINITY,
    ];
    let mut rng = stream_rng(seed, 9);
    (0..n)
        .map(|_| {
            let r = rng.next_u32();
            if r.is_multiple_of(4) {
                // Some distinct values too.
                (r >> 8) as f32 / 65536.0 - 100.0
            } else {
                alphabet[(r >> 4) as usize % alphabet.len()]
            }
        })
        .collect()
}

fn random_candidates(n: usize, seed: u64) -> Mask {
    let k = (n as u64 * 3 / 5) as usize;
    random_mask(&[n], k, &mut stream_rng(seed, 3)).unwrap()
}

fn device_selection_is_bit_identical(dev: &Device) -> TestResult {
    // 70_001 entries: 1094 words, five blocks of the tie scan, a ragged last word.
    for (n, seed) in [(1usize, 1u64), (63, 2), (300, 3), (70_001, 4)] {
        let sv = tied_scores(n, seed);
        let s = t(&[n], sv.clone(), dev);
        let cand = random_candidates(n, seed + 10);
        let nc = cand.count_ones();
        for order in [Order::Largest, Order::Smallest] {
            for k in [0, 1.min(nc), nc / 3, (nc / 2 + 1).min(nc), nc] {
                let got = select_mask(&s, k, Some(&cand), order)?;
                let want = select(
                    &[n],
                    &sv,
                    k,
                    Candidates::Set(&cand),
                    order,
                    Parallelism::Serial,
                )?;
                assert_eq!(got, want, "n {n} k {k} {order:?}, candidates");
            }
            let k = n / 2;
            let got = select_mask(&s, k, None, order)?;
            let want = select(&[n], &sv, k, Candidates::All, order, Parallelism::Serial)?;
            assert_eq!(got, want, "n {n} k {k} {order:?}, all");
            let words = select_words(&s, k, order)?.to_host()?;
            assert_eq!(words, want.words(), "n {n} k {k} {order:?}, device words");
        }
    }
    // Global ranking across layers whose sizes are not word multiples.
    let (a, b) = (tied_scores(1000, 7), tied_scores(130, 8));
    let (ta, tb) = (t(&[10, 100], a.clone(), dev), t(&[130], b.clone(), dev));
    let cb = random_candidates(130, 5);
    let masks = select_global(&[&ta, &tb], &[None, Some(&cb)], 400, Order::Smallest)?;
    let all: Vec<f32> = a.iter().chain(&b).copied().collect();
    let mut c = Mask::zeros(&[1130]);
    (0..1000).for_each(|i| c.set(i));
    cb.iter_ones().for_each(|i| c.set(1000 + i));
    let want = select(
        &[1130],
        &all,
        400,
        Candidates::Set(&c),
        Order::Smallest,
        Parallelism::Serial,
    )?;
    let got: Vec<usize> = masks[0]
        .iter_ones()
        .chain(masks[1].iter_ones().map(|i| i + 1000))
        .collect();
    assert_eq!(got, want.iter_ones().collect::<Vec<_>>());
    assert_eq!(masks[0].shape(), &[10, 100]);
    Ok(())
}
test_device!(
    device_selection_is_bit_identical,
    selection_identical_cpu,
    selection_identical_cuda,
    selection_identical_emu
);

fn device_drop_and_grow_matches_sparse_core(dev: &Device) -> TestResult {
    let shape = [37, 41];
    let n = 37 * 41;
    let mask = random_mask(&shape, n / 10, &mut stream_rng(3, 1))?;
    let drop_v = tied_scores(n, 21);
    let grow_v = tied_scores(n, 22);
    for k in [0, 1, 50, n / 10] {
        let want = drop_and_grow(&mask, &drop_v, &grow_v, k)?;
        let mut w = t(&shape, (0..n).map(|i| i as f32 + 1.0).collect(), dev);
        let mut m = DeviceMask::new(mask.clone(), *dev)?;
        let mut mom = t(&shape, vec![1.0; n], dev);
        let got = update_layer(
            &mut w,
            &mut m,
            &mut [&mut mom],
            &t(&shape, drop_v.clone(), dev),
            &t(&shape, grow_v.clone(), dev),
            k,
            GrowInit::Zero,
        )?;
        assert_eq!(got, want, "k {k}");
        // The device copy of the new mask holds the same bits, and the budget is exact.
        assert_eq!(mask_nonzero(&m)?, mask.count_ones());
        let (wh, mh) = (w.h(), mom.h());
        for &i in &want.grown {
            assert_eq!((wh[i as usize], mh[i as usize]), (0.0, 0.0));
        }
        for &i in &want.dropped {
            assert_eq!((wh[i as usize], mh[i as usize]), (0.0, 0.0));
        }
    }
    Ok(())
}
test_device!(
    device_drop_and_grow_matches_sparse_core,
    drop_grow_identical_cpu,
    drop_grow_identical_cuda,
    drop_grow_identical_emu
);

fn selection_errors_match_sparse_core(dev: &Device) -> TestResult {
    let mut v = tied_scores(200, 1);
    v[150] = f32::NAN;
    v[170] = f32::NAN;
    let s = t(&[200], v.clone(), dev);
    let core = select(
        &[200],
        &v,
        5,
        Candidates::All,
        Order::Largest,
        Parallelism::Serial,
    )
    .unwrap_err();
    let got = select_mask(&s, 5, None, Order::Largest).unwrap_err();
    assert_eq!(got, KernelError::Core(core));
    assert!(got.to_string().contains("150"), "{got}");
    // A NaN outside the candidates is ignored, as in sparse-core.
    let mut c = Mask::zeros(&[200]);
    (0..100).for_each(|i| c.set(i));
    assert_eq!(
        select_mask(&s, 5, Some(&c), Order::Largest)?.count_ones(),
        5
    );
    let e = select_mask(&s, 101, Some(&c), Order::Largest).unwrap_err();
    assert!(e.to_string().contains("101"), "{e}");
    let ok = Tensor::from_vec(&[3], vec![1.0, 2.0, 3.0], *dev)?;
    assert!(select_mask(&ok, 4, None, Order::Smallest).is_err());
    Ok(())
}
test_device!(
    selection_errors_match_sparse_core,
    selection_errors_cpu,
    selection_errors_cuda,
    selection_errors_emu
);
