//! Layer types with explicit forward/backward, built on `sparse-kernels`.

use anyhow::{bail, Result};
use sparse_algos::Param;
use sparse_kernels::ops::activation::{add_assign, add_relu_assign, relu, relu_backward};
use sparse_kernels::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use sparse_kernels::ops::linear::{
    linear_backward_kept, linear_forward, linear_forward_keeping, LinearInput,
};
use sparse_kernels::ops::norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_relu_eval, batch_norm_train, BatchNormCache,
    BatchNormParams,
};
use sparse_kernels::ops::pool::{
    avg_pool, avg_pool_backward, global_avg_pool, global_avg_pool_backward, max_pool2x2,
    max_pool2x2_backward,
};
use sparse_kernels::ops::sparse::AtMaskGradMemo;
use sparse_kernels::profile::{self, Phase};
use sparse_kernels::{Device, ExecMode, ExecPolicy, IndexTensor, Tensor, WeightGrad, WeightRef};

/// How a parameter executes in a pass: dense, masked (`W ⊙ M` with dense stored values)
/// or sparse (CSR refreshed from the current values), by the policy and the mask density.
fn exec_mode(p: &Param, ctx: &ExecCtx, conv: bool) -> ExecMode {
    if p.mask().is_none() || ctx.force_dense {
        return ExecMode::Dense;
    }
    if conv {
        ctx.policy.conv(p.density())
    } else {
        ctx.policy.linear(p.density())
    }
}

/// Prepares the operand for this pass (builds or refreshes the sparse form when used).
fn prepare(p: &mut Param, ctx: &ExecCtx, conv: bool) -> Result<()> {
    if p.mask().is_none() || ctx.keeps_dense_values || exec_mode(p, ctx, conv) == ExecMode::Dense {
        return Ok(());
    }
    Ok(p.prepare_sparse()?)
}

fn weight_ref<'a>(p: &'a Param, ctx: &ExecCtx, conv: bool) -> WeightRef<'a> {
    match (p.mask(), p.sparse()) {
        (Some(m), _) if ctx.keeps_dense_values && !ctx.force_dense => {
            WeightRef::Masked(&p.value, m)
        }
        (Some(_), Some(s))
            if exec_mode(p, ctx, conv) == ExecMode::Sparse && !ctx.keeps_dense_values =>
        {
            WeightRef::Sparse(s)
        }
        _ => WeightRef::Dense(&p.value),
    }
}

fn grad_mode<'a>(p: &'a Param, ctx: &ExecCtx) -> WeightGrad<'a> {
    match p.mask() {
        Some(m) if !ctx.dense_grad => WeightGrad::AtMask(m),
        _ => WeightGrad::Dense,
    }
}

/// A parameter on the CPU (model construction; moved to the run's device afterwards).
fn param(name: String, value: Tensor, sparsifiable: bool) -> Param {
    Param::new(name, value, sparsifiable).expect("zero tensors on the CPU cannot fail")
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
    /// The training forward's input (and its transpose, where the forward made one).
    x: Option<LinearInput>,
    /// The at-mask weight gradient last produced, reused as the next one's buffer.
    grad_memo: AtMaskGradMemo,
}

/// BatchNorm2d, with the following ReLU fused when `relu` is set.
pub struct Bn {
    /// γ.
    pub gamma: Param,
    /// β.
    pub beta: Param,
    /// Running mean.
    pub running_mean: Tensor,
    /// Running variance.
    pub running_var: Tensor,
    /// Whether a ReLU follows (fused: one pass over memory instead of three, same bits).
    pub relu: bool,
    cache: Option<Box<BatchNormCache>>,
}

/// A residual block: `relu(main(x) + shortcut(x))` (identity shortcut when empty).
pub struct Residual {
    /// Main branch.
    pub main: Vec<Node>,
    /// Projection shortcut (empty: identity).
    pub shortcut: Vec<Node>,
    /// The block's output, for the ReLU's backward (`relu(z) > 0` exactly where `z > 0`).
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
    /// ReLU (caches its input: `relu(x) > 0` exactly where `x > 0`, so the backward mask is
    /// the same and no copy of the output is kept).
    Relu(Option<Tensor>),
    /// 2x2 max-pool (caches argmax and input shape).
    MaxPool(Option<(IndexTensor, Vec<usize>)>),
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
            w: param(format!("{name}.weight"), w, true),
            p: Conv2dParams::new(stride, padding),
            x: None,
        })
    }
    /// Linear node.
    pub fn linear(name: &str, w: Tensor, b: Tensor) -> Node {
        Node::Linear(Linear {
            w: param(format!("{name}.weight"), w, true),
            b: param(format!("{name}.bias"), b, false),
            x: None,
            grad_memo: AtMaskGradMemo::default(),
        })
    }
    /// BatchNorm node over `c` channels.
    pub fn bn(name: &str, c: usize) -> Node {
        Node::batch_norm(name, c, false)
    }

    /// BatchNorm node over `c` channels followed by a ReLU, fused (PyTorch's
    /// `BatchNorm2d` then `ReLU`, with the same parameters and bits).
    pub fn bn_relu(name: &str, c: usize) -> Node {
        Node::batch_norm(name, c, true)
    }

    fn batch_norm(name: &str, c: usize, relu: bool) -> Node {
        let t = |v| Tensor::full(&[c], v, Device::Cpu).expect("cpu");
        Node::Bn(Bn {
            gamma: param(format!("{name}.weight"), t(1.0), false),
            beta: param(format!("{name}.bias"), t(0.0), false),
            running_mean: t(0.0),
            running_var: t(1.0),
            relu,
            cache: None,
        })
    }

    /// The row of `--profile`'s table this node's time goes to.
    fn profile_name(&self) -> &str {
        match self {
            Node::Conv(c) => &c.w.name,
            Node::Linear(l) => &l.w.name,
            Node::Bn(b) => &b.gamma.name,
            Node::Relu(_) => "relu",
            Node::MaxPool(_) => "max pool",
            Node::AvgPool(..) => "avg pool",
            Node::GlobalAvg(_) => "global avg pool",
            Node::Flatten(_) => "flatten",
            Node::Residual(_) => "residual add",
        }
    }

    /// Forward.
    pub fn forward(&mut self, x: Tensor, ctx: &ExecCtx) -> Result<Tensor> {
        if !profile::enabled() {
            return self.forward_inner(x, ctx);
        }
        let _layer = profile::layer(self.profile_name());
        let phase = match self {
            Node::Conv(_) | Node::Linear(_) => Phase::Forward,
            _ => Phase::Elementwise,
        };
        profile::time(phase, || self.forward_inner(x, ctx))
    }

    fn forward_inner(&mut self, x: Tensor, ctx: &ExecCtx) -> Result<Tensor> {
        Ok(match self {
            Node::Conv(c) => {
                prepare(&mut c.w, ctx, true)?;
                let y = conv2d_forward(&x, weight_ref(&c.w, ctx, true), c.p)?;
                if ctx.train {
                    c.x = Some(x);
                }
                y
            }
            Node::Linear(l) => {
                prepare(&mut l.w, ctx, false)?;
                let wr = weight_ref(&l.w, ctx, false);
                if ctx.train {
                    let (y, input) = linear_forward_keeping(x, wr, Some(&l.b.value))?;
                    l.x = Some(input);
                    y
                } else {
                    linear_forward(&x, wr, Some(&l.b.value))?
                }
            }
            Node::Bn(b) => {
                if ctx.train {
                    let p = BatchNormParams {
                        relu: b.relu,
                        ..BatchNormParams::default()
                    };
                    let (g, bt) = (&b.gamma.value, &b.beta.value);
                    let (y, cache) = if ctx.freeze_running_stats {
                        let (mut rm, mut rv) = (b.running_mean.clone(), b.running_var.clone());
                        batch_norm_train(&x, g, bt, &mut rm, &mut rv, p)?
                    } else {
                        batch_norm_train(&x, g, bt, &mut b.running_mean, &mut b.running_var, p)?
                    };
                    b.cache = Some(Box::new(cache));
                    y
                } else {
                    let eval = if b.relu {
                        batch_norm_relu_eval
                    } else {
                        batch_norm_eval
                    };
                    eval(
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
                    *cache = Some(x);
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
                add_relu_assign(&mut m, &s)?;
                if ctx.train {
                    // Shares `m`'s buffer (tensors are copy-on-write).
                    r.y = Some(m.clone());
                }
                m
            }
        })
    }

    /// Backward: accumulates (overwrites) parameter gradients and returns `∂L/∂x` (an empty
    /// tensor when `need_dx` is false).
    pub fn backward(&mut self, dy: Tensor, ctx: &ExecCtx, need_dx: bool) -> Result<Tensor> {
        if !profile::enabled() {
            return self.backward_inner(dy, ctx, need_dx);
        }
        let _layer = profile::layer(self.profile_name());
        // Conv and linear ops split their own time into input and weight gradients (CPU).
        let phase = match self {
            Node::Conv(_) | Node::Linear(_) => Phase::WeightGrad,
            _ => Phase::Elementwise,
        };
        profile::time(phase, || self.backward_inner(dy, ctx, need_dx))
    }

    fn backward_inner(&mut self, dy: Tensor, ctx: &ExecCtx, need_dx: bool) -> Result<Tensor> {
        let dev = dy.device();
        let empty = || Tensor::zeros(&[0], dev);
        Ok(match self {
            Node::Conv(c) => {
                let Some(x) = c.x.take() else {
                    bail!("conv backward without a training forward")
                };
                let g = conv2d_backward(
                    &dy,
                    &x,
                    weight_ref(&c.w, ctx, true),
                    c.p,
                    need_dx,
                    grad_mode(&c.w, ctx),
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
                let version = AtMaskGradMemo::version_of(&grad_mode(&l.w, ctx));
                let buf = l.grad_memo.take(&mut l.w.grad, version);
                let g = linear_backward_kept(
                    &dy,
                    &x,
                    weight_ref(&l.w, ctx, false),
                    true,
                    need_dx,
                    grad_mode(&l.w, ctx),
                    buf,
                )?;
                l.w.grad = g.dw;
                l.grad_memo.record(&l.w.grad, version);
                let Some(db) = g.db else {
                    bail!("linear backward returned no bias gradient")
                };
                l.b.grad = db;
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
                let Some(x) = cache.take() else {
                    bail!("relu backward without a training forward")
                };
                relu_backward(&dy, &x)?
            }
            Node::MaxPool(cache) => {
                let Some((arg, shape)) = cache.take() else {
                    bail!("max-pool backward without a training forward")
                };
                max_pool2x2_backward(&dy, &arg, &shape)?
            }
            Node::AvgPool(k, cache) => {
                let Some(shape) = cache.as_ref() else {
                    bail!("avg-pool backward without a forward")
                };
                avg_pool_backward(&dy, *k, shape)?
            }
            Node::GlobalAvg(cache) => {
                let Some(shape) = cache.as_ref() else {
                    bail!("global-avg-pool backward without a forward")
                };
                global_avg_pool_backward(&dy, shape)?
            }
            Node::Flatten(cache) => {
                let Some(shape) = cache.as_ref() else {
                    bail!("flatten backward without a forward")
                };
                dy.reshape(shape)?
            }
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
                add_assign(&mut gm, &gs)?;
                gm
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
