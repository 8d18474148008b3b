//! SGD on the CPU: one fused pass, then the mask.

use rayon::prelude::*;

use super::{MaskPolicy, OptimOps, SgdConfig};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

const GRAIN: usize = 1 << 14;

impl OptimOps for CpuBackend {
    fn sgd_step(
        w: &mut Tensor,
        g: &Tensor,
        buf: &mut Tensor,
        mask: MaskPolicy,
        cfg: &SgdConfig,
    ) -> Result<()> {
        let SgdConfig {
            lr,
            momentum: mu,
            nesterov,
            weight_decay: wd,
        } = *cfg;
        let gv = g.cpu_data()?;
        let bv = buf.cpu_data_mut()?;
        let wv = w.cpu_data_mut()?;
        let step = |w: &mut f32, b: &mut f32, g: f32| {
            let mut d = g + wd * *w;
            if mu != 0.0 {
                *b = mu * *b + d;
                d = if nesterov { d + mu * *b } else { *b };
            }
            *w -= lr * d;
        };
        match mask {
            MaskPolicy::Gradient(m) => {
                // `G ⊙ M`: one 64-entry chunk per mask word.
                let words = m.mask().words();
                wv.par_chunks_mut(64)
                    .zip(bv.par_chunks_mut(64))
                    .zip(gv.par_chunks(64))
                    .zip(words.par_iter())
                    .with_min_len(GRAIN / 64)
                    .for_each(|(((w, b), g), &word)| {
                        for (j, ((w, b), &g)) in w.iter_mut().zip(b).zip(g).enumerate() {
                            step(w, b, if (word >> j) & 1 == 1 { g } else { 0.0 });
                        }
                    });
            }
            _ => wv
                .par_iter_mut()
                .with_min_len(GRAIN)
                .zip(bv.par_iter_mut())
                .zip(gv.par_iter())
                .for_each(|((w, b), &g)| step(w, b, g)),
        }
        if let MaskPolicy::Weights(m) = mask {
            m.mask().apply(wv)?;
            m.mask().apply(bv)?;
        }
        Ok(())
    }

    fn score_step(
        scores: &mut Tensor,
        buf: &mut Tensor,
        g: &Tensor,
        w: &Tensor,
        momentum: f32,
        lr: f32,
    ) -> Result<()> {
        let (g, w) = (g.cpu_data()?, w.cpu_data()?);
        scores
            .cpu_data_mut()?
            .par_iter_mut()
            .with_min_len(GRAIN)
            .zip(buf.cpu_data_mut()?.par_iter_mut())
            .zip(g.par_iter().zip(w))
            .for_each(|((s, b), (&g, &w))| {
                *b = momentum * *b + g * w;
                *s -= lr * *b;
            });
        Ok(())
    }
}
