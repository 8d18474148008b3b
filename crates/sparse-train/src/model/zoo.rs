//! The model zoo. Weight layout is PyTorch's; initialisation is PyTorch's default for
//! `Conv2d` / `Linear` (`kaiming_uniform_(a=√5)`: `U(±1/√fan_in)`, bias likewise) or Kaiming
//! normal (`N(0, 2/fan_in)`, zero bias), BN γ = 1, β = 0, all from a seeded ChaCha stream.

use anyhow::{bail, Result};
use rand_core::RngCore;
use sparse_core::stream_rng;
use sparse_kernels::{Device, Tensor};

use super::{Model, Node};

/// Every model with a description (`sparse-train list`).
pub const MODELS: &[(&str, &str)] = &[
    ("mlp", "LeNet-300-100: 784-300-100-10 (input flattened)"),
    (
        "vgg11",
        "VGG-11 with BatchNorm, CIFAR variant (single linear classifier)",
    ),
    ("vgg16", "VGG-16 with BatchNorm, CIFAR variant"),
    ("vgg19", "VGG-19 with BatchNorm, CIFAR variant"),
    (
        "resnet20",
        "CIFAR ResNet-20 (He et al. basic blocks, 16-32-64 channels)",
    ),
    ("resnet32", "CIFAR ResNet-32"),
    ("resnet56", "CIFAR ResNet-56"),
    (
        "resnet18",
        "ResNet-18, 3x3 stem, no max-pool (CIFAR variant)",
    ),
    ("resnet34", "ResNet-34, CIFAR variant"),
    ("resnet50", "ResNet-50 (bottleneck), CIFAR stem"),
    ("convnet", "small 4-layer convnet (the default quick run)"),
];

/// A model name, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelKind(pub String);

struct Init {
    rng: rand_chacha::ChaCha8Rng,
    kind: crate::config::Init,
    /// Parameters allocated so far, and the most the memory estimate allows.
    params: u64,
    max_params: u64,
}

/// Bytes a parameter costs in training: value, gradient and momentum (f32), plus room for
/// optimizer temporaries and masks.
const BYTES_PER_PARAM: u64 = 16;

/// The most parameters a model may have here: their training state must fit in half the
/// machine's memory (64 GiB assumed where `/proc/meminfo` is unreadable).
fn max_params() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(64 << 30, |kb| kb * 1024);
    total / 2 / BYTES_PER_PARAM
}

impl Init {
    /// A weight (`bias` false) or bias of the layer kind's initialisation, counted against
    /// the memory estimate before it is allocated.
    fn param(&mut self, shape: &[usize], fan_in: usize, bias: bool) -> Result<Tensor> {
        let n = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .and_then(|n| self.params.checked_add(n).map(|t| (n, t)));
        match n {
            Some((_, total)) if total <= self.max_params => self.params = total,
            _ => bail!(
                "the model needs more than {} parameters ({:.1} GB of training state, over half \
                 this machine's memory) at the layer of shape {shape:?}; lower --width-mult",
                self.max_params,
                (self.max_params * BYTES_PER_PARAM) as f64 / 1e9
            ),
        }
        let n: usize = shape.iter().product();
        let fan_in = fan_in.max(1) as f32;
        let v = match (self.kind, bias) {
            (crate::config::Init::PytorchDefault, _) => {
                let bound = 1.0 / fan_in.sqrt();
                (0..n)
                    .map(|_| {
                        ((self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0)
                            * bound
                    })
                    .collect()
            }
            (crate::config::Init::KaimingNormal, false) => {
                let std = (2.0 / fan_in).sqrt();
                (0..n)
                    .map(|_| sparse_core::standard_normal(&mut self.rng) * std)
                    .collect()
            }
            (crate::config::Init::KaimingNormal, true) => vec![0.0; n],
        };
        Ok(Tensor::cpu(shape, v)?)
    }
    fn conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Node> {
        let fan_in = cin.saturating_mul(k * k);
        Ok(Node::conv(
            name,
            self.param(&[cout, cin, k, k], fan_in, false)?,
            stride,
            pad,
        ))
    }
    fn linear(&mut self, name: &str, fin: usize, fout: usize) -> Result<Node> {
        let w = self.param(&[fout, fin], fin, false)?;
        let b = self.param(&[fout], fin, true)?;
        Ok(Node::linear(name, w, b))
    }
}

fn scale(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

/// Builds `name` for inputs `[C, H, W]` and `classes` outputs with width multiplier `width`.
pub fn build(
    name: &str,
    input: [usize; 3],
    classes: usize,
    width: f64,
    seed: u64,
    init_kind: crate::config::Init,
    device: Device,
) -> Result<Model> {
    if !(width > 0.0 && width.is_finite()) {
        bail!("--width-mult must be > 0, got {width}");
    }
    let mut init = Init {
        rng: stream_rng(seed, 0x1417),
        kind: init_kind,
        params: 0,
        max_params: max_params(),
    };
    let [c, h, w] = input;
    let mut nodes = Vec::new();
    match name {
        "mlp" => {
            let (h1, h2) = (scale(300, width), scale(100, width));
            nodes.push(Node::Flatten(None));
            nodes.push(init.linear("fc1", c * h * w, h1)?);
            nodes.push(Node::Relu(None));
            nodes.push(init.linear("fc2", h1, h2)?);
            nodes.push(Node::Relu(None));
            nodes.push(init.linear("fc3", h2, classes)?);
        }
        "convnet" => {
            let ch = [scale(32, width), scale(64, width), scale(128, width)];
            let mut cin = c;
            let mut size = h.min(w);
            for (i, &co) in ch.iter().enumerate() {
                nodes.push(init.conv(&format!("conv{}", i + 1), cin, co, 3, 1, 1)?);
                nodes.push(Node::bn_relu(&format!("bn{}", i + 1), co));
                if size >= 2 {
                    nodes.push(Node::MaxPool(None));
                    size /= 2;
                }
                cin = co;
            }
            nodes.push(Node::GlobalAvg(None));
            nodes.push(init.linear("fc", cin, classes)?);
        }
        "vgg11" | "vgg16" | "vgg19" => {
            let cfg: &[usize] = match name {
                "vgg11" => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
                "vgg16" => &[
                    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
                ],
                _ => &[
                    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512,
                    512, 512, 0,
                ],
            };
            let mut cin = c;
            let mut size = h.min(w);
            for (i, &v) in cfg.iter().enumerate() {
                if v == 0 {
                    if size >= 2 {
                        nodes.push(Node::MaxPool(None));
                        size /= 2;
                    }
                    continue;
                }
                let co = scale(v, width);
                nodes.push(init.conv(&format!("features.{i}"), cin, co, 3, 1, 1)?);
                nodes.push(Node::bn_relu(&format!("features.{i}.bn"), co));
                cin = co;
            }
            nodes.push(Node::GlobalAvg(None));
            nodes.push(init.linear("classifier", cin, classes)?);
        }
        "resnet20" | "resnet32" | "resnet56" => {
            let n = match name {
                "resnet20" => 3,
                "resnet32" => 5,
                _ => 9,
            };
            let widths = [scale(16, width), scale(32, width), scale(64, width)];
            nodes.push(init.conv("conv1", c, widths[0], 3, 1, 1)?);
            nodes.push(Node::bn_relu("bn1", widths[0]));
            let mut cin = widths[0];
            for (s, &co) in widths.iter().enumerate() {
                for b in 0..n {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    nodes.push(basic_block(
                        &mut init,
                        &format!("layer{}.{b}", s + 1),
                        cin,
                        co,
                        stride,
                    )?);
                    cin = co;
                }
            }
            nodes.push(Node::GlobalAvg(None));
            nodes.push(init.linear("fc", cin, classes)?);
        }
        "resnet18" | "resnet34" | "resnet50" => {
            let blocks: [usize; 4] = if name == "resnet18" {
                [2, 2, 2, 2]
            } else {
                [3, 4, 6, 3]
            };
            let bottleneck = name == "resnet50";
            let widths = [64, 128, 256, 512].map(|v| scale(v, width));
            nodes.push(init.conv("conv1", c, widths[0], 3, 1, 1)?);
            nodes.push(Node::bn_relu("bn1", widths[0]));
            let mut cin = widths[0];
            for (s, &wd) in widths.iter().enumerate() {
                for b in 0..blocks[s] {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let nm = format!("layer{}.{b}", s + 1);
                    if bottleneck {
                        nodes.push(bottleneck_block(&mut init, &nm, cin, wd, stride)?);
                        cin = wd * 4;
                    } else {
                        nodes.push(basic_block(&mut init, &nm, cin, wd, stride)?);
                        cin = wd;
                    }
                }
            }
            nodes.push(Node::GlobalAvg(None));
            nodes.push(init.linear("fc", cin, classes)?);
        }
        other => {
            let names: Vec<&str> = MODELS.iter().map(|m| m.0).collect();
            bail!("unknown model `{other}` (known: {})", names.join(", "))
        }
    }
    let mut model = Model {
        name: name.to_string(),
        nodes,
        input,
    };
    // Initialised on the host from the seeded stream (identical on every device), then moved.
    model.to_device(device)?;
    Ok(model)
}

fn shortcut(
    init: &mut Init,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
) -> Result<Vec<Node>> {
    Ok(if stride == 1 && cin == cout {
        Vec::new()
    } else {
        vec![
            init.conv(&format!("{name}.shortcut.0"), cin, cout, 1, stride, 0)?,
            Node::bn(&format!("{name}.shortcut.1"), cout),
        ]
    })
}

fn basic_block(
    init: &mut Init,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
) -> Result<Node> {
    let main = vec![
        init.conv(&format!("{name}.conv1"), cin, cout, 3, stride, 1)?,
        Node::bn_relu(&format!("{name}.bn1"), cout),
        init.conv(&format!("{name}.conv2"), cout, cout, 3, 1, 1)?,
        Node::bn(&format!("{name}.bn2"), cout),
    ];
    Ok(Node::Residual(Box::new(super::layers::Residual::new(
        main,
        shortcut(init, name, cin, cout, stride)?,
    ))))
}

fn bottleneck_block(
    init: &mut Init,
    name: &str,
    cin: usize,
    width: usize,
    stride: usize,
) -> Result<Node> {
    let cout = width * 4;
    let main = vec![
        init.conv(&format!("{name}.conv1"), cin, width, 1, 1, 0)?,
        Node::bn_relu(&format!("{name}.bn1"), width),
        init.conv(&format!("{name}.conv2"), width, width, 3, stride, 1)?,
        Node::bn_relu(&format!("{name}.bn2"), width),
        init.conv(&format!("{name}.conv3"), width, cout, 1, 1, 0)?,
        Node::bn(&format!("{name}.bn3"), cout),
    ];
    Ok(Node::Residual(Box::new(super::layers::Residual::new(
        main,
        shortcut(init, name, cin, cout, stride)?,
    ))))
}
