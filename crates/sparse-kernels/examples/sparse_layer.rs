//! A 90%-sparse linear layer fitted to a 90%-sparse linear target whose support it does not
//! know: SGD through its mask, and a RigL-style drop-and-grow every 20 steps (drop the
//! smallest |w|, grow the largest dense |dL/dw|) that moves the mask onto the target's
//! support, using only sparse-kernels (and sparse-core).
//!
//! `cargo run --release -p sparse-kernels --example sparse_layer`

use sparse_kernels::ops::linear::{linear_backward, linear_forward};
use sparse_kernels::ops::mask_update::{abs_scores, update_layer, GrowInit};
use sparse_kernels::ops::optim::{sgd_step, MaskPolicy, SgdConfig};
use sparse_kernels::sparse_core::{random_mask, stream_rng};
use sparse_kernels::{
    Device, DeviceMask, KernelError, SparseWeight, Tensor, WeightGrad, WeightRef,
};

fn data(shape: &[usize], seed: u64, dev: Device) -> Result<Tensor, KernelError> {
    use rand_core::RngCore;
    let mut rng = stream_rng(seed, 0);
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
        .collect();
    Tensor::from_vec(shape, v, dev)
}

fn main() -> Result<(), KernelError> {
    let dev = Device::Cpu;
    let (batch, inp, out) = (64, 256, 64);
    let nnz = out * inp / 10;
    let mut target = data(&[out, inp], 1, dev)?;
    let support = DeviceMask::new(random_mask(&[out, inp], nnz, &mut stream_rng(4, 0))?, dev)?;
    sparse_kernels::ops::mask_update::apply_mask(&mut target, &support)?;
    let mut w = data(&[out, inp], 2, dev)?;
    let mut mask = DeviceMask::new(random_mask(&[out, inp], nnz, &mut stream_rng(3, 0))?, dev)?;
    sparse_kernels::ops::mask_update::apply_mask(&mut w, &mask)?;
    let mut momentum = Tensor::zeros(&[out, inp], dev)?;
    let sgd = SgdConfig {
        lr: 0.2,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    for step in 0..400 {
        let x = data(&[batch, inp], 100 + step, dev)?;
        let y_true = linear_forward(&x, WeightRef::Dense(&target), None)?;
        let sw = SparseWeight::new(&w, &mask)?;
        let y = linear_forward(&x, WeightRef::Sparse(&sw), None)?;
        // Mean squared error and its gradient.
        let (yh, th) = (y.to_host()?, y_true.to_host()?);
        let n = yh.len() as f32;
        let loss: f32 = yh
            .iter()
            .zip(&th)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / n;
        let dy: Vec<f32> = yh.iter().zip(&th).map(|(a, b)| 2.0 * (a - b) / n).collect();
        let dy = Tensor::from_vec(y.shape(), dy, dev)?;
        let grow_step = step % 20 == 19;
        let wgrad = if grow_step {
            WeightGrad::Dense
        } else {
            WeightGrad::AtMask(&mask)
        };
        let g = linear_backward(&dy, &x, WeightRef::Sparse(&sw), false, false, wgrad)?;
        sgd_step(
            &mut w,
            &g.dw,
            &mut momentum,
            MaskPolicy::Weights(&mask),
            &sgd,
        )?;
        if grow_step {
            let (drop, grow) = (abs_scores(&w)?, abs_scores(&g.dw)?);
            let dg = update_layer(
                &mut w,
                &mut mask,
                &mut [&mut momentum],
                &drop,
                &grow,
                nnz / 10,
                GrowInit::Zero,
            )?;
            let on_support = mask.and(&support).map_err(KernelError::from)?.count_ones();
            println!(
                "step {step:>3}: loss {loss:.4}, drop-and-grow moved {:>4} weights; {} active, \
                 {on_support} of them on the target's support",
                dg.grown.len(),
                mask.count_ones()
            );
        }
    }
    Ok(())
}
