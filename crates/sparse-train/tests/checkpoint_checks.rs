//! Checkpoints are checked on load: every method's checkpoint loads back exactly, and a
//! checkpoint whose data are corrupt or whose contents do not fit its run is refused with a
//! message saying what is wrong, before anything is restored.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{SafeTensors, TensorView};
use sparse_train::checkpoint::{self, FORMAT_V1};
use sparse_train::config::TrainConfig;
use sparse_train::trainer::Trainer;

fn cfg(method: &str, agc: bool) -> TrainConfig {
    TrainConfig {
        width_mult: 0.25,
        method: method.into(),
        agc,
        epochs: 2,
        batch_size: 32,
        train_subset: Some(256),
        eval_subset: Some(64),
        update_interval: Some(3),
        ..TrainConfig::default()
    }
}

/// A trainer one epoch in, and its checkpoint in `dir`.
fn one_epoch(method: &str, agc: bool, dir: &Path) -> (Trainer, std::path::PathBuf) {
    let mut t = Trainer::new(cfg(method, agc)).unwrap();
    t.run_epoch().unwrap();
    let p = dir.join(format!("{method}.safetensors"));
    checkpoint::save(&mut t, &p).unwrap();
    (t, p)
}

/// A checkpoint's tensors (name, dtype, shape, bytes) and metadata.
type Contents = (
    Vec<(String, String, Vec<usize>, Vec<u8>)>,
    Vec<(String, String)>,
);
fn contents(p: &Path) -> Contents {
    let bytes = std::fs::read(p).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    t.sort();
    let mut m: Vec<_> = md.metadata().clone().unwrap().into_iter().collect();
    m.sort();
    (t, m)
}

fn load_err(p: &Path) -> String {
    format!(
        "{:#}",
        checkpoint::load(p, None).err().expect("load must fail")
    )
}

#[test]
fn every_method_checkpoint_loads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    for (method, agc) in [
        ("dense", false),
        ("set", false),
        ("set-orig", false),
        ("rigl", false),
        ("rigl-itop", false),
        ("dst-ee", false),
        ("gmp", false),
        ("granet", false),
        ("optg", false),
        ("fggp", false),
        ("rigl", true),
    ] {
        let (_, p) = one_epoch(method, agc, tmp.path());
        let mut t = checkpoint::load(&p, None).unwrap_or_else(|e| panic!("{method}: {e:#}"));
        let again = tmp.path().join("again.safetensors");
        checkpoint::save(&mut t, &again).unwrap();
        let (a, b) = (contents(&p), contents(&again));
        let differ: Vec<&String> =
            a.0.iter()
                .zip(&b.0)
                .filter(|(x, y)| x != y)
                .map(|(x, _)| &x.0)
                .collect();
        let meta: Vec<&String> =
            a.1.iter()
                .zip(&b.1)
                .filter(|(x, y)| x != y)
                .map(|(x, _)| &x.0)
                .collect();
        assert!(
            a.0.len() == b.0.len() && differ.is_empty() && a.1 == b.1,
            "{method}: a loaded checkpoint saves back differently: tensors {differ:?}, metadata {meta:?}"
        );
    }
}

#[test]
fn a_mask_over_its_budget_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut t, p) = one_epoch("rigl", false, tmp.path());
    let layer = t.model.sparsifiable_mut().into_iter().next().unwrap();
    let mut m = layer.mask().unwrap().mask().clone();
    let off = (0..m.len()).find(|&i| !m.get(i)).unwrap();
    m.set(off);
    layer.set_mask(m).unwrap();
    checkpoint::save(&mut t, &p).unwrap();
    let err = load_err(&p);
    assert!(err.contains("exact nonzero budget"), "{err}");
}

#[test]
fn a_mask_that_does_not_fit_the_weights_is_refused() {
    // GMP has no constant budget; an active weight marked inactive is still caught.
    let tmp = tempfile::tempdir().unwrap();
    let (mut t, p) = one_epoch("gmp", false, tmp.path());
    let layer = t.model.sparsifiable_mut().into_iter().next().unwrap();
    let mut m = layer.mask().unwrap().mask().clone();
    let on = m.iter_ones().next().unwrap();
    m.clear(on);
    layer.set_mask(m).unwrap();
    checkpoint::save(&mut t, &p).unwrap();
    let err = load_err(&p);
    assert!(
        err.contains(&format!(
            "nonzero weight or momentum at inactive position {on}"
        )),
        "{err}"
    );
}

#[test]
fn flipped_bytes_fail_the_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, p) = one_epoch("rigl", false, tmp.path());
    let good = std::fs::read(&p).unwrap();
    for at in [good.len() - 1, good.len() - 2000, good.len() / 2 + 7] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&p, &bad).unwrap();
        let err = load_err(&p);
        assert!(
            err.contains("do not match their checksum"),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn non_finite_weights_and_a_step_past_the_run_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut t, p) = one_epoch("set", false, tmp.path());
    let bias = t
        .model
        .params_mut()
        .into_iter()
        .find(|p| !p.sparsifiable)
        .unwrap();
    let mut v = bias.value.to_host().unwrap();
    v[0] = f32::NAN;
    bias.value = sparse_kernels::Tensor::cpu(bias.value.shape(), v).unwrap();
    checkpoint::save(&mut t, &p).unwrap();
    assert!(load_err(&p).contains("holds non-finite values"));
    let (mut t, p) = one_epoch("set", false, tmp.path());
    t.step = t.total_steps() + 8;
    t.epoch = 3;
    t.last_epoch = None;
    checkpoint::save(&mut t, &p).unwrap();
    let err = load_err(&p);
    assert!(err.contains("beyond the run's 16 steps"), "{err}");
}

/// Rewrites a checkpoint with `edit` applied to its tensors and metadata (no checksum).
fn rewrite_v1(p: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<u8>, Vec<usize>)>)) {
    let bytes = std::fs::read(p).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec()))
        .collect();
    let dtypes: HashMap<String, _> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype()))
        .collect();
    edit(&mut tensors);
    let mut meta = md.metadata().clone().unwrap();
    meta.insert("format".into(), FORMAT_V1.into());
    meta.remove("checksum");
    meta.remove("metrics");
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s)| {
            let dtype = *dtypes.get(n).unwrap_or(&safetensors::Dtype::F32);
            (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap())
        })
        .collect();
    std::fs::write(p, safetensors::serialize(views, &Some(meta)).unwrap()).unwrap();
}

#[test]
fn v1_checkpoints_load_and_unknown_tensors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, p) = one_epoch("rigl", false, tmp.path());
    rewrite_v1(&p, |_| {});
    let back = checkpoint::load(&p, None).unwrap();
    assert_eq!(back.step, t.step);
    rewrite_v1(&p, |ts| {
        ts.push(("param/ghost.weight".into(), vec![0; 8], vec![2]))
    });
    let err = load_err(&p);
    assert!(
        err.contains("`param/ghost.weight`, which this model does not have"),
        "{err}"
    );
    let (_, p) = one_epoch("rigl", false, tmp.path());
    rewrite_v1(&p, |ts| {
        let m = ts.iter_mut().find(|t| t.0.starts_with("mask/")).unwrap();
        m.1[0] = 2;
    });
    assert!(load_err(&p).contains("values other than 0 and 1"));
}

#[test]
fn method_state_that_does_not_fit_the_layers_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, p) = one_epoch("optg", false, tmp.path());
    rewrite_v1(&p, |ts| ts.retain(|t| t.0 != "algo/t/scores.1"));
    let err = load_err(&p);
    assert!(err.contains("scores layers"), "{err}");
    let (_, p) = one_epoch("dst-ee", false, tmp.path());
    rewrite_v1(&p, |ts| {
        let c = ts.iter_mut().find(|t| t.0 == "algo/c/activity.0").unwrap();
        c.1.truncate(c.1.len() - 4);
        c.2 = vec![c.1.len() / 4];
    });
    let err = load_err(&p);
    assert!(err.contains("activity of `conv1.weight`"), "{err}");
}

/// A checkpoint restores only into a trainer of its own run, and the refusal names the
/// settings that differ (here the convolution threshold, whose default depends on the CPU,
/// so a checkpoint moved to another machine is refused rather than resumed on other kernels).
#[test]
fn a_checkpoint_of_another_run_configuration_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, p) = one_epoch("set", false, tmp.path());
    let ck = checkpoint::Checkpoint::read(&p).unwrap();
    let other = TrainConfig {
        conv_sparse_below: ck.config().conv_sparse_below + 0.125,
        ..ck.config().clone()
    };
    let mut t = Trainer::new(other).unwrap();
    let err = format!("{:#}", ck.restore(&mut t).expect_err("restore must fail"));
    let want = format!(
        "conv_sparse_below {} vs {}",
        ck.config().conv_sparse_below,
        ck.config().conv_sparse_below + 0.125
    );
    assert!(
        err.contains("different run configuration") && err.contains(&want),
        "{err}"
    );
}
