//! Linear layers on CUDA: not implemented yet (the CUDA backend issue adds cuBLAS and
//! masked-GEMM paths here).

use super::{LinearGrads, LinearOps};
use crate::backend::{unsupported, CudaBackend};
use crate::error::Result;
use crate::ops::sparse::{WeightGrad, WeightRef};
use crate::tensor::Tensor;

impl LinearOps for CudaBackend {
    fn linear_forward(
        _d: (usize, usize, usize),
        x: &Tensor,
        _w: WeightRef,
        _b: Option<&Tensor>,
    ) -> Result<Tensor> {
        Err(unsupported("linear_forward", x.device()))
    }
    fn linear_backward(
        _d: (usize, usize, usize),
        _dy: &Tensor,
        x: &Tensor,
        _w: WeightRef,
        _hb: bool,
        _nd: bool,
        _wg: WeightGrad,
    ) -> Result<LinearGrads> {
        Err(unsupported("linear_backward", x.device()))
    }
}
