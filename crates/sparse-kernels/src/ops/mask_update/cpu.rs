//! Mask-update support on the CPU: selection is sparse-core's (the reference every device
//! must match bit for bit).

use rayon::prelude::*;
use sparse_core::{
    drop_and_grow, select, standard_normal, stream_rng, Candidates, DropGrow, Mask, Order,
    Parallelism,
};

use super::{Exploration, GrowInit, MaskUpdateOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::tensor::{IndexTensor, Tensor};

const GRAIN: usize = 1 << 14;

impl MaskUpdateOps for CpuBackend {
    fn abs(x: &Tensor) -> Result<Tensor> {
        let v: Vec<f32> = x
            .cpu_data()?
            .par_iter()
            .with_min_len(GRAIN)
            .map(|v| v.abs())
            .collect();
        Tensor::from_vec(x.shape(), v, x.device())
    }

    fn abs_product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let v: Vec<f32> = a
            .cpu_data()?
            .par_iter()
            .with_min_len(GRAIN)
            .zip(b.cpu_data()?.par_iter())
            .map(|(x, y)| (x * y).abs())
            .collect();
        Tensor::from_vec(a.shape(), v, a.device())
    }

    fn count_nonzero(x: &Tensor) -> Result<usize> {
        Ok(x.cpu_data()?
            .par_iter()
            .with_min_len(GRAIN)
            .filter(|&&v| v != 0.0)
            .count())
    }

    fn apply_mask(x: &mut Tensor, mask: &DeviceMask) -> Result<()> {
        Ok(mask.mask().apply(x.cpu_data_mut()?)?)
    }

    fn zero_at(x: &mut Tensor, at: &Mask) -> Result<()> {
        let v = x.cpu_data_mut()?;
        for i in at.iter_ones() {
            v[i] = 0.0;
        }
        Ok(())
    }

    fn nonneg_within(x: &Tensor, within: &Mask) -> Result<Mask> {
        let v = x.cpu_data()?;
        let mut m = Mask::zeros(within.shape());
        for i in within.iter_ones() {
            if v[i] >= 0.0 {
                m.set(i);
            }
        }
        Ok(m)
    }

    fn select(scores: &Tensor, k: usize, candidates: Option<&Mask>, order: Order) -> Result<Mask> {
        let cand = match candidates {
            Some(m) => Candidates::Set(m),
            None => Candidates::All,
        };
        Ok(select(
            scores.shape(),
            scores.cpu_data()?,
            k,
            cand,
            order,
            Parallelism::Auto,
        )?)
    }

    fn select_global(
        scores: &[&Tensor],
        candidates: &[Option<&Mask>],
        k: usize,
        order: Order,
    ) -> Result<Vec<Mask>> {
        // Concatenate, select once, split back.
        let total: usize = scores.iter().map(|s| s.numel()).sum();
        let mut all = Vec::with_capacity(total);
        let mut cmask = Mask::zeros(&[total]);
        let mut off = 0;
        for (s, c) in scores.iter().zip(candidates) {
            all.extend_from_slice(s.cpu_data()?);
            match c {
                Some(m) => m.iter_ones().for_each(|i| cmask.set(off + i)),
                None => (off..off + s.numel()).for_each(|i| cmask.set(i)),
            }
            off += s.numel();
        }
        let sel = select(
            &[total],
            &all,
            k,
            Candidates::Set(&cmask),
            order,
            Parallelism::Auto,
        )?;
        let mut out = Vec::with_capacity(scores.len());
        let mut off = 0;
        for s in scores {
            let mut m = Mask::zeros(&[s.numel()]);
            sel.iter_ones_in(off, off + s.numel())
                .for_each(|i| m.set(i - off));
            out.push(m.reshape(s.shape())?);
            off += s.numel();
        }
        Ok(out)
    }

    fn min_at(x: &Tensor, at: &Mask) -> Result<f32> {
        let v = x.cpu_data()?;
        Ok(at.iter_ones().map(|i| v[i]).fold(f32::INFINITY, f32::min))
    }

    fn at_least(x: &Tensor, theta: f32) -> Result<Mask> {
        let keep: Vec<bool> = x.cpu_data()?.iter().map(|&v| v >= theta).collect();
        Ok(Mask::from_bools(x.shape(), &keep)?)
    }

    fn drop_and_grow(mask: &Mask, drop: &Tensor, grow: &Tensor, n: usize) -> Result<DropGrow> {
        Ok(drop_and_grow(mask, drop.cpu_data()?, grow.cpu_data()?, n)?)
    }

    fn apply_drop_grow(
        w: &mut Tensor,
        state: &mut [&mut Tensor],
        dg: &DropGrow,
        init: GrowInit,
    ) -> Result<()> {
        let wv = w.cpu_data_mut()?;
        for &i in &dg.dropped {
            wv[i as usize] = 0.0;
        }
        match init {
            GrowInit::Zero => dg.grown.iter().for_each(|&i| wv[i as usize] = 0.0),
            GrowInit::Normal { std, seed, stream } => {
                let mut rng = stream_rng(seed, stream);
                for &i in &dg.grown {
                    wv[i as usize] = std * standard_normal(&mut rng);
                }
            }
        }
        for s in state.iter_mut() {
            let sv = s.cpu_data_mut()?;
            for &i in dg.dropped.iter().chain(&dg.grown) {
                sv[i as usize] = 0.0;
            }
        }
        Ok(())
    }

    fn exploration_scores(
        grad: &Tensor,
        counts: &IndexTensor,
        bonus: &Exploration,
    ) -> Result<Tensor> {
        let g = grad.cpu_data()?;
        let scale = if bonus.normalize {
            let m = g.iter().fold(0f32, |a, v| a.max(v.abs()));
            if m > 0.0 {
                1.0 / m as f64
            } else {
                1.0
            }
        } else {
            1.0
        };
        let Exploration { c, eps, ln_t, .. } = *bonus;
        let v = g
            .iter()
            .zip(counts.cpu_data()?)
            .map(|(gv, &n)| (gv.abs() as f64 * scale + c * (ln_t / (n as f64 + eps)).sqrt()) as f32)
            .collect();
        Tensor::from_vec(grad.shape(), v, grad.device())
    }

    fn accumulate_activity(counter: &mut IndexTensor, mask: &DeviceMask) -> Result<()> {
        let counter = counter.cpu_data_mut()?;
        for (chunk, &word) in counter.chunks_mut(64).zip(mask.mask().words()) {
            if word == 0 {
                continue;
            }
            for (b, c) in chunk.iter_mut().enumerate() {
                *c = c.saturating_add(((word >> b) & 1) as u32);
            }
        }
        Ok(())
    }
}
