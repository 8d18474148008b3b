//! Element-wise ops on the CPU (rayon, chunks of [`GRAIN`] elements).

use rayon::prelude::*;

use super::ElementwiseOps;
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

const GRAIN: usize = 1 << 14;

fn map2(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
    let y: Vec<f32> = a
        .cpu_data()?
        .par_iter()
        .with_min_len(GRAIN)
        .zip(b.cpu_data()?)
        .map(|(&x, &y)| f(x, y))
        .collect();
    Tensor::from_vec(a.shape(), y, a.device())
}

/// `a = f(a, b)` element by element, in place.
fn zip_assign(a: &mut Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<()> {
    let b = b.cpu_data()?;
    a.cpu_data_mut()?
        .par_iter_mut()
        .with_min_len(GRAIN)
        .zip(b)
        .for_each(|(x, &y)| *x = f(*x, y));
    Ok(())
}

impl ElementwiseOps for CpuBackend {
    fn relu(x: &Tensor) -> Result<Tensor> {
        let y: Vec<f32> = x
            .cpu_data()?
            .par_iter()
            .with_min_len(GRAIN)
            .map(|&v| v.max(0.0))
            .collect();
        Tensor::from_vec(x.shape(), y, x.device())
    }

    fn relu_inplace(x: &mut Tensor) -> Result<()> {
        x.cpu_data_mut()?
            .par_iter_mut()
            .with_min_len(GRAIN)
            .for_each(|v| *v = v.max(0.0));
        Ok(())
    }

    fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        map2(dy, y, |d, y| if y > 0.0 { d } else { 0.0 })
    }

    fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        map2(a, b, |x, y| x + y)
    }

    fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
        zip_assign(a, b, |x, y| x + y)
    }

    fn add_relu_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
        zip_assign(a, b, |x, y| (x + y).max(0.0))
    }

    fn scale(x: &mut Tensor, s: f32) -> Result<()> {
        x.cpu_data_mut()?
            .par_iter_mut()
            .with_min_len(GRAIN)
            .for_each(|v| *v *= s);
        Ok(())
    }

    fn control_variate(dst: &mut Tensor, g: &Tensor, mu: &Tensor, c: f32) -> Result<()> {
        let (g, mu) = (g.cpu_data()?, mu.cpu_data()?);
        dst.cpu_data_mut()?
            .par_iter_mut()
            .with_min_len(GRAIN)
            .zip(g)
            .zip(mu)
            .for_each(|((d, &g), &m)| *d = g + c * (m - *d));
        Ok(())
    }
}
