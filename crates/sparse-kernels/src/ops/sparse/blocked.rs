//! Cache-blocked CSR layout for SpMM on AVX-512 machines.
//!
//! The plain CSR kernel streams a whole row of `X` from L2 for every nonzero, which caps it
//! at the L2→L1 bandwidth. This layout cuts `A` into chunks of [`ROW_CHUNK`] rows and, inside
//! each chunk, into blocks of [`K_BLOCK`] columns, and stores every (row, block) segment
//! contiguously in loop order with 16-bit block-local column offsets. The kernel packs `X`
//! into column panels of up to 128 columns, so one block of a panel (128 rows x 512 B =
//! 64 KiB) is reused from L1/L2 by all rows of a chunk while the segments stream in order.
//! Measured on 4096x4096 · 4096x256 (`docs/benchmarks.md`): 1.3x faster than the CSR kernel
//! at 70-80% sparsity, 1.1-1.2x at 90%; not reliably faster from 95% on, where a segment
//! holds a few entries, so sparser matrices keep the CSR kernel ([`MIN_DENSITY`]).
//!
//! The structure is built once per mask (O(nnz)); [`BlockedCsr::refresh`] copies new values
//! in O(nnz) after each optimizer step, like the CSR transpose of [`super::SparseWeight`].

use rayon::prelude::*;
use sparse_core::Csr;

/// Columns of `A` (rows of `X`) per block.
const K_BLOCK: usize = 128;
/// Rows of `A` per chunk: a chunk's running sums for one panel (512 x 512 B) stay in L2.
const ROW_CHUNK: usize = 512;
/// Widest `X` panel, in 16-float registers.
const MAX_REGS: usize = 8;
/// Densities from which the blocked kernel is used. Measured on 4096x4096 · 4096x256
/// (criterion medians): 1.3x faster than the CSR kernel at 20-30% density, 1.1-1.2x at 10%;
/// at 5% 0.9-1.2x depending on the run, and even or slower from 2% down.
const MIN_DENSITY: f64 = 0.08;

/// `A` in (row chunk, column block, row) segment order; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct BlockedCsr {
    rows: usize,
    cols: usize,
    /// Entries of each segment, indexed `chunk_row0 · nkb + block · chunk_rows + row`.
    len: Vec<u16>,
    /// First entry of each (chunk, block), plus the total.
    start: Vec<u32>,
    /// Column of each entry relative to its block.
    off: Vec<u16>,
    val: Vec<f32>,
    /// CSR entry index of each entry (for [`BlockedCsr::refresh`]).
    src: Vec<u32>,
}

impl BlockedCsr {
    /// Whether SpMM with `a` should use this layout on this machine.
    pub(crate) fn worthwhile(a: &Csr) -> bool {
        let size = a.rows() * a.cols();
        crate::simd::has_avx512() && size > 0 && a.nnz() as f64 >= MIN_DENSITY * size as f64
    }

    /// Builds the layout of `a` (its values included) in O(nnz + rows · cols / K_BLOCK).
    /// `a` must have at least one column.
    pub(crate) fn new(a: &Csr) -> Self {
        let (rows, cols) = (a.rows(), a.cols());
        assert!(cols > 0, "blocked CSR needs at least one column");
        let (row_ptr, col_idx) = (a.row_ptr(), a.col_idx());
        let nkb = cols.div_ceil(K_BLOCK);
        let nch = rows.div_ceil(ROW_CHUNK);
        let mut len = vec![0u16; rows * nkb];
        let mut start = Vec::with_capacity(nch * nkb + 1);
        let mut off = Vec::with_capacity(a.nnz());
        let mut src = Vec::with_capacity(a.nnz());
        let mut cursor: Vec<usize> = row_ptr[..rows].iter().map(|&p| p as usize).collect();
        for c in 0..nch {
            let (r0, r1) = (c * ROW_CHUNK, ((c + 1) * ROW_CHUNK).min(rows));
            for b in 0..nkb {
                start.push(off.len() as u32);
                let lim = ((b + 1) * K_BLOCK).min(cols) as u32;
                for r in r0..r1 {
                    let (s, end) = (cursor[r], row_ptr[r + 1] as usize);
                    let mut e = s;
                    while e < end && col_idx[e] < lim {
                        off.push((col_idx[e] as usize - b * K_BLOCK) as u16);
                        src.push(e as u32);
                        e += 1;
                    }
                    len[r0 * nkb + b * (r1 - r0) + (r - r0)] = (e - s) as u16;
                    cursor[r] = e;
                }
            }
        }
        start.push(off.len() as u32);
        let val = src.iter().map(|&e| a.values()[e as usize]).collect();
        BlockedCsr {
            rows,
            cols,
            len,
            start,
            off,
            val,
            src,
        }
    }

    /// Copies the values of `a` (same structure as at build) into the layout.
    pub(crate) fn refresh(&mut self, a: &Csr) {
        let v = a.values();
        for (d, &e) in self.val.iter_mut().zip(&self.src) {
            *d = v[e as usize];
        }
    }

    /// `out (rows x n) = alpha · A · X + beta · out` for row-major `X (cols x n)`. Each output
    /// element sums its products block by block in a fixed order (deterministic).
    pub(crate) fn spmm(
        &self,
        x: &[f32],
        n: usize,
        alpha: f32,
        beta: f32,
        out: &mut [f32],
        parallel: bool,
    ) {
        assert!(crate::simd::has_avx512(), "blocked SpMM needs AVX-512");
        assert_eq!(x.len(), self.cols * n, "blocked SpMM: X size");
        assert_eq!(out.len(), self.rows * n, "blocked SpMM: output size");
        if n == 0 || self.rows == 0 {
            return;
        }
        // Panels of X: (first column, registers), each packed as `cols x 16·regs` floats.
        let mut panels = Vec::new();
        let mut j0 = 0;
        while j0 < n {
            let regs = (n - j0).div_ceil(16).min(MAX_REGS);
            panels.push((j0, regs));
            j0 += 16 * regs;
        }
        PACKED.with_borrow_mut(|packed| {
            packed.resize(self.cols * n.div_ceil(16) * 16, 0.0);
            pack(x, n, self.cols, &panels, packed, parallel);
            let packed = &packed[..];
            let nch = self.rows.div_ceil(ROW_CHUNK);
            let out_ptr = SharedOut(out.as_mut_ptr());
            // Chunk-major task order: threads working at the same time own different rows of
            // `out`, so they never share a cache line.
            let task = |t: usize| {
                let (c, p) = (t / panels.len(), t % panels.len());
                let (j0, regs) = panels[p];
                let xp = &packed[self.cols * j0..self.cols * (j0 + 16 * regs)];
                let tile = Tile {
                    chunk: c,
                    j0,
                    width: (n - j0).min(16 * regs),
                    n,
                    alpha,
                    beta,
                };
                PARTIAL.with_borrow_mut(|part| {
                    part.resize(ROW_CHUNK * 16 * MAX_REGS, 0.0);
                    // SAFETY: AVX-512 was checked above; tasks write disjoint (chunk rows x
                    // panel columns) tiles of `out`, which holds rows x n floats (checked).
                    unsafe { kernel::panel(self, xp, regs, &tile, part, out_ptr.get()) }
                })
            };
            if parallel {
                (0..panels.len() * nch).into_par_iter().for_each(task);
            } else {
                (0..panels.len() * nch).for_each(task);
            }
        });
    }
}

std::thread_local! {
    /// Packed `X` panels, reused across calls on the calling thread.
    static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A task's running sums (chunk rows x panel width), reused on each worker thread.
    static PARTIAL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies `X (k x n)` into `packed`: panel `(j0, regs)` becomes a `k x 16·regs` row-major
/// block at offset `k · j0`, zero-padded past column `n` (those lanes are never stored,
/// zeros only keep them cheap).
fn pack(
    x: &[f32],
    n: usize,
    k: usize,
    panels: &[(usize, usize)],
    packed: &mut [f32],
    parallel: bool,
) {
    let dst = SharedOut(packed.as_mut_ptr());
    let rows = |j: usize| {
        for &(j0, regs) in panels {
            let (w, cols) = (16 * regs, (n - j0).min(16 * regs));
            // SAFETY: row `j` of panel `j0` lies at `k·j0 + j·w .. + w` inside `packed`
            // (k · n rounded up to 16 floats); different `j` write disjoint ranges.
            unsafe {
                let d = dst.get().add(k * j0 + j * w);
                std::ptr::copy_nonoverlapping(x.as_ptr().add(j * n + j0), d, cols);
                std::ptr::write_bytes(d.add(cols), 0, w - cols);
            };
        }
    };
    if parallel {
        (0..k).into_par_iter().with_min_len(256).for_each(rows);
    } else {
        (0..k).for_each(rows);
    }
}

/// A raw output pointer shared by tasks that write disjoint parts.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used for disjoint writes, see the call sites.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One task: a row chunk of `A` times one `X` panel.
struct Tile {
    chunk: usize,
    /// First output column of the panel, and how many of its columns are real.
    j0: usize,
    width: usize,
    n: usize,
    alpha: f32,
    beta: f32,
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{BlockedCsr, Tile, K_BLOCK, ROW_CHUNK};
    use std::arch::x86_64::*;

    /// Runs [`tile`] with the panel's register count as a compile-time constant.
    ///
    /// # Safety
    /// AVX-512F must be available; `out` must hold `a.rows x tile.n` floats, and no other
    /// thread may touch this tile of it.
    pub(super) unsafe fn panel(
        a: &BlockedCsr,
        xp: &[f32],
        regs: usize,
        t: &Tile,
        part: &mut [f32],
        out: *mut f32,
    ) {
        unsafe {
            match regs {
                1 => tile::<1>(a, xp, t, part, out),
                2 => tile::<2>(a, xp, t, part, out),
                3 => tile::<3>(a, xp, t, part, out),
                4 => tile::<4>(a, xp, t, part, out),
                5 => tile::<5>(a, xp, t, part, out),
                6 => tile::<6>(a, xp, t, part, out),
                7 => tile::<7>(a, xp, t, part, out),
                _ => tile::<8>(a, xp, t, part, out),
            }
        }
    }

    /// For every column block, then every row of the chunk: continue the row's FMA chain
    /// (kept in `part` between blocks) over the segment's entries in `R` zmm registers. After
    /// the last block, `out = alpha·sum + beta·out`. Each output element is one FMA chain
    /// over its row's entries in column order.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(
        a: &BlockedCsr,
        xp: &[f32],
        t: &Tile,
        part: &mut [f32],
        out: *mut f32,
    ) {
        let nkb = a.cols.div_ceil(K_BLOCK);
        let r0 = t.chunk * ROW_CHUNK;
        let rows = (a.rows - r0).min(ROW_CHUNK);
        let w = 16 * R;
        assert!(xp.len() == a.cols * w && part.len() >= rows * w);
        assert!(t.j0 + t.width <= t.n && t.width > w - 16 && t.width <= w);
        // Lanes of the last register that are real columns.
        let tail = ((1u32 << (t.width - 16 * (R - 1))) - 1) as __mmask16;
        let (va, vb) = (_mm512_set1_ps(t.alpha), _mm512_set1_ps(t.beta));
        for b in 0..nkb {
            let xb = xp[b * K_BLOCK * w..].as_ptr();
            let (first, last) = (b == 0, b + 1 == nkb);
            let mut e = a.start[t.chunk * nkb + b] as usize;
            let lens = &a.len[r0 * nkb + b * rows..][..rows];
            for (lr, &l) in lens.iter().enumerate() {
                let l = l as usize;
                if l == 0 && !first && !last {
                    continue;
                }
                let (offs, vals) = (&a.off[e..e + l], &a.val[e..e + l]);
                e += l;
                let pr = part[lr * w..][..w].as_mut_ptr();
                let mut acc = [_mm512_setzero_ps(); R];
                if !first {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: `pr` holds `w = 16·R` floats.
                        *acc = unsafe { _mm512_loadu_ps(pr.add(16 * r)) };
                    }
                }
                for (&o, &v) in offs.iter().zip(vals) {
                    let vv = _mm512_set1_ps(v);
                    // SAFETY: `b·K_BLOCK + o` is a column of `A`, i.e. a row of the packed
                    // panel `xp` (`cols x w` floats).
                    let xr = unsafe { xb.add(o as usize * w) };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xv = unsafe { _mm512_loadu_ps(xr.add(16 * r)) };
                        *acc = _mm512_fmadd_ps(vv, xv, *acc);
                    }
                }
                if !last {
                    for (r, acc) in acc.iter().enumerate() {
                        unsafe { _mm512_storeu_ps(pr.add(16 * r), *acc) };
                    }
                    continue;
                }
                // SAFETY: row r0 + lr < a.rows; columns j0 .. j0 + width <= n; masked lanes
                // past `width` are neither read nor written.
                let orow = unsafe { out.add((r0 + lr) * t.n + t.j0) };
                for (r, acc) in acc.iter().enumerate() {
                    let m = if r + 1 == R { tail } else { 0xFFFF };
                    let p = unsafe { orow.add(16 * r) };
                    let mut res = _mm512_mul_ps(va, *acc);
                    if t.beta != 0.0 {
                        let old = unsafe { _mm512_maskz_loadu_ps(m, p) };
                        res = _mm512_add_ps(res, _mm512_mul_ps(vb, old));
                    }
                    unsafe { _mm512_mask_storeu_ps(p, m, res) };
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{BlockedCsr, Tile};

    /// Never called: [`BlockedCsr::worthwhile`] is false off x86-64.
    pub(super) unsafe fn panel(
        _: &BlockedCsr,
        _: &[f32],
        _: usize,
        _: &Tile,
        _: &mut [f32],
        _: *mut f32,
    ) {
        unreachable!("blocked SpMM is x86-64 only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::lcg;

    fn random_csr(rows: usize, cols: usize, density: f32, seed: u64) -> Csr {
        let (ptr, idx, vals) = crate::test_util::random_csr(rows, cols, density, seed);
        Csr::from_parts(&[rows, cols], ptr, idx, vals).unwrap()
    }

    /// Several row chunks and column blocks, every panel width (full 128-column panels, a
    /// 1..8-register tail, a masked last register), alpha/beta, an all-zero matrix and a
    /// refresh, against an f64 reference; serial and parallel runs agree bit for bit.
    #[test]
    fn blocked_spmm_matches_f64_reference() {
        if !crate::simd::has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        for (ci, &(rows, cols, n, density)) in [
            (1, 1, 1, 1.0),
            (3, 17, 15, 0.5),
            (1100, 300, 150, 0.05),
            (600, 130, 16, 0.2),
            (513, 257, 129, 0.1),
            (40, 1000, 300, 0.03),
            (530, 200, 70, 0.0),
        ]
        .iter()
        .enumerate()
        {
            let mut a = random_csr(rows, cols, density, ci as u64);
            let mut blocked = BlockedCsr::new(&a);
            for round in 0..2 {
                if round == 1 {
                    // New values, same structure.
                    let mut st = 99 + ci as u64;
                    a.values_mut().iter_mut().for_each(|v| *v = lcg(&mut st));
                    blocked.refresh(&a);
                }
                let mut st = 1000 + ci as u64;
                let x: Vec<f32> = (0..cols * n).map(|_| lcg(&mut st)).collect();
                let out0: Vec<f32> = (0..rows * n).map(|_| lcg(&mut st)).collect();
                let (alpha, beta) = if round == 0 { (1.0, 0.0) } else { (2.0, -0.5) };
                // A sentinel past the end: masked tail stores must not write beyond `out`.
                let mut buf = out0.clone();
                buf.extend([7.0; 16]);
                blocked.spmm(&x, n, alpha, beta, &mut buf[..rows * n], true);
                assert!(
                    buf[rows * n..].iter().all(|&v| v == 7.0),
                    "wrote past the output"
                );
                let out = &buf[..rows * n];
                let mut serial = out0.clone();
                blocked.spmm(&x, n, alpha, beta, &mut serial, false);
                assert!(out
                    .iter()
                    .zip(&serial)
                    .all(|(p, s)| p.to_bits() == s.to_bits()));
                for r in 0..rows {
                    let (idx, vals) = a.row(r);
                    for j in 0..n {
                        let dot: f64 = idx
                            .iter()
                            .zip(vals)
                            .map(|(&c, &v)| v as f64 * x[c as usize * n + j] as f64)
                            .sum();
                        let want = alpha as f64 * dot + beta as f64 * out0[r * n + j] as f64;
                        let got = out[r * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "case {ci} round {round} ({r}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
