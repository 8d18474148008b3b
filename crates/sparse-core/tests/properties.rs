//! Property tests of sparse-core against independent, naive references.

use proptest::prelude::*;
use sparse_core::*;

/// Scores drawn from a small value set so that ties (and -0.0 vs +0.0) are frequent.
fn tie_heavy_scores(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop::sample::select(vec![-2.0f32, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, f32::INFINITY]),
        n,
    )
}

fn bools(n: usize, density: f64) -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(prop::bool::weighted(density), n)
}

/// Shape plus a density that is sometimes exactly 0 or 1.
fn shape_and_density() -> impl Strategy<Value = (Vec<usize>, f64)> {
    let shape = prop_oneof![
        (1usize..40, 1usize..40).prop_map(|(r, c)| vec![r, c]),
        (1usize..8, 1usize..4, 1usize..4, 1usize..4).prop_map(|(a, b, c, d)| vec![a, b, c, d]),
        (1usize..70).prop_map(|c| vec![1, c]),
        (1usize..70).prop_map(|r| vec![r, 1]),
    ];
    let density = prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0];
    (shape, density)
}

/// Reference ranking: (canonical score, index) sorted by the project tie rule.
fn reference_select(scores: &[f32], cand: &[bool], k: usize, order: Order) -> Vec<usize> {
    let canon = |x: f32| if x == 0.0 { 0.0 } else { x };
    let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| cand[i]).collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (canon(scores[a]), canon(scores[b]));
        let by_score = match order {
            Order::Largest => sb.total_cmp(&sa),
            Order::Smallest => sa.total_cmp(&sb),
        };
        by_score.then(a.cmp(&b))
    });
    let mut out: Vec<usize> = idx.into_iter().take(k).collect();
    out.sort();
    out
}

proptest! {
    #[test]
    fn mask_ops_match_bool_vectors(n in 0usize..300, a in bools(300, 0.4), b in bools(300, 0.6),
                                   lo in 0usize..300, hi in 0usize..300) {
        let (a, b) = (&a[..n], &b[..n]);
        let ma = Mask::from_bools(&[n], a).unwrap();
        let mb = Mask::from_bools(&[n], b).unwrap();
        prop_assert_eq!(ma.to_bools(), a.to_vec());
        prop_assert_eq!(ma.count_ones(), a.iter().filter(|&&x| x).count());
        prop_assert_eq!(ma.iter_ones().collect::<Vec<_>>(), (0..n).filter(|&i| a[i]).collect::<Vec<_>>());
        prop_assert_eq!(ma.iter_zeros().collect::<Vec<_>>(), (0..n).filter(|&i| !a[i]).collect::<Vec<_>>());
        let zipped = |f: fn(bool, bool) -> bool| (0..n).map(|i| f(a[i], b[i])).collect::<Vec<_>>();
        prop_assert_eq!(ma.and(&mb).unwrap().to_bools(), zipped(|x, y| x && y));
        prop_assert_eq!(ma.or(&mb).unwrap().to_bools(), zipped(|x, y| x || y));
        prop_assert_eq!(ma.and_not(&mb).unwrap().to_bools(), zipped(|x, y| x && !y));
        prop_assert_eq!(ma.not().to_bools(), a.iter().map(|x| !x).collect::<Vec<_>>());
        prop_assert_eq!(ma.not().count_ones(), n - ma.count_ones());
        let (lo, hi) = (lo.min(n), hi.min(n));
        prop_assert_eq!(ma.count_ones_in(lo, hi), (lo..hi).filter(|&i| a[i]).count());
        prop_assert_eq!(ma.iter_ones_in(lo, hi).collect::<Vec<_>>(), (lo..hi).filter(|&i| a[i]).collect::<Vec<_>>());
        let dense: Vec<f32> = a.iter().map(|&x| x as u8 as f32 * 2.5).collect();
        prop_assert_eq!(Mask::from_dense(&[n], &dense).unwrap(), ma.clone());
        prop_assert!(ma.and(&Mask::zeros(&[n + 1])).is_err());
    }

    #[test]
    fn formats_round_trip((shape, density) in shape_and_density(), seed in any::<u64>()) {
        let n: usize = shape.iter().product();
        let mut rng = stream_rng(seed, 0);
        let nnz = (n as f64 * density).round() as usize;
        let mask = random_mask(&shape, nnz, &mut rng).unwrap();
        // Values include exact zeros at active positions: the structure is the mask.
        let dense: Vec<f32> = (0..n).map(|i| if i % 7 == 0 { 0.0 } else { i as f32 * 0.25 - 3.0 }).collect();
        let mut masked = dense.clone();
        mask.apply(&mut masked).unwrap();

        let csr = Csr::from_dense_masked(&dense, &mask).unwrap();
        prop_assert_eq!(csr.nnz(), nnz);
        prop_assert_eq!(csr.to_mask(), mask.clone());
        prop_assert_eq!(csr.to_dense(), masked.clone());
        let (rows, cols) = matrix_view(&shape);
        prop_assert_eq!((csr.rows(), csr.cols()), (rows, cols));
        // Rebuilding from the raw parts validates and reproduces the same matrix.
        let again = Csr::from_parts(&shape, csr.row_ptr().to_vec(), csr.col_idx().to_vec(), csr.values().to_vec()).unwrap();
        prop_assert_eq!(&again, &csr);

        let bm = BitmaskMatrix::from_dense_masked(&dense, &mask).unwrap();
        prop_assert_eq!(bm.to_dense(), masked.clone());
        prop_assert_eq!(&BitmaskMatrix::from_csr(&csr), &bm);
        prop_assert_eq!(&bm.to_csr().unwrap(), &csr);

        // Transpose against a naive dense transpose, and twice is the identity.
        let t = csr.transpose();
        prop_assert_eq!((t.rows(), t.cols()), (cols, rows));
        let td = t.to_dense();
        for r in 0..rows {
            for c in 0..cols {
                prop_assert_eq!(td[c * rows + r], masked[r * cols + c]);
            }
        }
        let tt = t.transpose();
        prop_assert_eq!(tt.to_dense(), masked);
        prop_assert_eq!(tt.row_ptr(), csr.row_ptr());
        prop_assert_eq!(tt.col_idx(), csr.col_idx());
    }

    #[test]
    fn top_k_matches_sort_reference(n in 1usize..400, scores in tie_heavy_scores(400),
                                    cand in bools(400, 0.5), mode in 0u8..3,
                                    kfrac in 0.0f64..=1.0, largest in any::<bool>()) {
        let scores = &scores[..n];
        let cand_bools: Vec<bool> = match mode {
            0 => vec![true; n],
            1 => cand[..n].to_vec(),
            _ => cand[..n].iter().map(|x| !x).collect(),
        };
        let m = Mask::from_bools(&[n], &cand[..n]).unwrap();
        let c = match mode { 0 => Candidates::All, 1 => Candidates::Set(&m), _ => Candidates::Unset(&m) };
        let available = cand_bools.iter().filter(|&&x| x).count();
        let k = (available as f64 * kfrac).floor() as usize;
        let order = if largest { Order::Largest } else { Order::Smallest };
        let got = select(&[n], scores, k, c, order, Parallelism::Serial).unwrap();
        prop_assert_eq!(got.count_ones(), k);
        prop_assert_eq!(got.iter_ones().collect::<Vec<_>>(), reference_select(scores, &cand_bools, k, order));
        let too_many = select(&[n], scores, available + 1, c, order, Parallelism::Serial);
        let is_not_enough = matches!(too_many, Err(CoreError::NotEnoughCandidates { .. }));
        prop_assert!(is_not_enough);
    }

    #[test]
    fn drop_and_grow_keeps_budget(n in 1usize..300, w in tie_heavy_scores(300), g in tie_heavy_scores(300),
                                  act in bools(300, 0.3), nfrac in 0.0f64..=1.0) {
        let (w, g) = (&w[..n], &g[..n]);
        let mask = Mask::from_bools(&[n], &act[..n]).unwrap();
        let a = mask.count_ones();
        let k = (a as f64 * nfrac).floor() as usize;
        let r = drop_and_grow(&mask, w, g, k).unwrap();
        prop_assert_eq!(r.mask.count_ones(), a);
        // Reference: drop the k smallest active, grow the k largest not kept.
        let drop = reference_select(w, &act[..n], k, Order::Smallest);
        let mut kept = act[..n].to_vec();
        for &i in &drop { kept[i] = false; }
        let not_kept: Vec<bool> = kept.iter().map(|x| !x).collect();
        let grow = reference_select(g, &not_kept, k, Order::Largest);
        let mut expect = kept.clone();
        for &i in &grow { prop_assert!(!kept[i], "grew kept index {}", i); expect[i] = true; }
        prop_assert_eq!(r.mask.to_bools(), expect.clone());
        for &i in &r.grown { prop_assert!(!act[i as usize] && expect[i as usize]); }
        for &i in &r.dropped { prop_assert!(act[i as usize] && !expect[i as usize]); }
        prop_assert_eq!(r.grown.len(), r.dropped.len());
        prop_assert_eq!(r.grown.len(), (0..n).filter(|&i| expect[i] && !act[i]).count());
        let b = Budget::from_masks([("l", &mask)]).unwrap();
        prop_assert!(b.check([("l", &r.mask)]).is_ok());
    }

    #[test]
    fn erk_counts_hit_target(s in 0.3f64..0.9, dims in prop::collection::vec((64usize..200, 64usize..200, prop::sample::select(vec![1usize, 3])), 1..5),
                             power in prop_oneof![Just(1.0), 0.0f64..1.5]) {
        let mut layers = vec![LayerShape::new("tiny", &[3, 3])];
        for (i, (o, inp, k)) in dims.iter().enumerate() {
            layers.push(LayerShape::new(format!("conv{i}"), &[*o, *inp, *k, *k]));
        }
        layers.push(LayerShape::new("fc", &[10, dims[0].0]));
        let b = layer_budget(&layers, s, &Distribution::Erk { power }, &[]).unwrap();
        let target: usize = layers.iter().map(|l| {
            let n: usize = l.shape.iter().product();
            n - (s * n as f64).floor() as usize
        }).sum();
        let got = b.total_nnz() as i64;
        prop_assert!((got - target as i64).abs() <= layers.len() as i64, "got {} target {}", got, target);
        for l in b.layers() {
            prop_assert!(l.nnz <= l.numel());
        }
        if power == 1.0 {
            // The 3x3 layer's ERK density would exceed 1: it must be capped fully dense.
            prop_assert_eq!(b.layers()[0].nnz, 9);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn parallel_selection_equals_serial(n in 100_000usize..300_000, seed in any::<u64>(),
                                        kfrac in 0.0f64..=1.0, mode in 0u8..3, largest in any::<bool>()) {
        use rand_core::RngCore;
        let mut rng = stream_rng(seed, 9);
        // 8-bit scores: heavy ties spanning chunk boundaries.
        let scores: Vec<f32> = (0..n).map(|_| (rng.next_u32() % 256) as f32 - 128.0).collect();
        let m = random_mask(&[n], n / 3, &mut rng).unwrap();
        let c = match mode { 0 => Candidates::All, 1 => Candidates::Set(&m), _ => Candidates::Unset(&m) };
        let available = match mode { 0 => n, 1 => n / 3, _ => n - n / 3 };
        let k = (available as f64 * kfrac) as usize;
        let order = if largest { Order::Largest } else { Order::Smallest };
        let serial = select(&[n], &scores, k, c, order, Parallelism::Serial).unwrap();
        let parallel = select(&[n], &scores, k, c, order, Parallelism::Parallel).unwrap();
        prop_assert_eq!(serial.count_ones(), k);
        prop_assert_eq!(&serial, &parallel);
    }
}
