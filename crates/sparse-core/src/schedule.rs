//! Schedules evaluated at a step (spec §0.7, §4, §6, §7): drop fractions and target sparsities.

use crate::error::{CoreError, Result};
use std::f64::consts::PI;

/// A scalar schedule of the training step `t` (0-based optimizer steps unless noted).
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `value` at every step.
    Constant {
        /// The value.
        value: f64,
    },
    /// RigL cosine drop fraction: `f0 · ½(1 + cos(π · min(t, end)/end))` (RIGL-TF, JAXP).
    RiglCosine {
        /// Initial drop fraction (0.3 in RigL).
        f0: f64,
        /// `T_end` (end_step − begin_step); the value is 0 from there on.
        end: u64,
    },
    /// ITOP/GraNet cosine death rate (PyTorch `CosineAnnealingLR`):
    /// `floor + (f0 − floor) · ½(1 + cos(π · min(t, total)/total))`. Held at `floor` past
    /// `total` (PyTorch's would rise again; training never goes there).
    ItopCosine {
        /// Initial rate (0.5 in ITOP/GraNet).
        f0: f64,
        /// Final floor `eta_min` (0.005).
        floor: f64,
        /// Total training iterations.
        total: u64,
    },
    /// RIGL-TF `exponential_k`: `f0 · (1 − (t − t0)/(end − t0))^k`, clipped to `[t0, end]`.
    Exponential {
        /// Initial value.
        f0: f64,
        /// Exponent `k`.
        k: f64,
        /// Start step.
        t0: u64,
        /// End step (> t0).
        end: u64,
    },
    /// Zhu & Gupta cubic sparsity (TFMP): `s_f + (s_i − s_f)(1 − p)^3`,
    /// `p = clip((t − t0)/(t1 − t0), 0, 1)`.
    Cubic {
        /// Initial sparsity.
        s_i: f64,
        /// Final sparsity.
        s_f: f64,
        /// Pruning start step.
        t0: u64,
        /// Pruning end step (> t0).
        t1: u64,
    },
    /// JAXP cubic variant: `p = clip(t + 1 − t0, 0, t1 − t0)/(t1 − t0)`,
    /// `s = s_f · (1 − (1 − p)^3)` (starts from 0).
    CubicJaxp {
        /// Final sparsity.
        s_f: f64,
        /// Pruning start step.
        t0: u64,
        /// Pruning end step (> t0).
        t1: u64,
    },
    /// OptG sigmoid target sparsity per epoch `e`: `P / (1 + exp(−β (e − E/2)))`.
    OptgSigmoid {
        /// Final target sparsity `P`.
        target: f64,
        /// Steepness β (1 in every OptG config).
        beta: f64,
        /// Total epochs `E`.
        epochs: u64,
    },
}

impl Schedule {
    /// Checks the parameters (finite values, fractions in `[0, 1]`, non-empty step ranges).
    pub fn validate(&self) -> Result<()> {
        let frac = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(CoreError::InvalidArgument(format!(
                    "schedule {name} = {v} is not in [0, 1]"
                )))
            }
        };
        let range = |a: u64, b: u64| {
            if b > a {
                Ok(())
            } else {
                Err(CoreError::InvalidArgument(format!(
                    "schedule range {a}..{b} is empty"
                )))
            }
        };
        match *self {
            Schedule::Constant { value } => frac("value", value),
            Schedule::RiglCosine { f0, end } => {
                frac("f0", f0)?;
                range(0, end)
            }
            Schedule::ItopCosine { f0, floor, total } => {
                frac("f0", f0)?;
                frac("floor", floor)?;
                range(0, total)
            }
            Schedule::Exponential { f0, k, t0, end } => {
                frac("f0", f0)?;
                if !k.is_finite() || k < 0.0 {
                    return Err(CoreError::InvalidArgument(format!(
                        "exponent k = {k} must be >= 0"
                    )));
                }
                range(t0, end)
            }
            Schedule::Cubic { s_i, s_f, t0, t1 } => {
                frac("s_i", s_i)?;
                frac("s_f", s_f)?;
                range(t0, t1)
            }
            Schedule::CubicJaxp { s_f, t0, t1 } => {
                frac("s_f", s_f)?;
                range(t0, t1)
            }
            Schedule::OptgSigmoid {
                target,
                beta,
                epochs,
            } => {
                frac("target", target)?;
                if !beta.is_finite() || beta <= 0.0 {
                    return Err(CoreError::InvalidArgument(format!(
                        "sigmoid beta = {beta} must be > 0"
                    )));
                }
                range(0, epochs)
            }
        }
    }

    /// The value at step `t` (for `OptgSigmoid`, `t` is the epoch).
    pub fn at(&self, t: u64) -> f64 {
        match *self {
            Schedule::Constant { value } => value,
            Schedule::RiglCosine { f0, end } => {
                let x = t.min(end) as f64 / end as f64;
                f0 * 0.5 * (1.0 + (PI * x).cos())
            }
            Schedule::ItopCosine { f0, floor, total } => {
                let x = t.min(total) as f64 / total as f64;
                floor + (f0 - floor) * 0.5 * (1.0 + (PI * x).cos())
            }
            Schedule::Exponential { f0, k, t0, end } => {
                let x = (t.clamp(t0, end) - t0) as f64 / (end - t0) as f64;
                f0 * (1.0 - x).powf(k)
            }
            Schedule::Cubic { s_i, s_f, t0, t1 } => {
                let p = (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64;
                s_f + (s_i - s_f) * (1.0 - p).powi(3)
            }
            Schedule::CubicJaxp { s_f, t0, t1 } => {
                let span = (t1 - t0) as f64;
                let p = ((t + 1) as f64 - t0 as f64).clamp(0.0, span) / span;
                s_f * (1.0 - (1.0 - p).powi(3))
            }
            Schedule::OptgSigmoid {
                target,
                beta,
                epochs,
            } => target / (1.0 + (-beta * (t as f64 - epochs as f64 / 2.0)).exp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn rigl_cosine_points() {
        let s = Schedule::RiglCosine { f0: 0.3, end: 1000 };
        close(s.at(0), 0.3);
        close(s.at(500), 0.15);
        close(s.at(250), 0.3 * 0.5 * (1.0 + (PI / 4.0).cos()));
        close(s.at(1000), 0.0);
        close(s.at(5000), 0.0);
    }

    #[test]
    fn itop_cosine_floor() {
        let s = Schedule::ItopCosine {
            f0: 0.5,
            floor: 0.005,
            total: 100,
        };
        close(s.at(0), 0.5);
        close(s.at(50), 0.005 + 0.495 * 0.5);
        close(s.at(100), 0.005);
        close(s.at(200), 0.005);
    }

    #[test]
    fn cubic_variants() {
        let s = Schedule::Cubic {
            s_i: 0.0,
            s_f: 0.9,
            t0: 100,
            t1: 200,
        };
        close(s.at(0), 0.0);
        close(s.at(100), 0.0);
        close(s.at(150), 0.9 - 0.9 * 0.125);
        close(s.at(200), 0.9);
        close(s.at(900), 0.9);
        let j = Schedule::CubicJaxp {
            s_f: 0.8,
            t0: 0,
            t1: 10,
        };
        close(j.at(0), 0.8 * (1.0 - 0.9f64.powi(3)));
        close(j.at(9), 0.8);
        close(j.at(50), 0.8);
    }

    #[test]
    fn exponential_and_sigmoid_and_constant() {
        let e = Schedule::Exponential {
            f0: 0.4,
            k: 2.0,
            t0: 10,
            end: 20,
        };
        close(e.at(0), 0.4);
        close(e.at(15), 0.1);
        close(e.at(30), 0.0);
        let o = Schedule::OptgSigmoid {
            target: 0.9,
            beta: 1.0,
            epochs: 160,
        };
        close(o.at(80), 0.45);
        assert!(o.at(0) < 1e-30 && (o.at(159) - 0.9).abs() < 1e-12);
        close(Schedule::Constant { value: 0.3 }.at(77), 0.3);
    }

    #[test]
    fn validation() {
        assert!(Schedule::RiglCosine { f0: 1.5, end: 10 }
            .validate()
            .is_err());
        assert!(Schedule::RiglCosine { f0: 0.3, end: 0 }.validate().is_err());
        assert!(Schedule::Cubic {
            s_i: 0.0,
            s_f: 0.9,
            t0: 5,
            t1: 5
        }
        .validate()
        .is_err());
        assert!(Schedule::Constant { value: f64::NAN }.validate().is_err());
        assert!(Schedule::OptgSigmoid {
            target: 0.9,
            beta: 1.0,
            epochs: 160
        }
        .validate()
        .is_ok());
    }
}
