//! The table `sparse-train train --profile` prints after a run (and writes to
//! `DIR/profile.md`): milliseconds per training step by layer and phase, from
//! `sparse_kernels::profile`.

use std::fmt::Write;

use sparse_kernels::profile::{Phase, Stat};

/// A Markdown table of `rows` (layer, phase, time) over `steps` training steps.
pub fn table(rows: &[(String, Phase, Stat)], steps: u64, wall: f64) -> String {
    let steps = steps.max(1) as f64;
    let phases: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| rows.iter().any(|r| r.1 == *p))
        .collect();
    let mut layers: Vec<&str> = Vec::new();
    for r in rows {
        if !layers.contains(&r.0.as_str()) {
            layers.push(&r.0);
        }
    }
    let cell = |layer: &str, p: Phase| -> f64 {
        rows.iter()
            .filter(|r| r.0 == layer && r.1 == p)
            .map(|r| r.2.secs)
            .sum()
    };
    let total: f64 = rows.iter().map(|r| r.2.secs).sum();
    let ms = |s: f64| 1e3 * s / steps;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Time per training step in ms ({} steps, {:.1} s wall, {:.1} s profiled; \
         evaluation is summed per step too)\n",
        steps as u64, wall, total
    );
    let _ = write!(out, "| layer |");
    for p in &phases {
        let _ = write!(out, " {} |", p.name());
    }
    let _ = writeln!(out, " total | share |");
    let _ = writeln!(out, "|---|{}---|---|", "---|".repeat(phases.len()));
    let mut by_row: Vec<(&str, f64)> = layers
        .iter()
        .map(|l| (*l, phases.iter().map(|p| cell(l, *p)).sum()))
        .collect();
    by_row.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (l, row) in &by_row {
        let _ = write!(out, "| {l} |");
        for p in &phases {
            let v = cell(l, *p);
            if v > 0.0 {
                let _ = write!(out, " {:.2} |", ms(v));
            } else {
                let _ = write!(out, " |");
            }
        }
        let _ = writeln!(
            out,
            " {:.2} | {:.1}% |",
            ms(*row),
            100.0 * row / total.max(1e-12)
        );
    }
    let _ = write!(out, "| **total** |");
    for p in &phases {
        let v: f64 = rows.iter().filter(|r| r.1 == *p).map(|r| r.2.secs).sum();
        let _ = write!(out, " **{:.2}** |", ms(v));
    }
    let _ = writeln!(out, " **{:.2}** | 100% |", ms(total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_and_totals_add_up() {
        let st = |s| Stat { secs: s, calls: 1 };
        let rows = vec![
            ("conv1".to_string(), Phase::Forward, st(1.0)),
            ("conv1".to_string(), Phase::WeightGrad, st(3.0)),
            ("relu".to_string(), Phase::Elementwise, st(0.5)),
            ("conv1".to_string(), Phase::Forward, st(1.0)),
        ];
        let t = table(&rows, 10, 6.0);
        // conv1: 2 s forward + 3 s weight grad over 10 steps = 500 ms per step.
        assert!(
            t.contains("| conv1 | 200.00 | 300.00 | | 500.00 | 90.9% |"),
            "{t}"
        );
        assert!(t.contains("| relu | | | 50.00 | 50.00 | 9.1% |"), "{t}");
        assert!(
            t.contains("| **total** | **200.00** | **300.00** | **50.00** | **550.00** | 100% |"),
            "{t}"
        );
        // Rows are sorted by time.
        assert!(t.find("| conv1").unwrap() < t.find("| relu").unwrap());
    }
}
