//! Exact ERK budgets for a small network, seeded masks with those counts, and one
//! drop-and-grow update that keeps every layer's count.
//!
//! `cargo run -p sparse-core --example budget`

use sparse_core::{drop_and_grow, layer_budget, random_masks, Distribution, LayerShape};

fn main() -> Result<(), sparse_core::CoreError> {
    let layers = vec![
        LayerShape::new("conv1.weight", &[16, 3, 3, 3]),
        LayerShape::new("conv2.weight", &[32, 16, 3, 3]),
        LayerShape::new("fc.weight", &[10, 32]),
    ];
    let budget = layer_budget(&layers, 0.9, &Distribution::Erk { power: 1.0 }, &[])?;
    let masks = random_masks(&budget, 0);
    for (l, m) in layers.iter().zip(&masks) {
        println!(
            "{:<14} {:>6} weights, {:>5} active ({:.1}% dense)",
            l.name,
            m.len(),
            m.count_ones(),
            100.0 * m.density()
        );
    }
    // One RigL-style update on conv2: drop the 10% smallest |w|, grow the largest |g|.
    let m = &masks[1];
    let w: Vec<f32> = (0..m.len()).map(|i| ((i * 37) % 101) as f32).collect();
    let g: Vec<f32> = (0..m.len()).map(|i| ((i * 53) % 97) as f32).collect();
    let n = m.count_ones() / 10;
    let dg = drop_and_grow(m, &w, &g, n)?;
    println!(
        "drop-and-grow on conv2: {} dropped, {} grown, {} active before and after",
        dg.dropped.len(),
        dg.grown.len(),
        dg.mask.count_ones()
    );
    budget
        .check(layers.iter().zip(&masks).map(|(l, m)| (l.name.as_str(), m)))
        .map(|_| println!("budget check: ok"))
}
