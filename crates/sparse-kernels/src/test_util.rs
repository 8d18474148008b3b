//! Deterministic test inputs shared by the unit tests of the kernels.

/// Deterministic values in [-1, 1) (a 64-bit LCG; independent of the kernels).
pub(crate) fn lcg(state: &mut u64) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A random `rows x k` CSR with about `density` of its entries set.
pub(crate) fn random_csr(
    rows: usize,
    k: usize,
    density: f32,
    seed: u64,
) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let mut st = seed;
    let (mut ptr, mut cols, mut vals) = (vec![0u32], Vec::new(), Vec::new());
    for _ in 0..rows {
        for c in 0..k {
            if (lcg(&mut st) + 1.0) / 2.0 < density {
                cols.push(c as u32);
                vals.push(lcg(&mut st));
            }
        }
        ptr.push(cols.len() as u32);
    }
    (ptr, cols, vals)
}
