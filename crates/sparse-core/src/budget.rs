//! Exact per-layer nonzero budgets and the check that masks meet them (spec §0.3).

use crate::error::{CoreError, Result};
use crate::mask::Mask;

/// The exact nonzero count of one sparsifiable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBudget {
    /// Layer name (unique within a [`Budget`]).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Exact number of active weights.
    pub nnz: usize,
}

impl LayerBudget {
    /// Number of weights in the layer.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Fraction of active weights.
    pub fn density(&self) -> f64 {
        match self.numel() {
            0 => 1.0,
            n => self.nnz as f64 / n as f64,
        }
    }
}

/// The budgets of every sparsifiable layer of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    layers: Vec<LayerBudget>,
}

impl Budget {
    /// Validates names (non-empty list, unique names) and counts (`nnz <= numel`).
    pub fn new(layers: Vec<LayerBudget>) -> Result<Self> {
        if layers.is_empty() {
            return Err(CoreError::EmptyLayers(
                "a budget needs at least one layer".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for l in &layers {
            if !names.insert(l.name.as_str()) {
                return Err(CoreError::BadLayer {
                    layer: l.name.clone(),
                    reason: "duplicate layer name".into(),
                });
            }
            if l.nnz > l.numel() {
                return Err(CoreError::BadLayer {
                    layer: l.name.clone(),
                    reason: format!("budget {} exceeds its {} weights", l.nnz, l.numel()),
                });
            }
        }
        Ok(Budget { layers })
    }

    /// The budget a set of masks currently has (one layer per `(name, mask)`).
    pub fn from_masks<'a>(masks: impl IntoIterator<Item = (&'a str, &'a Mask)>) -> Result<Self> {
        Self::new(
            masks
                .into_iter()
                .map(|(name, m)| LayerBudget {
                    name: name.to_string(),
                    shape: m.shape().to_vec(),
                    nnz: m.count_ones(),
                })
                .collect(),
        )
    }

    /// The layers in order.
    pub fn layers(&self) -> &[LayerBudget] {
        &self.layers
    }

    /// Looks a layer up by name.
    pub fn layer(&self, name: &str) -> Option<&LayerBudget> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Total active weights.
    pub fn total_nnz(&self) -> usize {
        self.layers.iter().map(|l| l.nnz).sum()
    }

    /// Total weights over all sparsifiable layers.
    pub fn total_numel(&self) -> usize {
        self.layers.iter().map(|l| l.numel()).sum()
    }

    /// Global density `Σ nnz / Σ numel` (1.0 when there are no weights).
    pub fn global_density(&self) -> f64 {
        match self.total_numel() {
            0 => 1.0,
            n => self.total_nnz() as f64 / n as f64,
        }
    }

    /// Global sparsity `1 - global_density()`.
    pub fn global_sparsity(&self) -> f64 {
        1.0 - self.global_density()
    }

    /// Checks that every layer's mask has the budgeted shape and exactly the budgeted count.
    /// Masks are matched by name; a missing or unknown layer is an error.
    pub fn check<'a>(&self, masks: impl IntoIterator<Item = (&'a str, &'a Mask)>) -> Result<()> {
        let mut seen = 0usize;
        for (name, mask) in masks {
            let l = self.layer(name).ok_or_else(|| CoreError::BadLayer {
                layer: name.to_string(),
                reason: "not in the budget".into(),
            })?;
            if mask.shape() != l.shape.as_slice() {
                return Err(CoreError::ShapeMismatch {
                    context: format!("mask of layer `{name}`"),
                    expected: l.shape.clone(),
                    found: mask.shape().to_vec(),
                });
            }
            let found = mask.count_ones();
            if found != l.nnz {
                return Err(CoreError::BudgetMismatch {
                    layer: name.to_string(),
                    expected: l.nnz,
                    found,
                });
            }
            seen += 1;
        }
        if seen != self.layers.len() {
            return Err(CoreError::BadLayer {
                layer: "<budget>".into(),
                reason: format!(
                    "{} layers budgeted, {seen} masks checked",
                    self.layers.len()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_offending_layer() {
        let a = Mask::from_bools(&[2, 2], &[true, false, false, true]).unwrap();
        let b = Mask::ones(&[3]);
        let budget = Budget::from_masks([("conv1", &a), ("fc", &b)]).unwrap();
        assert_eq!(budget.total_nnz(), 5);
        assert!((budget.global_density() - 5.0 / 7.0).abs() < 1e-12);
        assert!(budget.check([("conv1", &a), ("fc", &b)]).is_ok());
        let mut a2 = a.clone();
        a2.set(1);
        let err = budget.check([("conv1", &a2), ("fc", &b)]).unwrap_err();
        assert_eq!(
            err,
            CoreError::BudgetMismatch {
                layer: "conv1".into(),
                expected: 2,
                found: 3
            }
        );
        assert!(err.to_string().contains("conv1"));
        assert!(budget.check([("conv1", &a)]).is_err());
        assert!(budget.check([("nope", &a)]).is_err());
        assert!(Budget::new(vec![]).is_err());
    }
}
