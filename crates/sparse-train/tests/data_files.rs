//! The IDX / CIFAR / gzip readers on hand-made files: bad dimensions are errors (never
//! panics), sizes cannot overflow, and no reader reads past what its header implies.

use std::io::{Read, Write};

use sparse_train::data::files::{decoded, parse_cifar, parse_idx, MAX_CIFAR_RECORDS};

fn idx_images(n: u32, rows: u32, cols: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        b.extend(d.to_be_bytes());
    }
    b.extend(payload);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn parse(images: &[u8], labels: &[u8]) -> Result<sparse_train::data::Dataset, String> {
    let mut i = decoded(images).unwrap();
    let mut l = decoded(labels).unwrap();
    parse_idx(&mut i, &mut l, ("images", "labels")).map_err(|e| format!("{e:#}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_valid_pair_parses_plain_and_gzipped() {
    let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let (img, lab) = (idx_images(2, 3, 4, &pixels), idx_labels(&[7, 1]));
    for (i, l) in [(img.clone(), lab.clone()), (gzip(&img), gzip(&lab))] {
        let d = parse(&i, &l).unwrap();
        assert_eq!(d.chw, (1, 3, 4));
        assert_eq!(d.labels, vec![7, 1]);
        assert_eq!(d.images, pixels);
    }
}

#[test]
fn zero_rows_or_columns_are_errors() {
    for (r, c) in [(0, 28), (28, 0), (0, 0)] {
        let err = parse(&idx_images(1, r, c, &[]), &idx_labels(&[1])).unwrap_err();
        assert!(err.contains("rows and columns must be >= 1"), "{err}");
    }
}

#[test]
fn dimensions_whose_product_overflows_are_errors() {
    // 60000 x 2^31 x 2^31 on a 16-byte file: the product overflows 64 bits.
    let err = parse(&idx_images(60000, 1 << 31, 1 << 31, &[]), &idx_labels(&[])).unwrap_err();
    assert!(err.contains("more than 4294967296 bytes"), "{err}");
    // A product that fits but exceeds the limit.
    let err = parse(&idx_images(u32::MAX, 2, 2, &[]), &idx_labels(&[])).unwrap_err();
    assert!(err.contains("more than"), "{err}");
}

#[test]
fn size_mismatches_name_both_sizes() {
    let err = parse(&idx_images(2, 2, 2, &[0; 7]), &idx_labels(&[1, 2])).unwrap_err();
    assert!(
        err.contains("(24 bytes) but the file has 23 bytes"),
        "{err}"
    );
    let err = parse(&idx_images(2, 2, 2, &[0; 9]), &idx_labels(&[1, 2])).unwrap_err();
    assert!(err.contains("the file has more bytes"), "{err}");
    let err = parse(&idx_images(2, 2, 2, &[0; 8]), &idx_labels(&[1])).unwrap_err();
    assert!(err.contains("2 images but labels has 1 labels"), "{err}");
    let err = parse(&idx_images(1, 2, 2, &[0; 4]), &idx_labels(&[10])).unwrap_err();
    assert!(
        err.contains("label 10 at index 0 is outside 0..10"),
        "{err}"
    );
    let err = parse(&[0, 0, 8], &idx_labels(&[])).unwrap_err();
    assert!(err.contains("not an IDX image file"), "{err}");
}

/// Counts the bytes a reader hands out.
struct Counting<R>(R, u64);
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

#[test]
fn readers_stop_at_the_size_the_header_implies() {
    // An endless stream after a header for 10 images of 28x28: the reader stops one byte
    // past the 7,840-byte payload instead of reading (and allocating) forever.
    let header = idx_images(10, 28, 28, &[]);
    let mut endless = Counting((&header[..]).chain(std::io::repeat(0)), 0);
    let mut labels = &idx_labels(&[0; 10])[..];
    let err = parse_idx(&mut endless, &mut labels, ("images", "labels")).unwrap_err();
    assert!(format!("{err:#}").contains("more bytes"), "{err:#}");
    assert!(endless.1 <= 16 + 7840 + 1, "read {} bytes", endless.1);
    // The same for CIFAR, bounded by the largest real file.
    let mut endless = Counting(std::io::repeat(0), 0);
    let err = parse_cifar(&mut endless, 1, 10).unwrap_err();
    assert!(
        format!("{err:#}").contains("more than 60000 records"),
        "{err:#}"
    );
    assert_eq!(endless.1, MAX_CIFAR_RECORDS * 3073 + 1);
}

#[test]
fn a_gzip_bomb_is_refused_after_the_header_size() {
    // 64 MiB of zeros compress to ~64 KiB; the header claims 10 images of 28x28.
    let mut raw = idx_images(10, 28, 28, &[]);
    raw.resize(64 << 20, 0);
    let bomb = gzip(&raw);
    assert!(bomb.len() < 1 << 20);
    let inner = decoded(&bomb[..]).unwrap();
    let mut counted = Counting(inner, 0);
    let mut labels = &idx_labels(&[0; 10])[..];
    let err = parse_idx(&mut counted, &mut labels, ("images.gz", "labels")).unwrap_err();
    assert!(format!("{err:#}").contains("more bytes"), "{err:#}");
    assert!(counted.1 <= 16 + 7840 + 1, "inflated {} bytes", counted.1);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = gzip(&idx_images(1, 2, 2, &[1, 2, 3, 4]));
    let n = gz.len();
    gz[n / 2] ^= 0xff;
    gz.truncate(n - 3);
    assert!(parse(&gz, &idx_labels(&[1])).is_err());
}

#[test]
fn cifar_records_are_checked() {
    let mut rec = vec![3u8];
    rec.extend(vec![9u8; 3072]);
    let d = parse_cifar(&mut &rec[..], 1, 10).unwrap();
    assert_eq!((d.len(), d.labels[0]), (1, 3));
    let err = parse_cifar(&mut &rec[..100], 1, 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a whole number"), "{err}");
    rec[0] = 10;
    let err = parse_cifar(&mut &rec[..], 1, 10).unwrap_err().to_string();
    assert!(err.contains("label 10, outside 0..10"), "{err}");
}
