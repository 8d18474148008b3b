//! SGD on the CPU: one fused pass over 64-entry chunks, one per mask word.

use rayon::prelude::*;

use super::{MaskPolicy, OptimOps, SgdConfig};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

const GRAIN: usize = 1 << 14;
/// Mask words per parallel task of the [`MaskPolicy::Active`] step (whose cost follows the
/// active entries, so the tasks are larger).
const ACTIVE_WORDS: usize = 1 << 10;

/// The step over one 64-entry chunk, given its mask word: `(word, w, buf, g)`.
type WordStep<'a> = &'a (dyn Fn(u64, &mut [f32], &mut [f32], &[f32]) + Sync);
/// One task of the [`MaskPolicy::Active`] step: `(((w, buf), g), mask words)`.
type ActiveChunk<'a> = (((&'a mut [f32], &'a mut [f32]), &'a [f32]), &'a [u64]);

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
        let (m, per_word): (_, WordStep) = match mask {
            MaskPolicy::None => {
                wv.par_iter_mut()
                    .with_min_len(GRAIN)
                    .zip(bv.par_iter_mut())
                    .zip(gv.par_iter())
                    .for_each(|((w, b), &g)| step(w, b, g));
                return Ok(());
            }
            // `G ⊙ M`, weights and momentum not masked.
            MaskPolicy::Gradient(m) => (m, &|word, w, b, g| {
                for (j, ((w, b), &g)) in w.iter_mut().zip(b).zip(g).enumerate() {
                    step(w, b, if (word >> j) & 1 == 1 { g } else { 0.0 });
                }
            }),
            // The update, then `w ⊙= M` and `buf ⊙= M`: computed for every entry and then
            // selected, so the loop has no branch and vectorises (the first step after a
            // mask change runs it over the whole layer).
            MaskPolicy::Weights(m) => (m, &|word, w, b, g| {
                for (j, ((w, b), &g)) in w.iter_mut().zip(b).zip(g).enumerate() {
                    let on = (word >> j) & 1 == 1;
                    let (mut nw, mut nb) = (*w, *b);
                    step(&mut nw, &mut nb, g);
                    (*w, *b) = if on { (nw, nb) } else { (0.0, 0.0) };
                }
            }),
            // The active entries only.
            MaskPolicy::Active(m) => {
                let words = m.mask().words();
                let active = |(((w, b), g), words): ActiveChunk| {
                    for (c, &word) in words.iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            let i = c * 64 + bits.trailing_zeros() as usize;
                            step(&mut w[i], &mut b[i], g[i]);
                            bits &= bits - 1;
                        }
                    }
                };
                let chunk = 64 * ACTIVE_WORDS;
                wv.par_chunks_mut(chunk)
                    .zip(bv.par_chunks_mut(chunk))
                    .zip(gv.par_chunks(chunk))
                    .zip(words.par_chunks(ACTIVE_WORDS))
                    .for_each(active);
                return Ok(());
            }
        };
        let words = m.mask().words();
        wv.par_chunks_mut(64)
            .zip(bv.par_chunks_mut(64))
            .zip(gv.par_chunks(64))
            .zip(words.par_iter())
            .with_min_len(GRAIN / 64)
            .for_each(|(((w, b), g), &word)| per_word(word, w, b, g));
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
