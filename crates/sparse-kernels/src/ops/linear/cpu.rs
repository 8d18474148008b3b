//! Linear layers on the CPU: GEMM for dense weights, transposed SpMM / masked GEMM and
//! SDDMM otherwise.

use rayon::prelude::*;

use super::{LinearGrads, LinearOps};
use crate::backend::CpuBackend;
use crate::error::Result;
use crate::ops::gemm::cpu::sgemm;
use crate::ops::sparse::cpu as sp;
use crate::ops::sparse::grad_reuse::host_buffer;
use crate::ops::sparse::weight::CpuWeight;
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::ops::transpose::transpose;
use crate::profile::{self, Phase};
use crate::tensor::Tensor;

impl LinearOps for CpuBackend {
    fn linear_forward(
        (b, i, o): (usize, usize, usize),
        x: &Tensor,
        w: WeightRef,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let xs = x.cpu_data()?;
        let cw = w.cpu()?;
        let (mut y, xt) = match cw {
            CpuWeight::Dense(wt, _) => {
                let mut y = vec![0f32; b * o];
                sgemm(b, o, i, 1.0, xs, false, wt, true, 0.0, &mut y, true);
                (y, None)
            }
            _ => {
                let xt = transpose(xs, b, i);
                let mut yt = vec![0f32; o * b];
                cw.mul(&xt, b, &mut yt, true);
                (transpose(&yt, o, b), Some(xt))
            }
        };
        if let Some(bias) = bias {
            let bv = bias.cpu_data()?;
            y.par_chunks_mut(o.max(1))
                .for_each(|row| row.iter_mut().zip(bv).for_each(|(v, b)| *v += b));
        }
        let xt = xt
            .map(|t| Tensor::from_vec(&[i, b], t, x.device()))
            .transpose()?;
        Ok((Tensor::from_vec(&[b, o], y, x.device())?, xt))
    }

    fn linear_backward(
        (b, i, o): (usize, usize, usize),
        dy: &Tensor,
        x: &Tensor,
        xt: Option<&Tensor>,
        w: WeightRef,
        has_bias: bool,
        need_dx: bool,
        wgrad: WeightGrad,
        dw_buf: Option<Tensor>,
    ) -> Result<LinearGrads> {
        let (xs, dys) = (x.cpu_data()?, dy.cpu_data()?);
        let cw = w.cpu()?;
        let dyt = transpose(dys, b, o);
        // A reused buffer is zero off the mask and every mask entry is written below.
        let mut dw_t = host_buffer(dw_buf, w.shape())?;
        let dw = dw_t.cpu_data_mut()?;
        let kept_xt = xt.map(|t| t.cpu_data()).transpose()?;
        profile::time(Phase::WeightGrad, || match wgrad {
            WeightGrad::Dense => sgemm(o, i, b, 1.0, &dyt, false, xs, false, 0.0, dw, true),
            WeightGrad::AtMask(m) => {
                let made;
                let xt = match kept_xt {
                    Some(t) => t,
                    None => {
                        made = transpose(xs, b, i);
                        &made[..]
                    }
                };
                match cw {
                    // The sparse form's transpose already lists each column's rows.
                    CpuWeight::Sparse(s) if s.mask_version() == m.version() => {
                        let t = s.csr_t();
                        let structure = (t.row_ptr(), t.col_idx());
                        sp::sddmm_columns(structure, i, &dyt, xt, b, dw, true)
                    }
                    _ => sp::sddmm_mask(m.mask(), o, i, &dyt, xt, b, dw, true),
                }
            }
        });
        let dx = profile::time(Phase::InputGrad, || -> Result<Option<Tensor>> {
            if !need_dx {
                return Ok(None);
            }
            let dx = match cw {
                CpuWeight::Dense(wt, _) => {
                    let mut dx = vec![0f32; b * i];
                    sgemm(b, i, o, 1.0, dys, false, wt, false, 0.0, &mut dx, true);
                    dx
                }
                _ => {
                    let mut dxt = vec![0f32; i * b];
                    cw.mul_t(&dyt, b, &mut dxt, true);
                    transpose(&dxt, i, b)
                }
            };
            Ok(Some(Tensor::from_vec(&[b, i], dx, x.device())?))
        })?;
        let db = if has_bias {
            let sums: Vec<f32> = dyt.par_chunks(b.max(1)).map(|r| r.iter().sum()).collect();
            Some(Tensor::from_vec(&[o], sums, x.device())?)
        } else {
            None
        };
        Ok(LinearGrads { dx, dw: dw_t, db })
    }
}
