//! Optional timing of training by layer and phase (`sparse-train train --profile`).
//!
//! Off by default: every entry point is one relaxed atomic load when disabled. When on, the
//! caller names the current layer ([`layer`]) and wraps work in [`time`]. Timing is
//! exclusive: time spent in a nested [`time`] or [`record`] belongs to the inner phase only,
//! so the table adds up to the wall time of the timed code. Ops whose two gradients share a
//! parallel loop (the CPU convolution) measure both parts on the worker threads and split
//! their wall time in proportion ([`record_split`]).
//!
//! On CUDA devices the times are host times: kernels are queued asynchronously, so a phase
//! shows its launch cost, and waits show up where the host next reads device memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What a span of time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Forward products (conv, linear).
    Forward,
    /// Gradient to the layer input.
    InputGrad,
    /// Gradient to the weight (dense or at the mask) and bias.
    WeightGrad,
    /// BatchNorm, ReLU, residual adds, pooling.
    Elementwise,
    /// Loss and accuracy.
    Loss,
    /// The optimizer step.
    Optimizer,
    /// Mask updates (scores, selection, scatter) and the method's per-step hooks.
    MaskUpdate,
    /// Waiting for a batch and moving it to the device.
    Data,
    /// Evaluation passes (not part of training steps).
    Eval,
}

impl Phase {
    /// Every phase, in table order.
    pub const ALL: [Phase; 9] = [
        Phase::Forward,
        Phase::InputGrad,
        Phase::WeightGrad,
        Phase::Elementwise,
        Phase::Loss,
        Phase::Optimizer,
        Phase::MaskUpdate,
        Phase::Data,
        Phase::Eval,
    ];

    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::InputGrad => "input grad",
            Phase::WeightGrad => "weight grad",
            Phase::Elementwise => "bn/relu/pool",
            Phase::Loss => "loss",
            Phase::Optimizer => "optimizer",
            Phase::MaskUpdate => "mask update",
            Phase::Data => "data",
            Phase::Eval => "eval",
        }
    }
}

/// Seconds and calls of one (layer, phase).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    /// Total seconds.
    pub secs: f64,
    /// Number of timed spans.
    pub calls: u64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
struct Table {
    order: Vec<(String, Phase)>,
    stats: HashMap<(String, Phase), Stat>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

thread_local! {
    static LAYER: RefCell<String> = RefCell::new(String::from("(other)"));
    /// Time recorded by nested spans, per open span.
    static CHILDREN: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
    /// Inside a [`time_whole`] span: nested spans are not recorded.
    static WHOLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Turns profiling on or off (process-wide).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether profiling is on (and not inside a [`time_whole`] span on this thread).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) && !WHOLE.with(|w| w.get())
}

/// Runs `f` and charges all of its time to `phase` of the layer `name`, without recording
/// the spans inside it (evaluation passes, which are not training steps).
pub fn time_whole<R>(name: &str, phase: Phase, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let _layer = layer(name);
    let start = Instant::now();
    WHOLE.with(|w| w.set(true));
    let r = f();
    WHOLE.with(|w| w.set(false));
    let wall = start.elapsed().as_secs_f64();
    add(phase, wall);
    charge_parent(wall);
    r
}

/// Restores the previous layer name when dropped.
pub struct LayerGuard(Option<String>);

impl Drop for LayerGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            LAYER.with(|l| *l.borrow_mut() = prev);
        }
    }
}

/// Names the layer that the following spans on this thread belong to, until the guard drops.
pub fn layer(name: &str) -> LayerGuard {
    if !enabled() {
        return LayerGuard(None);
    }
    LayerGuard(Some(LAYER.with(|l| {
        std::mem::replace(&mut *l.borrow_mut(), name.to_string())
    })))
}

fn add(phase: Phase, secs: f64) {
    let key = (LAYER.with(|l| l.borrow().clone()), phase);
    let mut t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let t = t.get_or_insert_with(Table::default);
    let s = t.stats.entry(key.clone()).or_insert_with(|| {
        t.order.push(key);
        Stat::default()
    });
    s.secs += secs;
    s.calls += 1;
}

fn charge_parent(secs: f64) {
    CHILDREN.with(|c| {
        if let Some(top) = c.borrow_mut().last_mut() {
            *top += secs;
        }
    });
}

/// Runs `f`, charging its time (less that of nested spans) to `phase` of the current layer.
pub fn time<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    CHILDREN.with(|c| c.borrow_mut().push(0.0));
    let start = Instant::now();
    let r = f();
    let wall = start.elapsed().as_secs_f64();
    let nested = CHILDREN.with(|c| c.borrow_mut().pop().unwrap_or(0.0));
    add(phase, (wall - nested).max(0.0));
    charge_parent(wall);
    r
}

/// Charges `secs` measured elsewhere to `phase` of the current layer.
pub fn record(phase: Phase, secs: f64) {
    if enabled() {
        add(phase, secs);
        charge_parent(secs);
    }
}

/// Charges `wall` seconds to several phases in proportion to `parts` (for example the CPU
/// seconds each part took summed over worker threads).
pub fn record_split(wall: f64, parts: &[(Phase, f64)]) {
    if !enabled() {
        return;
    }
    let total: f64 = parts.iter().map(|p| p.1).sum();
    for &(phase, s) in parts {
        let share = if total > 0.0 {
            s / total
        } else {
            1.0 / parts.len() as f64
        };
        add(phase, wall * share);
    }
    charge_parent(wall);
}

/// Everything recorded so far, in first-seen order, and resets the table.
pub fn take() -> Vec<(String, Phase, Stat)> {
    let mut t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(t) = t.take() else {
        return Vec::new();
    };
    t.order
        .into_iter()
        .map(|k| {
            let s = t.stats[&k];
            (k.0, k.1, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_exclusive_and_add_up() {
        set_enabled(true);
        let _ = take();
        let _g = layer("conv1");
        let split = time(Phase::Forward, || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            time(Phase::WeightGrad, || {
                std::thread::sleep(std::time::Duration::from_millis(30))
            });
            // A part measured elsewhere (worker threads) inside this span: 10 ms of wall.
            let t0 = Instant::now();
            std::thread::sleep(std::time::Duration::from_millis(10));
            let split = t0.elapsed().as_secs_f64();
            record_split(split, &[(Phase::InputGrad, 1.0), (Phase::WeightGrad, 3.0)]);
            split
        });
        let t = take();
        set_enabled(false);
        let get = |p| {
            t.iter()
                .find(|r| r.0 == "conv1" && r.1 == p)
                .map(|r| r.2.secs)
                .unwrap()
        };
        let (fwd, wg, ig) = (
            get(Phase::Forward),
            get(Phase::WeightGrad),
            get(Phase::InputGrad),
        );
        assert!((0.019..0.5).contains(&fwd), "forward {fwd}");
        // 30 ms nested plus 3/4 of the split.
        assert!((0.0375..0.5).contains(&wg), "weight grad {wg}");
        assert!((wg - 0.75 * split - 0.030).abs() < 0.4, "weight grad {wg}");
        assert!(
            (ig - 0.25 * split).abs() < 1e-12,
            "input grad {ig} of split {split}"
        );
        // A whole span hides what runs inside it.
        set_enabled(true);
        time_whole("eval", Phase::Eval, || time(Phase::Forward, || ()));
        let t = take();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].0.as_str(), t[0].1), ("eval", Phase::Eval));
        set_enabled(false);
        // Disabled: nothing is recorded.
        time(Phase::Forward, || ());
        assert!(take().is_empty());
    }
}
