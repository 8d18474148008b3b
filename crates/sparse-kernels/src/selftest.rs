//! The op suite `sparse-train selftest` runs: every op family on a device against the CPU
//! backend, from identical seeded inputs. This is how a user checks a new GPU.
//!
//! Each case is one function of the device that returns its outputs as host vectors; it
//! runs once on the CPU and once on the device under test. The error of an output is
//! normwise: `max |device - cpu| / max |cpu|`. Mask-valued results (selection, thresholds,
//! drop-and-grow) must match exactly.

use sparse_core::{random_mask, standard_normal, stream_rng, Order};

use crate::device::Device;
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::ops::sparse::{SparseWeight, WeightGrad, WeightRef};
use crate::ops::{
    activation as act, conv, gemm, linear, loss, mask_update as mu, norm, optim, pool, sparse,
};
use crate::tensor::{IndexTensor, Tensor};

/// The result of one op on the device under test.
#[derive(Debug, Clone)]
pub struct OpCheck {
    /// The op (and variant).
    pub op: &'static str,
    /// Normwise relative error against the CPU (0 for exact matches).
    pub max_rel_err: f64,
    /// The tolerance it is held to.
    pub tolerance: f64,
    /// Whether it ran and is within tolerance.
    pub passed: bool,
    /// The error, when the op failed to run.
    pub error: Option<String>,
}

type Outputs = Result<Vec<Vec<f32>>>;
type Case = (&'static str, f64, fn(Device) -> Outputs);

/// Tolerance of f32 results whose summation order differs between backends.
const F32: f64 = 1e-5;
/// Exact.
const EXACT: f64 = 0.0;

fn rn(shape: &[usize], seed: u64, dev: Device) -> Result<Tensor> {
    let mut rng = stream_rng(seed, 91);
    let n = shape.iter().product();
    Tensor::from_vec(
        shape,
        (0..n).map(|_| standard_normal(&mut rng)).collect(),
        dev,
    )
}

fn mask(shape: &[usize], density: f64, seed: u64, dev: Device) -> Result<DeviceMask> {
    let n: usize = shape.iter().product();
    let m = random_mask(
        shape,
        (density * n as f64) as usize,
        &mut stream_rng(seed, 3),
    )?;
    DeviceMask::new(m, dev)
}

fn h(t: &Tensor) -> Result<Vec<f32>> {
    t.to_host()
}

fn bits(m: &sparse_core::Mask) -> Vec<f32> {
    m.to_f32()
}

const CASES: &[Case] = &[
    ("relu / relu_backward", EXACT, |d| {
        let x = rn(&[4, 300], 1, d)?;
        let y = act::relu(&x)?;
        let dx = act::relu_backward(&rn(&[4, 300], 2, d)?, &y)?;
        Ok(vec![h(&y)?, h(&dx)?])
    }),
    ("add / scale / control_variate", F32, |d| {
        let mut a = act::add(&rn(&[1000], 1, d)?, &rn(&[1000], 2, d)?)?;
        act::scale(&mut a, 0.3)?;
        act::control_variate(&mut a, &rn(&[1000], 3, d)?, &rn(&[1000], 4, d)?, 0.5)?;
        Ok(vec![h(&a)?])
    }),
    ("batch_norm train + running stats", F32, |d| {
        let x = rn(&[8, 6, 5, 5], 1, d)?;
        let (g, b) = (rn(&[6], 2, d)?, rn(&[6], 3, d)?);
        let (mut rm, mut rv) = (rn(&[6], 4, d)?, Tensor::full(&[6], 1.0, d)?);
        let (y, c) = norm::batch_norm_train(&x, &g, &b, &mut rm, &mut rv, Default::default())?;
        Ok(vec![h(&y)?, h(&c.xhat)?, h(&c.inv_std)?, h(&rm)?, h(&rv)?])
    }),
    ("batch_norm eval", F32, |d| {
        let x = rn(&[8, 6, 5, 5], 1, d)?;
        let rv = act::relu(&rn(&[6], 5, d)?)?;
        let y = norm::batch_norm_eval(
            &x,
            &rn(&[6], 2, d)?,
            &rn(&[6], 3, d)?,
            &rn(&[6], 4, d)?,
            &rv,
            1e-5,
        )?;
        Ok(vec![h(&y)?])
    }),
    ("batch_norm backward", 1e-4, |d| {
        let x = rn(&[8, 6, 5, 5], 1, d)?;
        let (g, b) = (rn(&[6], 2, d)?, rn(&[6], 3, d)?);
        let (mut rm, mut rv) = (Tensor::zeros(&[6], d)?, Tensor::full(&[6], 1.0, d)?);
        let (_, c) = norm::batch_norm_train(&x, &g, &b, &mut rm, &mut rv, Default::default())?;
        let gr = norm::batch_norm_backward(&rn(&[8, 6, 5, 5], 6, d)?, &c, &g)?;
        Ok(vec![h(&gr.dx)?, h(&gr.dgamma)?, h(&gr.dbeta)?])
    }),
    ("batch_norm+relu fused", 1e-4, |d| {
        let x = rn(&[8, 6, 5, 5], 1, d)?;
        let (g, b) = (rn(&[6], 2, d)?, rn(&[6], 3, d)?);
        let (mut rm, mut rv) = (Tensor::zeros(&[6], d)?, Tensor::full(&[6], 1.0, d)?);
        let p = norm::BatchNormParams::with_relu();
        let (y, c) = norm::batch_norm_train(&x, &g, &b, &mut rm, &mut rv, p)?;
        let ye = norm::batch_norm_relu_eval(&x, &g, &b, &rm, &rv, 1e-5)?;
        let gr = norm::batch_norm_backward(&rn(&[8, 6, 5, 5], 6, d)?, &c, &g)?;
        Ok(vec![
            h(&y)?,
            h(&ye)?,
            h(&gr.dx)?,
            h(&gr.dgamma)?,
            h(&gr.dbeta)?,
        ])
    }),
    ("add_relu_assign", EXACT, |d| {
        let mut a = rn(&[1000], 1, d)?;
        act::add_relu_assign(&mut a, &rn(&[1000], 2, d)?)?;
        Ok(vec![h(&a)?])
    }),
    ("max_pool2x2 forward / backward", EXACT, |d| {
        let x = rn(&[2, 3, 7, 8], 1, d)?;
        let (y, arg) = pool::max_pool2x2(&x)?;
        let dx = pool::max_pool2x2_backward(&rn(y.shape(), 2, d)?, &arg, x.shape())?;
        let arg: Vec<f32> = arg.to_host()?.iter().map(|&a| a as f32).collect();
        Ok(vec![h(&y)?, arg, h(&dx)?])
    }),
    ("avg_pool / global_avg_pool", F32, |d| {
        let x = rn(&[2, 3, 8, 8], 1, d)?;
        let y = pool::avg_pool(&x, 2)?;
        let dx = pool::avg_pool_backward(&rn(y.shape(), 2, d)?, 2, x.shape())?;
        let g = pool::global_avg_pool(&x)?;
        let dg = pool::global_avg_pool_backward(&rn(g.shape(), 3, d)?, x.shape())?;
        Ok(vec![h(&y)?, h(&dx)?, h(&g)?, h(&dg)?])
    }),
    ("softmax_cross_entropy (smoothing 0.1) / top-k", F32, |d| {
        let z = rn(&[37, 10], 1, d)?;
        let y = IndexTensor::from_vec(&[37], (0..37).map(|i| (i * 7 % 10) as u32).collect(), d)?;
        let ce = loss::softmax_cross_entropy(&z, &y, 0.1)?;
        let top = [1, 5].map(|k| loss::topk_correct(&z, &y, k).map(|c| c as f32));
        Ok(vec![
            vec![ce.loss as f32],
            h(&ce.dlogits)?,
            vec![top[0].clone()?, top[1].clone()?],
        ])
    }),
    ("sgd_step (momentum, Nesterov, wd, masks)", F32, |d| {
        let m = mask(&[50, 20], 0.3, 1, d)?;
        let cfg = optim::SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        };
        let mut out = Vec::new();
        for policy in 0..3 {
            let (mut w, mut b) = (rn(&[50, 20], 2, d)?, rn(&[50, 20], 3, d)?);
            let p = match policy {
                0 => optim::MaskPolicy::None,
                1 => optim::MaskPolicy::Weights(&m),
                _ => optim::MaskPolicy::Gradient(&m),
            };
            optim::sgd_step(&mut w, &rn(&[50, 20], 4, d)?, &mut b, p, &cfg)?;
            out.extend([h(&w)?, h(&b)?]);
        }
        let (mut s, mut b) = (rn(&[100], 5, d)?, rn(&[100], 6, d)?);
        optim::score_step(
            &mut s,
            &mut b,
            &rn(&[100], 7, d)?,
            &rn(&[100], 8, d)?,
            0.9,
            0.1,
        )?;
        out.extend([h(&s)?, h(&b)?]);
        Ok(out)
    }),
    ("gemm (all transposes, alpha, beta)", F32, |d| {
        let mut out = Vec::new();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rn(if ta { &[40, 33] } else { &[33, 40] }, 1, d)?;
            let b = rn(if tb { &[27, 40] } else { &[40, 27] }, 2, d)?;
            let mut c = rn(&[33, 27], 3, d)?;
            gemm::gemm(0.7, &a, ta, &b, tb, 0.3, &mut c)?;
            out.push(h(&c)?);
        }
        Ok(out)
    }),
    ("masked_matmul / sddmm_masked / spmm / sddmm", F32, |d| {
        let w = rn(&[30, 40], 1, d)?;
        let m = mask(&[30, 40], 0.2, 2, d)?;
        let a = sparse::masked_matmul(&w, &m, &rn(&[40, 9], 3, d)?)?;
        let b = sparse::masked_matmul_t(&w, &m, &rn(&[30, 9], 4, d)?)?;
        let g = sparse::sddmm_masked(&m, &rn(&[30, 9], 5, d)?, &rn(&[40, 9], 6, d)?)?;
        let sw = SparseWeight::new(&w, &m)?;
        let s = sparse::spmm(sw.csr(), &rn(&[40, 9], 7, d)?)?;
        let sd = sparse::sddmm(sw.csr(), &rn(&[30, 9], 8, d)?, &rn(&[40, 9], 9, d)?)?;
        Ok(vec![h(&a)?, h(&b)?, h(&g)?, h(&s)?, h(&sd)?])
    }),
    ("sparse weight: spmm, spmmT, refresh, sddmm", F32, |d| {
        let w = rn(&[64, 100], 1, d)?;
        let m = mask(&[64, 100], 0.1, 2, d)?;
        let mut sw = SparseWeight::new(&w, &m)?;
        let mut out = Vec::new();
        for n in [260, 9] {
            let mut y = Tensor::zeros(&[64, n], d)?;
            sparse::sparse_weight_mm_into(1.0, &sw, false, &rn(&[100, n], 3, d)?, 0.0, &mut y)?;
            let mut yt = rn(&[100, n], 4, d)?;
            sparse::sparse_weight_mm_into(0.5, &sw, true, &rn(&[64, n], 5, d)?, 2.0, &mut yt)?;
            out.extend([h(&y)?, h(&yt)?]);
        }
        sw.refresh(&rn(&[64, 100], 6, d)?)?;
        let mut y = Tensor::zeros(&[64, 32], d)?;
        sparse::sparse_weight_mm_into(1.0, &sw, false, &rn(&[100, 32], 7, d)?, 0.0, &mut y)?;
        let g =
            sparse::sparse_weight_sddmm(&sw, &rn(&[64, 4100], 8, d)?, &rn(&[100, 4100], 9, d)?)?;
        out.extend([h(&y)?, sw.values()?, sw.values_t()?, h(&g)?]);
        Ok(out)
    }),
    ("sparse conv2d / linear: fwd + dx + at-mask dW", 1e-4, |d| {
        let mut out = Vec::new();
        let x = rn(&[3, 8, 9, 9], 1, d)?;
        let w = rn(&[12, 8, 3, 3], 2, d)?;
        let m = mask(w.shape(), 0.15, 3, d)?;
        let sw = SparseWeight::new(&w, &m)?;
        let prm = conv::Conv2dParams::new(1, 1);
        let y = conv::conv2d_forward(&x, WeightRef::Sparse(&sw), prm)?;
        let dy = rn(y.shape(), 4, d)?;
        let g = conv::conv2d_backward(
            &dy,
            &x,
            WeightRef::Sparse(&sw),
            prm,
            true,
            WeightGrad::AtMask(&m),
        )?;
        out.extend([h(&y)?, h(g.dx.as_ref().expect("dx"))?, h(&g.dw)?]);
        let (x, w) = (rn(&[16, 50], 5, d)?, rn(&[20, 50], 6, d)?);
        let m = mask(&[20, 50], 0.1, 7, d)?;
        let sw = SparseWeight::new(&w, &m)?;
        let y = linear::linear_forward(&x, WeightRef::Sparse(&sw), None)?;
        let dy = rn(y.shape(), 8, d)?;
        let g = linear::linear_backward(
            &dy,
            &x,
            WeightRef::Sparse(&sw),
            false,
            true,
            WeightGrad::AtMask(&m),
        )?;
        out.extend([h(&y)?, h(g.dx.as_ref().expect("dx"))?, h(&g.dw)?]);
        Ok(out)
    }),
    ("linear forward / backward (bias, masked)", F32, |d| {
        let (x, w, bias) = (rn(&[16, 50], 1, d)?, rn(&[20, 50], 2, d)?, rn(&[20], 3, d)?);
        let m = mask(&[20, 50], 0.1, 4, d)?;
        let mut out = Vec::new();
        for wr in [WeightRef::Dense(&w), WeightRef::Masked(&w, &m)] {
            let y = linear::linear_forward(&x, wr, Some(&bias))?;
            let dy = rn(y.shape(), 5, d)?;
            let g = linear::linear_backward(&dy, &x, wr, true, true, WeightGrad::AtMask(&m))?;
            let g2 = linear::linear_backward(&dy, &x, wr, true, false, WeightGrad::Dense)?;
            out.extend([h(&y)?, h(g.dx.as_ref().expect("dx"))?, h(&g.dw)?]);
            out.extend([h(g.db.as_ref().expect("db"))?, h(&g2.dw)?]);
        }
        Ok(out)
    }),
    (
        "conv2d 3x3 s1 p1 / 3x3 s2 p1 / 1x1, fwd + dx + dW",
        1e-4,
        |d| {
            let mut out = Vec::new();
            for (i, (k, s, p)) in [(3, 1, 1), (3, 2, 1), (1, 1, 0)].into_iter().enumerate() {
                let seed = 10 * i as u64;
                let x = rn(&[3, 4, 9, 9], seed + 1, d)?;
                let w = rn(&[6, 4, k, k], seed + 2, d)?;
                let m = mask(w.shape(), 0.3, seed + 3, d)?;
                let prm = conv::Conv2dParams::new(s, p);
                for wr in [WeightRef::Dense(&w), WeightRef::Masked(&w, &m)] {
                    let y = conv::conv2d_forward(&x, wr, prm)?;
                    let dy = rn(y.shape(), seed + 4, d)?;
                    let g = conv::conv2d_backward(&dy, &x, wr, prm, true, WeightGrad::Dense)?;
                    let gm =
                        conv::conv2d_backward(&dy, &x, wr, prm, false, WeightGrad::AtMask(&m))?;
                    out.extend([
                        h(&y)?,
                        h(g.dx.as_ref().expect("dx"))?,
                        h(&g.dw)?,
                        h(&gm.dw)?,
                    ]);
                }
            }
            Ok(out)
        },
    ),
    ("scores / thresholds / counters", F32, |d| {
        let (x, y) = (rn(&[700], 1, d)?, rn(&[700], 2, d)?);
        let m = mask(&[700], 0.4, 3, d)?;
        let mut c = IndexTensor::zeros(&[700], d)?;
        mu::accumulate_activity(&mut c, &m)?;
        mu::accumulate_activity(&mut c, &m)?;
        let bonus = mu::Exploration {
            c: 1e-3,
            eps: 1.0,
            ln_t: 5.0,
            normalize: true,
        };
        let e = mu::exploration_scores(&x, &c, &bonus)?;
        let mut z = x.clone();
        mu::apply_mask(&mut z, &m)?;
        let nnz = mu::count_nonzero(&z)? as f32;
        let ge = bits(&mu::at_least(&x, 0.5)?);
        let nn = bits(&mu::nonneg_within(&x, &m)?);
        let c: Vec<f32> = c.to_host()?.iter().map(|&v| v as f32).collect();
        let ap = mu::abs_product(&x, &y)?;
        Ok(vec![
            h(&mu::abs_scores(&x)?)?,
            h(&ap)?,
            h(&e)?,
            h(&z)?,
            vec![nnz],
            ge,
            nn,
            c,
        ])
    }),
    ("radix select 300k ties / global / drop-grow", EXACT, |d| {
        // Few distinct values, so the index tie rule decides most of the selection.
        let q: Vec<f32> = h(&rn(&[300_000], 1, d)?)?
            .iter()
            .map(|v| (v * 4.0).round() / 4.0)
            .collect();
        let s = Tensor::from_vec(&[300_000], q.clone(), d)?;
        let mut out = Vec::new();
        for (k, o) in [(123_457, Order::Largest), (30_001, Order::Smallest)] {
            out.push(bits(&mu::select_mask(&s, k, None, o)?));
        }
        let s2 = Tensor::from_vec(&[500, 600], q, d)?;
        let c = mask(&[300_000], 0.3, 2, d)?;
        for m in mu::select_global(&[&s, &s2], &[Some(c.mask()), None], 77_777, Order::Largest)? {
            out.push(bits(&m));
        }
        let mut m = mask(&[500, 600], 0.1, 3, d)?;
        let mut w = rn(&[500, 600], 4, d)?;
        let drop = rn(&[500, 600], 5, d)?;
        let dg = mu::update_layer(
            &mut w,
            &mut m,
            &mut [],
            &drop,
            &s2,
            9_999,
            mu::GrowInit::Zero,
        )?;
        out.extend([
            bits(m.mask()),
            h(&w)?,
            vec![dg.grown.len() as f32, mu::mask_nonzero(&m)? as f32],
        ]);
        Ok(out)
    }),
    ("select (top-k, ties) / drop-and-grow scatter", EXACT, |d| {
        // Quantised scores: many ties, resolved by the spec's index rule on every device.
        let q: Vec<f32> = h(&rn(&[40, 25], 1, d)?)?
            .iter()
            .map(|v| (v * 2.0).round())
            .collect();
        let s = Tensor::from_vec(&[40, 25], q, d)?;
        let top = bits(&mu::select_mask(&s, 137, None, Order::Largest)?);
        let mut m = mask(&[40, 25], 0.2, 2, d)?;
        let mut w = rn(&[40, 25], 3, d)?;
        mu::apply_mask(&mut w, &m)?;
        let mut b = rn(&[40, 25], 4, d)?;
        let grow = rn(&[40, 25], 5, d)?;
        let init = mu::GrowInit::Normal {
            std: 0.1,
            seed: 7,
            stream: 9,
        };
        let dg = mu::update_layer(&mut w, &mut m, &mut [&mut b], &s, &grow, 60, init)?;
        Ok(vec![
            top,
            bits(m.mask()),
            h(&w)?,
            h(&b)?,
            vec![dg.grown.len() as f32],
        ])
    }),
];

fn rel_err(cpu: &[Vec<f32>], dev: &[Vec<f32>]) -> f64 {
    if cpu.len() != dev.len() {
        return f64::INFINITY;
    }
    let mut worst = 0f64;
    for (a, b) in cpu.iter().zip(dev) {
        if a.len() != b.len() {
            return f64::INFINITY;
        }
        let scale = a
            .iter()
            .fold(0f64, |m, &v| m.max(v.abs() as f64))
            .max(1e-30);
        for (&x, &y) in a.iter().zip(b) {
            let e = (x as f64 - y as f64).abs() / scale;
            if e.is_nan() || (x.is_nan() != y.is_nan()) {
                return f64::INFINITY;
            }
            worst = worst.max(e);
        }
    }
    worst
}

/// Runs every op on `device` and on the CPU, in order.
pub fn run(device: Device) -> Vec<OpCheck> {
    CASES
        .iter()
        .map(|&(op, tolerance, f)| {
            let res = f(Device::Cpu).and_then(|cpu| f(device).map(|dev| rel_err(&cpu, &dev)));
            match res {
                Ok(e) => OpCheck {
                    op,
                    max_rel_err: e,
                    tolerance,
                    passed: e <= tolerance,
                    error: None,
                },
                Err(err) => OpCheck {
                    op,
                    max_rel_err: f64::INFINITY,
                    tolerance,
                    passed: false,
                    error: Some(err.to_string()),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_passes_on_the_emulated_device_and_the_check_can_fail() {
        let dev = Device::cuda_emulated().expect("emulated device");
        for c in run(dev) {
            assert!(c.passed, "{c:?}");
        }
        // The comparison itself: a perturbed output is caught, NaN is never a pass.
        assert!(rel_err(&[vec![1.0, 2.0]], &[vec![1.0, 2.001]]) > 1e-4);
        assert_eq!(rel_err(&[vec![1.0]], &[vec![f32::NAN]]), f64::INFINITY);
        assert_eq!(rel_err(&[vec![1.0]], &[vec![1.0, 2.0]]), f64::INFINITY);
    }
}
