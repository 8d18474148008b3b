//! Shared helpers for the op tests: seeded data on a device, host views and naive f64
//! references. Every op test is written once as `fn name(dev: &Device) -> TestResult` and
//! instantiated per compiled device with `sparse_kernels::test_device!`.
#![allow(dead_code)]

use rand_core::RngCore;
use sparse_kernels::sparse_core::{random_mask, stream_rng, Mask};
use sparse_kernels::{Device, DeviceMask, IndexTensor, Tensor};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Host copies (the tests' view of device data).
pub trait Host {
    fn h(&self) -> Vec<f32>;
}

impl Host for Tensor {
    fn h(&self) -> Vec<f32> {
        self.to_host().expect("host copy")
    }
}

pub fn randn(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let mut rng = stream_rng(seed, 77);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            // Sum of 4 uniforms: cheap, roughly normal, deterministic.
            (0..4)
                .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32)
                .sum::<f32>()
                - 2.0
        })
        .collect();
    Tensor::from_vec(shape, v, *dev).unwrap()
}

/// A tensor from host values on `dev`.
pub fn t(shape: &[usize], v: Vec<f32>, dev: &Device) -> Tensor {
    Tensor::from_vec(shape, v, *dev).unwrap()
}

/// Labels on `dev`.
pub fn labels(v: &[u32], dev: &Device) -> IndexTensor {
    IndexTensor::from_vec(&[v.len()], v.to_vec(), *dev).unwrap()
}

/// A random mask with the exact count for `sparsity`, placed on `dev`.
pub fn mask_at(shape: &[usize], sparsity: f64, seed: u64, dev: &Device) -> DeviceMask {
    let n: usize = shape.iter().product();
    let nnz = n - (sparsity * n as f64).round() as usize;
    DeviceMask::new(
        random_mask(shape, nnz, &mut stream_rng(seed, 5)).unwrap(),
        *dev,
    )
    .unwrap()
}

/// `w ⊙ m` on `w`'s device.
pub fn masked(w: &Tensor, m: &Mask) -> Tensor {
    let mut v = w.h();
    m.apply(&mut v).unwrap();
    Tensor::from_vec(w.shape(), v, w.device()).unwrap()
}

/// Asserts |a - b| <= tol · (1 + |b|) element-wise.
pub fn assert_close(a: impl AsRef<[f32]>, b: &[f64], tol: f64, what: &str) {
    let a = a.as_ref();
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x as f64 - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: index {i}: got {x}, expected {y}"
        );
    }
}

pub fn to64(v: impl AsRef<[f32]>) -> Vec<f64> {
    v.as_ref().iter().map(|&x| x as f64).collect()
}

/// Naive f64 `op(A)·op(B)`.
pub fn gemm_ref(
    a: impl AsRef<[f32]>,
    ta: bool,
    b: impl AsRef<[f32]>,
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let (a, b) = (a.as_ref(), b.as_ref());
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av as f64 * bv as f64;
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// Naive f64 direct convolution (NCHW).
pub fn conv_ref(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> (Vec<f64>, [usize; 4]) {
    let (&[b, c, h, wd], &[o, _, kh, kw]) = (x.shape(), w.shape()) else {
        panic!()
    };
    let oh = (h + 2 * pad - kh) / stride + 1;
    let ow = (wd + 2 * pad - kw) / stride + 1;
    let (xs, ws) = (x.h(), w.h());
    let mut y = vec![0f64; b * o * oh * ow];
    for bi in 0..b {
        for oc in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = 0f64;
                    for ci in 0..c {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let ih = (i * stride + ki) as isize - pad as isize;
                                let iw = (j * stride + kj) as isize - pad as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd {
                                    s += xs[((bi * c + ci) * h + ih as usize) * wd + iw as usize]
                                        as f64
                                        * ws[((oc * c + ci) * kh + ki) * kw + kj] as f64;
                                }
                            }
                        }
                    }
                    y[((bi * o + oc) * oh + i) * ow + j] = s;
                }
            }
        }
    }
    (y, [b, o, oh, ow])
}

/// `Σ r ⊙ y` in f64: the scalar loss whose gradient w.r.t. `y` is `r`.
pub fn dot64(r: impl AsRef<[f32]>, y: impl AsRef<[f32]>) -> f64 {
    r.as_ref()
        .iter()
        .zip(y.as_ref())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Central finite difference of `f` at a few coordinates of `x` (perturbed copies on `x`'s
/// device).
pub fn finite_diff(x: &Tensor, coords: &[usize], h: f32, f: impl Fn(&Tensor) -> f64) -> Vec<f64> {
    let base = x.h();
    let at = |i: usize, d: f32| {
        let mut v = base.clone();
        v[i] += d;
        Tensor::from_vec(x.shape(), v, x.device()).unwrap()
    };
    coords
        .iter()
        .map(|&i| (f(&at(i, h)) - f(&at(i, -h))) / (2.0 * h as f64))
        .collect()
}

pub fn coords(n: usize, count: usize) -> Vec<usize> {
    (0..count.min(n)).map(|i| (i * 7919 + 13) % n).collect()
}
