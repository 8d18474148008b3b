//! Writes the seed corpus of the fuzz targets (`fuzz/README.md`):
//! `cargo run -p sparse-train --example fuzz_seeds -- fuzz/corpus`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{SafeTensors, TensorView};

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, side: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, side, side] {
        b.extend(d.to_be_bytes());
    }
    b.extend((0..n * side * side).map(|i| (i * 37) as u8));
    b
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend(n.to_be_bytes());
    b.extend((0..n).map(|i| (i % 10) as u8));
    b
}

/// `cut` byte placing the split after `images` (see `sparse_train::fuzzing::idx`).
fn pair(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let total = images.len() + labels.len();
    let cut = (images.len() * 255).div_ceil(total) as u8;
    let mut v = vec![cut];
    v.extend(images);
    v.extend(labels);
    assert_eq!(
        v[1..].len() * cut as usize / 255,
        images.len(),
        "seed split"
    );
    v
}

/// The checkpoint rewritten as v1 (no checksum), so mutations reach the content checks.
fn as_v1(bytes: &[u8]) -> Vec<u8> {
    let (_, md) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut meta: HashMap<String, String> = md.metadata().clone().unwrap();
    meta.insert("format".into(), sparse_train::checkpoint::FORMAT_V1.into());
    meta.remove("checksum");
    let views: Vec<(String, TensorView)> = st.tensors();
    safetensors::serialize(views, &Some(meta)).unwrap()
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let out = Path::new(&out);
    let put = |target: &str, name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let d = out.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), bytes)?;
        Ok(())
    };
    let (img, lab) = (idx_images(3, 5), idx_labels(3));
    put("idx", "valid", &pair(&img, &lab))?;
    put("idx", "valid-gz", &pair(&gz(&img), &gz(&lab)))?;
    put("idx", "truncated", &pair(&img[..img.len() - 4], &lab))?;
    let mut rec = vec![7u8];
    rec.extend((0..3072).map(|i| (i % 251) as u8));
    put("cifar", "cifar10-one-record", &[&[0u8][..], &rec].concat())?;
    put("cifar", "cifar10-gz", &[&[0u8][..], &gz(&rec)].concat())?;
    let mut rec100 = vec![3u8, 42];
    rec100.extend(&rec[1..]);
    put(
        "cifar",
        "cifar100-one-record",
        &[&[1u8][..], &rec100].concat(),
    )?;
    put("gzip", "idx-images", &gz(&idx_images(1, 3)))?;
    put(
        "gzip",
        "bomb-header",
        &gz(&[&idx_images(1, 3)[..16], &[0u8; 4096][..]].concat()),
    )?;
    let tmp = tempfile::tempdir()?;
    let ck = tmp.path().join("seed.safetensors");
    sparse_train::fuzzing::seed_checkpoint(&ck)?;
    let bytes = std::fs::read(&ck)?;
    put("checkpoint", "v2", &bytes)?;
    put("checkpoint", "v1", &as_v1(&bytes))?;
    eprintln!("seed corpus written to {}", out.display());
    Ok(())
}
