//! Every method ends at exactly the requested sparsity at any run length of at least one
//! epoch (2, 5 and 30 epochs of a small run here), with scaled schedules by default.

use sparse_train::config::TrainConfig;
use sparse_train::trainer::Trainer;

const METHODS: &[&str] = &[
    "static",
    "snip",
    "set",
    "set-orig",
    "rigl",
    "rigl-itop",
    "dst-ee",
    "gmp",
    "granet",
    "fggp",
    "optg",
];

fn run(method: &str, epochs: u64, sparsity: f64) -> (Trainer, usize) {
    let cfg = TrainConfig {
        width_mult: 0.25,
        method: method.into(),
        sparsity,
        epochs,
        batch_size: 32,
        train_subset: Some(256),
        eval_subset: Some(32),
        threads: Some(1),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(cfg).unwrap();
    let mut changes = 0;
    while !t.finished() {
        let m = t.run_epoch().unwrap();
        changes += m.dropped + m.grown;
    }
    (t, changes)
}

#[test]
fn every_method_ends_at_the_requested_sparsity_at_any_length() {
    for &epochs in &[2, 5, 30] {
        for &method in METHODS {
            let sparsity = 0.9;
            let (t, changes) = run(method, epochs, sparsity);
            let layers = t.layer_metrics();
            let n: usize = layers.iter().map(|l| l.numel).sum();
            let nnz: usize = layers.iter().map(|l| l.nnz).sum();
            let want = (1.0 - sparsity) * n as f64;
            // Per-layer rounding may leave each layer one weight off.
            assert!(
                (nnz as f64 - want.round()).abs() <= layers.len() as f64,
                "{method} at {epochs} epochs: {nnz} nonzeros, want {want:.0} of {n}"
            );
            if method != "static" {
                assert!(
                    changes > 0,
                    "{method} at {epochs} epochs: the mask never changed"
                );
            }
        }
    }
}
