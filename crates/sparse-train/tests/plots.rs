//! The plots render: a single run's accuracy/loss and density plots and `compare`'s plots
//! are valid SVG that a renderer (resvg) draws, with every series' colour on the canvas
//! and the axis labels and legend entries in the drawing.

mod common;

use std::path::Path;

use common::{cli, tiny_run};

/// Renders an SVG file; returns the pixels (RGBA) and the SVG text. With
/// `SPARSE_PLOT_PNG_DIR` set, also writes the PNG there (to look at).
fn render(path: &Path) -> (Vec<[u8; 4]>, String) {
    let svg = std::fs::read_to_string(path).unwrap();
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    if let Ok(f) = std::env::var("SPARSE_PLOT_FONT") {
        opt.fontdb_mut().set_sans_serif_family(f);
    }
    let tree = resvg::usvg::Tree::from_str(&svg, &opt)
        .unwrap_or_else(|e| panic!("{}: not valid SVG: {e}", path.display()));
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    if let Some(d) = std::env::var_os("SPARSE_PLOT_PNG_DIR") {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        pixmap
            .save_png(Path::new(&d).join(format!("{name}.png")))
            .unwrap();
    }
    let px = pixmap
        .pixels()
        .iter()
        .map(|p| [p.red(), p.green(), p.blue(), p.alpha()])
        .collect();
    (px, svg)
}

/// The text of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// How many pixels are (close to) `rgb`.
fn count(px: &[[u8; 4]], rgb: [u8; 3]) -> usize {
    px.iter()
        .filter(|p| p[3] > 200 && (0..3).all(|i| (p[i] as i32 - rgb[i] as i32).abs() < 12))
        .count()
}

const BLUE: [u8; 3] = [31, 119, 180];
const RED: [u8; 3] = [214, 39, 40];

#[test]
fn run_plots_and_compare_plots_render() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("rigl90"), tmp.path().join("set80"));
    assert!(tiny_run(&a, 3, &[]).0);
    assert!(tiny_run(&b, 3, &["--method", "set", "--sparsity", "0.8"]).0);

    let (px, svg) = render(&a.join("accuracy.svg"));
    assert!(
        count(&px, BLUE) > 200 && count(&px, RED) > 200,
        "train and test curves drawn"
    );
    let t = texts(&svg);
    for text in ["accuracy (%)", "loss", "epoch", "train", "test"] {
        assert!(
            t.iter().any(|s| s == text),
            "accuracy.svg lacks the text {text:?}: {t:?}"
        );
    }
    let (px, svg) = render(&a.join("density.svg"));
    assert!(count(&px, BLUE) > 50, "density curve drawn");
    let t = texts(&svg);
    assert!(
        t.iter().any(|s| s == "conv1.weight") && t.iter().any(|s| s == "layer"),
        "{t:?}"
    );

    let out = tmp.path().join("cmp");
    let (ok, err) = cli(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let table = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("| rigl90 | rigl | 0.900 | 0.89")
            && table.contains("| set80 | set | 0.800 |"),
        "{table}"
    );
    let (px, svg) = render(&out.join("compare_curves.svg"));
    assert!(
        count(&px, BLUE) > 200 && count(&px, RED) > 200,
        "one curve per run"
    );
    let t = texts(&svg);
    assert!(
        t.iter().any(|s| s == "rigl90") && t.iter().any(|s| s == "set80"),
        "legend: {t:?}"
    );
    let (px, _) = render(&out.join("compare_density.svg"));
    assert!(count(&px, BLUE) > 50 && count(&px, RED) > 50);

    let (ok, err) = cli(&["compare", tmp.path().join("nope").to_str().unwrap()]);
    assert!(!ok && err.contains("is not a run directory"), "{err}");
}
