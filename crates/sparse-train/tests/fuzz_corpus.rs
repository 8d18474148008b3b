//! Replays every saved fuzz input (the seed corpus and every crash found so far, under
//! `fuzz/corpus/<target>` and `fuzz/regressions/<target>`) through the fuzz targets' entry
//! points, so CI checks each of them on every run without a nightly toolchain.

use std::path::{Path, PathBuf};

use sparse_train::fuzzing;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        if let Ok(rd) = std::fs::read_dir(root.join(kind).join(target)) {
            out.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = inputs(target);
    for f in &files {
        eprintln!("{target}: {}", f.display());
        run(&std::fs::read(f).unwrap());
    }
    files.len()
}

#[test]
fn idx_inputs_never_panic() {
    assert!(replay("idx", fuzzing::idx) >= 3);
}

#[test]
fn cifar_inputs_never_panic() {
    assert!(replay("cifar", fuzzing::cifar) >= 3);
}

#[test]
fn gzip_inputs_never_panic() {
    assert!(replay("gzip", fuzzing::gzip) >= 2);
}

#[test]
fn checkpoint_inputs_never_panic_and_the_seeds_restore() {
    assert!(replay("checkpoint", fuzzing::checkpoint) >= 2);
    // The seeds are real checkpoints of the target's run, so mutations start from a
    // checkpoint that passes every check.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/checkpoint");
    let mut t = sparse_train::trainer::Trainer::new(fuzzing::checkpoint_config()).unwrap();
    for seed in ["v1", "v2"] {
        let ck = sparse_train::checkpoint::Checkpoint::from_bytes(
            std::fs::read(root.join(seed)).unwrap(),
        )
        .unwrap();
        ck.restore(&mut t)
            .unwrap_or_else(|e| panic!("{seed}: {e:#}"));
    }
}

#[test]
fn the_valid_seeds_parse() {
    use sparse_train::data::files::{decoded, parse_cifar, parse_idx};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for name in ["valid", "valid-gz"] {
        let b = std::fs::read(root.join("idx").join(name)).unwrap();
        let at = (b.len() - 1) * b[0] as usize / 255;
        let (i, l) = b[1..].split_at(at);
        let d = parse_idx(
            &mut decoded(i).unwrap(),
            &mut decoded(l).unwrap(),
            ("i", "l"),
        )
        .unwrap();
        assert_eq!(d.len(), 3, "{name}");
    }
    for (name, lb, classes) in [
        ("cifar10-one-record", 1, 10),
        ("cifar10-gz", 1, 10),
        ("cifar100-one-record", 2, 100),
    ] {
        let b = std::fs::read(root.join("cifar").join(name)).unwrap();
        let d = parse_cifar(&mut decoded(&b[1..]).unwrap(), lb, classes).unwrap();
        assert_eq!(d.len(), 1, "{name}");
    }
}
