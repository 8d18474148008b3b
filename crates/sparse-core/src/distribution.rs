//! Layer-wise sparsity distributions: uniform, ER and ERK with dense capping (spec §0.4).

use std::collections::HashSet;

use crate::budget::{Budget, LayerBudget};
use crate::error::{check_sparsity, CoreError, Result};

/// Name and shape of one sparsifiable layer (PyTorch layout: conv `[out, in, kh, kw]`,
/// linear `[out, in]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerShape {
    /// Unique layer name.
    pub name: String,
    /// Weight shape.
    pub shape: Vec<usize>,
}

impl LayerShape {
    /// Convenience constructor.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        LayerShape {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// Weights in the layer.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How a global sparsity is spread over layers.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Every layer at the global sparsity, except `dense_layers` (kept fully dense, e.g. the
    /// first conv as in the RigL paper's uniform setting).
    Uniform {
        /// Names of layers kept dense.
        dense_layers: Vec<String>,
    },
    /// Erdős–Rényi: density ∝ `(n_in + n_out) / (n_in · n_out)` from the first two dims
    /// (`[out, in, ...]`), ignoring kernel size.
    Er,
    /// Erdős–Rényi-Kernel: density ∝ `(Σ dims / Π dims)^power` over all dims. `power = 1`
    /// is standard ERK; `power = 0` is uniform.
    Erk {
        /// `erk_power_scale` (default 1.0).
        power: f64,
    },
}

impl Default for Distribution {
    /// ERK with power 1, the default of RigL, RigL-ITOP, GraNet and AGC.
    fn default() -> Self {
        Distribution::Erk { power: 1.0 }
    }
}

/// A layer forced to a given sparsity regardless of the distribution (spec §0.4 map `C`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Layer name.
    pub layer: String,
    /// Its fixed sparsity in `[0, 1)`.
    pub sparsity: f64,
}

/// Per-layer sparsities `s_l` for a target global sparsity `sparsity` (before rounding).
pub fn layer_sparsities(
    layers: &[LayerShape],
    sparsity: f64,
    dist: &Distribution,
    overrides: &[Override],
) -> Result<Vec<f64>> {
    validate(layers, sparsity, overrides)?;
    let custom = |name: &str| {
        overrides
            .iter()
            .find(|o| o.layer == name)
            .map(|o| o.sparsity)
    };
    match dist {
        Distribution::Uniform { dense_layers } => {
            for d in dense_layers {
                if !layers.iter().any(|l| &l.name == d) {
                    return Err(CoreError::BadLayer {
                        layer: d.clone(),
                        reason: "listed as dense but no such layer".into(),
                    });
                }
            }
            Ok(layers
                .iter()
                .map(|l| match custom(&l.name) {
                    Some(s) => s,
                    None if dense_layers.contains(&l.name) => 0.0,
                    None => sparsity,
                })
                .collect())
        }
        Distribution::Er => erdos_renyi(layers, sparsity, overrides, |s| {
            let n_out = s[0] as f64;
            let n_in = s.get(1).copied().unwrap_or(1) as f64;
            (n_in + n_out) / (n_in * n_out)
        }),
        Distribution::Erk { power } => {
            if !power.is_finite() || *power < 0.0 {
                return Err(CoreError::InvalidArgument(format!(
                    "ERK power scale must be finite and >= 0, got {power}"
                )));
            }
            erdos_renyi(layers, sparsity, overrides, |s| {
                let sum: usize = s.iter().sum();
                let prod: usize = s.iter().product();
                (sum as f64 / prod as f64).powf(*power)
            })
        }
    }
}

/// Exact per-layer nonzero counts: `nnz_l = N_l − floor(s_l · N_l)` (RIGL-TF rounding).
pub fn layer_budget(
    layers: &[LayerShape],
    sparsity: f64,
    dist: &Distribution,
    overrides: &[Override],
) -> Result<Budget> {
    let s = layer_sparsities(layers, sparsity, dist, overrides)?;
    Budget::new(
        layers
            .iter()
            .zip(s)
            .map(|(l, s)| {
                let n = l.numel();
                // The 1e-6 guard keeps an exact product such as 500004.0 that float error
                // delivered as 500003.99999 from losing one.
                let zeros = ((s.clamp(0.0, 1.0) * n as f64 + 1e-6).floor() as usize).min(n);
                LayerBudget {
                    name: l.name.clone(),
                    shape: l.shape.clone(),
                    nnz: n - zeros,
                }
            })
            .collect(),
    )
}

fn validate(layers: &[LayerShape], sparsity: f64, overrides: &[Override]) -> Result<()> {
    if layers.is_empty() {
        return Err(CoreError::EmptyLayers(
            "a sparsity distribution needs at least one layer".into(),
        ));
    }
    check_sparsity("the global target", sparsity)?;
    let mut names = HashSet::new();
    for l in layers {
        if !names.insert(l.name.as_str()) {
            return Err(CoreError::BadLayer {
                layer: l.name.clone(),
                reason: "duplicate layer name".into(),
            });
        }
        if l.shape.is_empty() || l.numel() == 0 {
            return Err(CoreError::BadLayer {
                layer: l.name.clone(),
                reason: format!("shape {:?} has no weights", l.shape),
            });
        }
    }
    for o in overrides {
        if !names.contains(o.layer.as_str()) {
            return Err(CoreError::BadLayer {
                layer: o.layer.clone(),
                reason: "sparsity override for an unknown layer".into(),
            });
        }
        check_sparsity(&format!("override of layer `{}`", o.layer), o.sparsity)?;
    }
    Ok(())
}

/// The ER/ERK solve with the dense-capping loop (RIGL-TF `get_sparsities_erdos_renyi`).
fn erdos_renyi(
    layers: &[LayerShape],
    sparsity: f64,
    overrides: &[Override],
    raw_fn: impl Fn(&[usize]) -> f64,
) -> Result<Vec<f64>> {
    let is_custom = |i: usize| overrides.iter().any(|o| o.layer == layers[i].name);
    let raw: Vec<f64> = layers.iter().map(|l| raw_fn(&l.shape)).collect();
    let mut dense = vec![false; layers.len()];
    let eps = loop {
        let (mut rhs, mut div) = (0.0f64, 0.0f64);
        for (i, l) in layers.iter().enumerate() {
            if is_custom(i) {
                continue;
            }
            let n = l.numel() as f64;
            let z = (sparsity * n).floor();
            if dense[i] {
                rhs -= z;
            } else {
                rhs += n - z;
                div += raw[i] * n;
            }
        }
        if div == 0.0 {
            // Every non-custom layer is dense: nothing left to distribute.
            break 0.0;
        }
        let eps = rhs / div;
        let max_raw = (0..layers.len())
            .filter(|&i| !dense[i] && !is_custom(i))
            .map(|i| raw[i])
            .fold(f64::MIN, f64::max);
        if eps * max_raw > 1.0 {
            for i in 0..layers.len() {
                if !dense[i] && !is_custom(i) && raw[i] == max_raw {
                    dense[i] = true;
                }
            }
        } else {
            break eps;
        }
    };
    Ok(layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if let Some(o) = overrides.iter().find(|o| o.layer == l.name) {
                o.sparsity
            } else if dense[i] {
                0.0
            } else {
                (1.0 - eps * raw[i]).clamp(0.0, 1.0)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erk_hand_worked() {
        // Two linear layers: a 10x10 (raw 0.2) and a 100x100 (raw 0.02); S = 0.9.
        let layers = [
            LayerShape::new("a", &[10, 10]),
            LayerShape::new("b", &[100, 100]),
        ];
        // rhs = (100-90) + (10000-9000) = 1010; div = 0.2*100 + 0.02*10000 = 220.
        // eps = 4.5909..; eps*0.2 = 0.918 <= 1 so no capping.
        let s = layer_sparsities(&layers, 0.9, &Distribution::default(), &[]).unwrap();
        let eps = 1010.0 / 220.0;
        assert!((s[0] - (1.0 - eps * 0.2)).abs() < 1e-12);
        assert!((s[1] - (1.0 - eps * 0.02)).abs() < 1e-12);
        let b = layer_budget(&layers, 0.9, &Distribution::default(), &[]).unwrap();
        assert_eq!(b.layers()[0].nnz, 100 - (s[0] * 100.0).floor() as usize);
        assert_eq!(b.layers()[0].nnz, 92);
        assert_eq!(b.layers()[1].nnz, 919);
    }

    #[test]
    fn erk_caps_small_layer_dense() {
        // A 3x3 (raw 0.667) next to a 1000x1000 at S = 0.5: the small one would need
        // density > 1, so it is capped dense and the big one absorbs the rest.
        let layers = [
            LayerShape::new("small", &[3, 3]),
            LayerShape::new("big", &[1000, 1000]),
        ];
        let b = layer_budget(&layers, 0.5, &Distribution::default(), &[]).unwrap();
        assert_eq!(b.layers()[0].nnz, 9);
        // Target nonzeros: (9 - 4) + (1e6 - 5e5) = 500005; big gets 500005 - 9 = 499996.
        assert_eq!(b.layers()[1].nnz, 499_996);
    }

    #[test]
    fn uniform_dense_and_overrides() {
        let layers = [
            LayerShape::new("conv1", &[16, 3, 3, 3]),
            LayerShape::new("conv2", &[32, 16, 3, 3]),
            LayerShape::new("fc", &[10, 32]),
        ];
        let dist = Distribution::Uniform {
            dense_layers: vec!["conv1".into()],
        };
        let ov = [Override {
            layer: "fc".into(),
            sparsity: 0.5,
        }];
        let b = layer_budget(&layers, 0.9, &dist, &ov).unwrap();
        let nnz: Vec<_> = b.layers().iter().map(|l| l.nnz).collect();
        assert_eq!(nnz, vec![432, 4608 - 4147, 160]);
        let bad = Distribution::Uniform {
            dense_layers: vec!["conv9".into()],
        };
        assert!(layer_budget(&layers, 0.9, &bad, &[]).is_err());
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let layers = [LayerShape::new("a", &[4, 4])];
        let d = Distribution::default();
        for s in [-0.1, 1.0, 1.5, f64::NAN] {
            assert!(matches!(
                layer_budget(&layers, s, &d, &[]),
                Err(CoreError::InvalidSparsity { .. })
            ));
        }
        assert!(matches!(
            layer_budget(&[], 0.5, &d, &[]),
            Err(CoreError::EmptyLayers(_))
        ));
        let zero = [LayerShape::new("z", &[0, 4])];
        assert!(layer_budget(&zero, 0.5, &d, &[]).is_err());
        let ov = [Override {
            layer: "nope".into(),
            sparsity: 0.5,
        }];
        assert!(layer_budget(&layers, 0.5, &d, &ov).is_err());
    }

    #[test]
    fn er_ignores_kernel_size() {
        let layers = [
            LayerShape::new("a", &[64, 64, 3, 3]),
            LayerShape::new("b", &[64, 64, 1, 1]),
        ];
        let s = layer_sparsities(&layers, 0.9, &Distribution::Er, &[]).unwrap();
        // Same raw probability -> same sparsity.
        assert!((s[0] - s[1]).abs() < 1e-12);
    }
}
