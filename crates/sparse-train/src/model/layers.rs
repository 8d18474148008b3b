//! Layer types with explicit forward/backward, built on `sparse-kernels`.

use anyhow::{bail, Result};
use sparse_core::Mask;
use sparse_kernels::ops::activation::{add, relu, relu_backward};
use sparse_kernels::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use sparse_kernels::ops::linear::{linear_backward, linear_forward};
use sparse_kernels::ops::norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_train, BatchNormCache, BatchNormParams,
};
use sparse_kernels::ops::pool::{
    avg_pool, avg_pool_backward, global_avg_pool, global_avg_pool_backward, max_pool2x2,
    max_pool2x2_backward,
};
use sparse_kernels::{Device, ExecMode, ExecPolicy, SparseWeight, Tensor, WeightGrad, WeightRef};

/// One trainable tensor with its gradient, momentum and (for sparsifiable weights) mask.
pub struct Param {
    /// Unique name (`features.3.weight`, ...).
    pub name: String,
    /// Stored values.
    pub value: Tensor,
    /// Gradient of the last backward.
    pub grad: Tensor,
    /// SGD momentum buffer.
    pub momentum: Tensor,
    /// Whether this is a conv / linear weight.
    pub sparsifiable: bool,
    /// The mask (sparse runs only).
    pub mask: Option<Mask>,
    /// Cached CSR form, valid while `sparse_version == mask_version`.
    sparse: Option<SparseWeight>,
    sparse_version: u64,
    /// Bumped whenever the mask changes.
    pub mask_version: u64,
}

impl Param {
    /// A parameter with zero gradient and momentum.
    pub fn new(name: String, value: Tensor, sparsifiable: bool) -> Param {
        let z = Tensor::zeros(value.shape(), Device::Cpu).expect("cpu");
        Param {
            name,
            grad: z.clone(),
            momentum: z,
            value,
            sparsifiable,
            mask: None,
            sparse: None,
            sparse_version: u64::MAX,
            mask_version: 0,
        }
    }

    /// Density of the mask (1 without one).
    pub fn density(&self) -> f64 {
        self.mask.as_ref().map_or(1.0, |m| m.density())
    }

    /// Prepares the operand for this step: dense, masked (`W ⊙ M` with dense stored values)
    /// or sparse (CSR refreshed from the current values).
    fn prepare(&mut self, ctx: &ExecCtx, conv: bool) -> Result<()> {
        let Some(mask) = &self.mask else {
            return Ok(());
        };
        if ctx.keeps_dense_values || self.exec_mode(ctx, conv) == ExecMode::Dense {
            return Ok(());
        }
        if self.sparse.is_none() || self.sparse_version != self.mask_version {
            self.sparse = Some(SparseWeight::new(&self.value, mask)?);
            self.sparse_version = self.mask_version;
        } else if let Some(s) = &mut self.sparse {
            s.refresh(&self.value)?;
        }
        Ok(())
    }

    fn exec_mode(&self, ctx: &ExecCtx, conv: bool) -> ExecMode {
        if self.mask.is_none() || ctx.force_dense {
            return ExecMode::Dense;
        }
        if conv {
            ctx.policy.conv(self.density())
        } else {
            ctx.policy.linear(self.density())
        }
    }

    fn weight_ref(&self, ctx: &ExecCtx, conv: bool) -> WeightRef<'_> {
        match (&self.mask, &self.sparse) {
            (Some(m), _) if ctx.keeps_dense_values && !ctx.force_dense => {
                WeightRef::Masked(&self.value, m)
            }
            (Some(_), Some(s))
                if self.exec_mode(ctx, conv) == ExecMode::Sparse && !ctx.keeps_dense_values =>
            {
                WeightRef::Sparse(s)
            }
            _ => WeightRef::Dense(&self.value),
        }
    }

    fn grad_mode(&self, ctx: &ExecCtx) -> WeightGrad<'_> {
        match &self.mask {
            Some(m) if !ctx.dense_grad => WeightGrad::AtMask(m),
            _ => WeightGrad::Dense,
        }
    }
}

/// Per-pass execution settings.
#[derive(Debug, Clone)]
pub struct ExecCtx {
    /// Training (batch statistics, caches) or evaluation.
    pub train: bool,
    /// Compute dense weight gradients (grow steps, OptG) instead of gradients at the mask.
    pub dense_grad: bool,
    /// Stored weights are dense and executed as `W ⊙ M` (OptG).
    pub keeps_dense_values: bool,
    /// Execute every weight densely (AGC snapshot passes).
    pub force_dense: bool,
    /// Do not update BatchNorm running statistics (AGC snapshot passes).
    pub freeze_running_stats: bool,
    /// Dense-or-sparse thresholds.
    pub policy: ExecPolicy,
}

/// A convolution (no bias; always followed by BatchNorm in the zoo).
pub struct Conv {
    /// Weight `[O, C, k, k]`.
    pub w: Param,
    /// Stride and padding.
    pub p: Conv2dParams,
    x: Option<Tensor>,
}

/// A linear layer with bias.
pub struct Linear {
    /// Weight `[out, in]`.
    pub w: Param,
    /// Bias `[out]`.
    pub b: Param,
    x: Option<Tensor>,
}

/// BatchNorm2d.
pub struct Bn {
    /// γ.
    pub gamma: Param,
    /// β.
    pub beta: Param,
    /// Running mean.
    pub running_mean: Tensor,
    /// Running variance.
    pub running_var: Tensor,
    cache: Option<BatchNormCache>,
}

/// A residual block: `relu(main(x) + shortcut(x))` (identity shortcut when empty).
pub struct Residual {
    /// Main branch.
    pub main: Vec<Node>,
    /// Projection shortcut (empty: identity).
    pub shortcut: Vec<Node>,
    y: Option<Tensor>,
}

/// A network node.
pub enum Node {
    /// Convolution.
    Conv(Conv),
    /// Linear.
    Linear(Linear),
    /// BatchNorm.
    Bn(Bn),
    /// ReLU (caches its output).
    Relu(Option<Tensor>),
    /// 2x2 max-pool (caches argmax and input shape).
    MaxPool(Option<(Vec<u32>, Vec<usize>)>),
    /// k x k average pool (caches input shape).
    AvgPool(usize, Option<Vec<usize>>),
    /// Global average pool (caches input shape).
    GlobalAvg(Option<Vec<usize>>),
    /// Flatten to `[B, rest]` (caches input shape).
    Flatten(Option<Vec<usize>>),
    /// Residual block.
    Residual(Box<Residual>),
}

impl Node {
    /// Convolution node.
    pub fn conv(name: &str, w: Tensor, stride: usize, padding: usize) -> Node {
        Node::Conv(Conv {
            w: Param::new(format!("{name}.weight"), w, true),
            p: Conv2dParams::new(stride, padding),
            x: None,
        })
    }
    /// Linear node.
    pub fn linear(name: &str, w: Tensor, b: Tensor) -> Node {
        Node::Linear(Linear {
            w: Param::new(format!("{name}.weight"), w, true),
            b: Param::new(format!("{name}.bias"), b, false),
            x: None,
        })
    }
    /// BatchNorm node over `c` channels.
    pub fn bn(name: &str, c: usize) -> Node {
        let t = |v| Tensor::full(&[c], v, Device::Cpu).expect("cpu");
        Node::Bn(Bn {
            gamma: Param::new(format!("{name}.weight"), t(1.0), false),
            beta: Param::new(format!("{name}.bias"), t(0.0), false),
            running_mean: t(0.0),
            running_var: t(1.0),
            cache: None,
        })
    }

    /// Forward.
    pub fn forward(&mut self, x: Tensor, ctx: &ExecCtx) -> Result<Tensor> {
        Ok(match self {
            Node::Conv(c) => {
                c.w.prepare(ctx, true)?;
                let y = conv2d_forward(&x, c.w.weight_ref(ctx, true), c.p)?;
                if ctx.train {
                    c.x = Some(x);
                }
                y
            }
            Node::Linear(l) => {
                l.w.prepare(ctx, false)?;
                let y = linear_forward(&x, l.w.weight_ref(ctx, false), Some(&l.b.value))?;
                if ctx.train {
                    l.x = Some(x);
                }
                y
            }
            Node::Bn(b) => {
                if ctx.train {
                    let p = BatchNormParams::default();
                    let (mut rm, mut rv) = (b.running_mean.clone(), b.running_var.clone());
                    let (y, cache) =
                        batch_norm_train(&x, &b.gamma.value, &b.beta.value, &mut rm, &mut rv, p)?;
                    if !ctx.freeze_running_stats {
                        b.running_mean = rm;
                        b.running_var = rv;
                    }
                    b.cache = Some(cache);
                    y
                } else {
                    batch_norm_eval(
                        &x,
                        &b.gamma.value,
                        &b.beta.value,
                        &b.running_mean,
                        &b.running_var,
                        BatchNormParams::default().eps,
                    )?
                }
            }
            Node::Relu(cache) => {
                let y = relu(&x)?;
                if ctx.train {
                    *cache = Some(y.clone());
                }
                y
            }
            Node::MaxPool(cache) => {
                let (y, arg) = max_pool2x2(&x)?;
                if ctx.train {
                    *cache = Some((arg, x.shape().to_vec()));
                }
                y
            }
            Node::AvgPool(k, cache) => {
                let y = avg_pool(&x, *k)?;
                *cache = Some(x.shape().to_vec());
                y
            }
            Node::GlobalAvg(cache) => {
                *cache = Some(x.shape().to_vec());
                global_avg_pool(&x)?
            }
            Node::Flatten(cache) => {
                *cache = Some(x.shape().to_vec());
                x.flatten()?
            }
            Node::Residual(r) => {
                let mut m = x.clone();
                for n in &mut r.main {
                    m = n.forward(m, ctx)?;
                }
                let mut s = x;
                for n in &mut r.shortcut {
                    s = n.forward(s, ctx)?;
                }
                let y = relu(&add(&m, &s)?)?;
                if ctx.train {
                    r.y = Some(y.clone());
                }
                y
            }
        })
    }

    /// Backward: accumulates (overwrites) parameter gradients and returns `∂L/∂x` (an empty
    /// tensor when `need_dx` is false).
    pub fn backward(&mut self, dy: Tensor, ctx: &ExecCtx, need_dx: bool) -> Result<Tensor> {
        let empty = || Tensor::zeros(&[0], Device::Cpu);
        Ok(match self {
            Node::Conv(c) => {
                let Some(x) = c.x.take() else {
                    bail!("conv backward without a training forward")
                };
                let g = conv2d_backward(
                    &dy,
                    &x,
                    c.w.weight_ref(ctx, true),
                    c.p,
                    need_dx,
                    c.w.grad_mode(ctx),
                )?;
                c.w.grad = g.dw;
                match g.dx {
                    Some(d) => d,
                    None => empty()?,
                }
            }
            Node::Linear(l) => {
                let Some(x) = l.x.take() else {
                    bail!("linear backward without a training forward")
                };
                let g = linear_backward(
                    &dy,
                    &x,
                    l.w.weight_ref(ctx, false),
                    true,
                    need_dx,
                    l.w.grad_mode(ctx),
                )?;
                l.w.grad = g.dw;
                l.b.grad = g.db.expect("bias requested");
                match g.dx {
                    Some(d) => d,
                    None => empty()?,
                }
            }
            Node::Bn(b) => {
                let Some(cache) = b.cache.take() else {
                    bail!("batch norm backward without a training forward")
                };
                let g = batch_norm_backward(&dy, &cache, &b.gamma.value)?;
                b.gamma.grad = g.dgamma;
                b.beta.grad = g.dbeta;
                g.dx
            }
            Node::Relu(cache) => {
                let Some(y) = cache.take() else {
                    bail!("relu backward without a training forward")
                };
                relu_backward(&dy, &y)?
            }
            Node::MaxPool(cache) => {
                let Some((arg, shape)) = cache.take() else {
                    bail!("max-pool backward without a training forward")
                };
                max_pool2x2_backward(&dy, &arg, &shape)?
            }
            Node::AvgPool(k, cache) => {
                avg_pool_backward(&dy, *k, cache.as_ref().expect("forward ran"))?
            }
            Node::GlobalAvg(cache) => {
                global_avg_pool_backward(&dy, cache.as_ref().expect("forward ran"))?
            }
            Node::Flatten(cache) => dy.reshape(cache.as_ref().expect("forward ran"))?,
            Node::Residual(r) => {
                let Some(y) = r.y.take() else {
                    bail!("residual backward without a training forward")
                };
                let d = relu_backward(&dy, &y)?;
                let mut gm = d.clone();
                for n in r.main.iter_mut().rev() {
                    gm = n.backward(gm, ctx, true)?;
                }
                let mut gs = d;
                for n in r.shortcut.iter_mut().rev() {
                    gs = n.backward(gs, ctx, true)?;
                }
                add(&gm, &gs)?
            }
        })
    }

    pub(crate) fn collect_params<'a>(&'a mut self, out: &mut Vec<&'a mut Param>) {
        match self {
            Node::Conv(c) => out.push(&mut c.w),
            Node::Linear(l) => {
                out.push(&mut l.w);
                out.push(&mut l.b);
            }
            Node::Bn(b) => {
                out.push(&mut b.gamma);
                out.push(&mut b.beta);
            }
            Node::Residual(r) => {
                for n in r.main.iter_mut().chain(r.shortcut.iter_mut()) {
                    n.collect_params(out);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn collect_params_ref<'a>(&'a self, out: &mut Vec<&'a Param>) {
        match self {
            Node::Conv(c) => out.push(&c.w),
            Node::Linear(l) => {
                out.push(&l.w);
                out.push(&l.b);
            }
            Node::Bn(b) => {
                out.push(&b.gamma);
                out.push(&b.beta);
            }
            Node::Residual(r) => {
                for n in r.main.iter().chain(r.shortcut.iter()) {
                    n.collect_params_ref(out);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn collect_running<'a>(
        &'a mut self,
        out: &mut Vec<(String, &'a mut Tensor, &'a mut Tensor)>,
    ) {
        match self {
            Node::Bn(b) => {
                let name = b.gamma.name.trim_end_matches(".weight").to_string();
                out.push((name, &mut b.running_mean, &mut b.running_var));
            }
            Node::Residual(r) => {
                for n in r.main.iter_mut().chain(r.shortcut.iter_mut()) {
                    n.collect_running(out);
                }
            }
            _ => {}
        }
    }
}

impl Residual {
    /// A residual block from its branches.
    pub fn new(main: Vec<Node>, shortcut: Vec<Node>) -> Residual {
        Residual {
            main,
            shortcut,
            y: None,
        }
    }
}
