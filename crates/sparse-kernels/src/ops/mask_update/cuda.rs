//! Mask updates on CUDA: not implemented yet (the sparse-kernels issue adds the GPU radix
//! select and drop-and-grow scatter in `kernels/`).

use sparse_core::{DropGrow, Mask, Order};

use super::{Exploration, GrowInit, MaskUpdateOps};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::mask::DeviceMask;
use crate::tensor::{IndexTensor, Tensor};

impl MaskUpdateOps for CudaBackend {
    fn abs(x: &Tensor) -> Result<Tensor> {
        Err(unsupported("abs_scores", x.device()))
    }
    fn abs_product(a: &Tensor, _b: &Tensor) -> Result<Tensor> {
        Err(unsupported("abs_product", a.device()))
    }
    fn count_nonzero(x: &Tensor) -> Result<usize> {
        Err(unsupported("count_nonzero", x.device()))
    }
    fn apply_mask(x: &mut Tensor, _m: &DeviceMask) -> Result<()> {
        Err(unsupported("apply_mask", x.device()))
    }
    fn zero_at(x: &mut Tensor, _at: &Mask) -> Result<()> {
        Err(unsupported("zero_at", x.device()))
    }
    fn nonneg_within(x: &Tensor, _w: &Mask) -> Result<Mask> {
        Err(unsupported("nonneg_within", x.device()))
    }
    fn select(s: &Tensor, _k: usize, _c: Option<&Mask>, _o: Order) -> Result<Mask> {
        Err(unsupported("select_mask", s.device()))
    }
    fn select_global(
        s: &[&Tensor],
        _c: &[Option<&Mask>],
        _k: usize,
        _o: Order,
    ) -> Result<Vec<Mask>> {
        Err(unsupported("select_global", s[0].device()))
    }
    fn min_at(x: &Tensor, _at: &Mask) -> Result<f32> {
        Err(unsupported("min_at", x.device()))
    }
    fn at_least(x: &Tensor, _t: f32) -> Result<Mask> {
        Err(unsupported("at_least", x.device()))
    }
    fn drop_and_grow(_m: &Mask, d: &Tensor, _g: &Tensor, _n: usize) -> Result<DropGrow> {
        Err(unsupported("drop_and_grow", d.device()))
    }
    fn apply_drop_grow(
        w: &mut Tensor,
        _s: &mut [&mut Tensor],
        _dg: &DropGrow,
        _i: GrowInit,
    ) -> Result<()> {
        Err(unsupported("apply_drop_grow", w.device()))
    }
    fn exploration_scores(g: &Tensor, _c: &IndexTensor, _b: &Exploration) -> Result<Tensor> {
        Err(unsupported("exploration_scores", g.device()))
    }
    fn accumulate_activity(c: &mut IndexTensor, _m: &DeviceMask) -> Result<()> {
        Err(unsupported("accumulate_activity", c.device()))
    }
}
