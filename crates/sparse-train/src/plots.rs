//! Plots of one run or several (SVG, drawn with plotters): accuracy and loss per epoch side
//! by side, with axis labels, a legend and a y-range zoomed to the data, and the final
//! density of every sparsifiable layer.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::fs::atomic_write;
use crate::report::{EpochMetrics, LayerMetrics};

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One curve: a label and `(epoch, value)` points.
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// The range of `values` with 8% margins (at least `min_span` wide), clipped to `clip`.
fn zoomed(values: impl Iterator<Item = f64>, min_span: f64, clip: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return clip;
    }
    let pad = ((hi - lo) * 0.08).max(min_span / 2.0);
    ((lo - pad).max(clip.0), (hi + pad).min(clip.1))
}

/// Draws `curves` into one panel.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    curves: &[Curve],
    clip: (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let x_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (y0, y1) = zoomed(
        curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)),
        (clip.1 - clip.0).min(1.0) * 0.02,
        clip,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5..x_max.max(1.0) + 0.5, y0..y1)
        .map_err(err)?;
    let whole = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_label_formatter(&whole)
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, curves, SeriesLabelPosition::LowerRight)
}

/// Draws `curves` (lines with points, one colour each) and their legend.
fn draw_lines<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    curves: &[Curve],
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(PointSeries::of_element(
                c.points.iter().copied(),
                3,
                color.filled(),
                &|p, s, st| Circle::new(p, s, st),
            ))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Accuracy (%) and loss per epoch in two panels, written to `path`.
pub fn curves(path: &Path, title: &str, accuracy: &[Curve], loss: &[Curve]) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(550);
        panel(
            &left,
            &format!("{title}: accuracy"),
            "accuracy (%)",
            accuracy,
            (0.0, 100.0),
        )?;
        panel(
            &right,
            &format!("{title}: loss"),
            "loss",
            loss,
            (0.0, f64::INFINITY),
        )?;
        root.present().map_err(err)?;
    }
    atomic_write(path, svg.as_bytes())
}

/// Final density per sparsifiable layer, one curve per run, written to `path`.
pub fn density(path: &Path, runs: &[(String, Vec<LayerMetrics>)]) -> Result<()> {
    let names: Vec<String> = runs
        .iter()
        .max_by_key(|r| r.1.len())
        .map(|r| r.1.iter().map(|l| l.name.clone()).collect())
        .unwrap_or_default();
    let n = names.len().max(1);
    let mut svg = String::new();
    {
        let height = 440;
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("density per layer (final)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..1.05)
            .map_err(err)?;
        // Names fit under a few layers; deeper models get indices (the order of
        // `metrics.jsonl`'s `layers`).
        let label = |x: &f64| {
            let i = x.round();
            match names.get(i as usize) {
                Some(name) if (x - i).abs() < 1e-6 && i >= 0.0 => {
                    if n <= 8 {
                        name.clone()
                    } else {
                        format!("{i:.0}")
                    }
                }
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .x_labels(n.min(30))
            .x_label_formatter(&label)
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .x_desc(if n <= 8 { "layer" } else { "layer (index)" })
            .y_desc("density (nonzero fraction)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let curves: Vec<Curve> = runs
            .iter()
            .map(|(run, layers)| Curve {
                label: run.clone(),
                points: layers
                    .iter()
                    .enumerate()
                    .map(|(j, l)| (j as f64, l.density))
                    .collect(),
            })
            .collect();
        draw_lines(&mut chart, &curves, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    atomic_write(path, svg.as_bytes())
}

/// `(epoch, f(m))` for a history.
pub fn per_epoch(h: &[EpochMetrics], f: impl Fn(&EpochMetrics) -> f64) -> Vec<(f64, f64)> {
    h.iter().map(|m| (m.epoch as f64, f(m))).collect()
}
