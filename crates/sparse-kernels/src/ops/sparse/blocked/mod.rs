//! Cache-blocked, row-grouped CSR layout for SpMM on AVX-512 machines.
//!
//! The plain CSR kernel streams a whole row of `X` from L2/L3 for every nonzero and runs one
//! short FMA chain per row, so it is capped by cache bandwidth and branch mispredictions. This
//! layout cuts `A` into chunks of [`ROW_CHUNK`] rows and each chunk into blocks of [`K_BLOCK`]
//! columns. Inside a (chunk, block) the rows are sorted by their segment length (longest
//! first) and taken [`GROUP`] at a time; a group's segments are interleaved entry by entry and
//! padded to the group's longest with a zero value that points at an all-zero row of `X`
//! (sliced ELLPACK with sorting, SELL-C-σ, per block). The kernel packs `X` into page-aligned
//! column panels of up to 64 columns and runs a group's rows in lock-step: `GROUP x 4`
//! independent zmm accumulators, one trip count per group instead of one per row, and a
//! block of the panel (256 rows x 256 B = 64 KiB) reused by all rows of the chunk. Running
//! sums live in a per-task buffer between blocks.
//!
//! Measured on 4096x4096 · 4096x256 (`docs/benchmarks.md`): 1.6-1.9x faster than the CSR
//! kernel from 70% to 95% sparsity (1.26x at 98%, even at 99%), 11.3-11.9x faster than
//! dense SGEMM at 95%.
//!
//! The structure is built once per mask (O(nnz), chunks in parallel); [`BlockedCsr::refresh`]
//! copies new values in O(nnz) after each optimizer step, like the CSR transpose of
//! [`super::SparseWeight`].

use rayon::prelude::*;
use sparse_core::Csr;
use std::cmp::Reverse;

/// Columns of `A` (rows of `X`) per block.
const K_BLOCK: usize = 256;
/// Rows of `A` per chunk: a chunk's running sums for one panel (512 x 256 B) stay in L2.
const ROW_CHUNK: usize = 512;
/// Rows run in lock-step (each with `16 x panel registers` accumulators).
const GROUP: usize = 3;
/// Widest `X` panel, in 16-float registers.
const MAX_REGS: usize = 4;
/// Densities from which the blocked kernel is used: it was faster than the CSR kernel at
/// every density measured, 1% to 30% (4096x4096 · 4096x256, `docs/benchmarks.md`).
const MIN_DENSITY: f64 = 0.01;
/// `src` of a padding entry.
const PAD: u32 = u32::MAX;

/// `A` as row groups per (row chunk, column block); see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct BlockedCsr {
    rows: usize,
    cols: usize,
    /// Rows of `X` per block (`K_BLOCK`, or `cols` when smaller); the packed all-zero row of
    /// each block sits at this index, and padding entries point at it.
    kb: usize,
    /// First group of each (chunk, block), plus the total.
    gstart: Vec<u32>,
    /// First entry of each (chunk, block), plus the total.
    estart: Vec<u32>,
    /// Steps of each group: its longest segment.
    glen: Vec<u16>,
    /// Chunk-local row of each group member (`GROUP` per group); the chunk's row count marks
    /// an empty slot.
    grow: Vec<u16>,
    /// Column of each entry relative to its block (`kb` for padding), in group step order.
    off: Vec<u16>,
    val: Vec<f32>,
    /// CSR entry index of each entry ([`PAD`] for padding), for [`BlockedCsr::refresh`].
    src: Vec<u32>,
}

/// The layout of one row chunk, before the chunks are joined.
#[derive(Default)]
struct ChunkLayout {
    /// Groups and entries of each block.
    groups: Vec<u32>,
    entries: Vec<u32>,
    glen: Vec<u16>,
    grow: Vec<u16>,
    off: Vec<u16>,
    val: Vec<f32>,
    src: Vec<u32>,
}

impl BlockedCsr {
    /// Whether SpMM with `a` should use this layout on this machine.
    pub(crate) fn worthwhile(a: &Csr) -> bool {
        let size = a.rows() * a.cols();
        crate::simd::has_avx512()
            && size > 0
            && a.nnz() as f64 >= MIN_DENSITY * size as f64
            // Padding at most triples the entries; their indices are u32.
            && a.nnz().saturating_mul(GROUP) < PAD as usize
    }

    /// Builds the layout of `a` (its values included) in O(nnz + rows · cols / K_BLOCK).
    /// `a` must have at least one column.
    pub(crate) fn new(a: &Csr) -> Self {
        let (rows, cols) = (a.rows(), a.cols());
        assert!(cols > 0, "blocked CSR needs at least one column");
        let kb = K_BLOCK.min(cols);
        let nkb = cols.div_ceil(kb);
        let chunks: Vec<ChunkLayout> = (0..rows.div_ceil(ROW_CHUNK))
            .into_par_iter()
            .map(|c| build_chunk(a, c, kb, nkb))
            .collect();
        let mut l = BlockedCsr {
            rows,
            cols,
            kb,
            gstart: Vec::with_capacity(chunks.len() * nkb + 1),
            estart: Vec::with_capacity(chunks.len() * nkb + 1),
            glen: Vec::new(),
            grow: Vec::new(),
            off: Vec::new(),
            val: Vec::new(),
            src: Vec::new(),
        };
        for ch in chunks {
            let (mut g, mut e) = (l.glen.len() as u32, l.off.len() as u32);
            for (&ng, &ne) in ch.groups.iter().zip(&ch.entries) {
                l.gstart.push(g);
                l.estart.push(e);
                g += ng;
                e += ne;
            }
            l.glen.extend(ch.glen);
            l.grow.extend(ch.grow);
            l.off.extend(ch.off);
            l.val.extend(ch.val);
            l.src.extend(ch.src);
        }
        l.gstart.push(l.glen.len() as u32);
        l.estart.push(l.off.len() as u32);
        l
    }

    /// Copies the values of `a` (same structure as at build) into the layout.
    pub(crate) fn refresh(&mut self, a: &Csr) {
        let v = a.values();
        for (d, &e) in self.val.iter_mut().zip(&self.src) {
            if e != PAD {
                *d = v[e as usize];
            }
        }
    }

    /// `out (rows x n) = alpha · A · X + beta · out` for row-major `X (cols x n)`. Each output
    /// element sums its products block by block, in column order within a block (one FMA
    /// chain, independent of the thread count).
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
        // Panels of X: (first column, registers).
        let mut panels = Vec::new();
        let mut j0 = 0;
        while j0 < n {
            let regs = (n - j0).div_ceil(16).min(MAX_REGS);
            panels.push((j0, regs));
            j0 += 16 * regs;
        }
        // Floats of one packed column of a panel: every block's rows plus its zero row.
        let panel_rows = self.cols.div_ceil(self.kb) * (self.kb + 1);
        with_buffer(&PACKED, panel_rows * n.div_ceil(16) * 16, |packed| {
            pack(x, n, self.cols, self.kb, &panels, packed, parallel);
            let packed = &packed[..];
            let nch = self.rows.div_ceil(ROW_CHUNK);
            let out_ptr = SharedOut(out.as_mut_ptr());
            // Chunk-major task order: threads working at the same time own different rows of
            // `out`, so they never share a cache line.
            let task = |t: usize| {
                let (c, p) = (t / panels.len(), t % panels.len());
                let (j0, regs) = panels[p];
                let xp = &packed[panel_rows * j0..panel_rows * (j0 + 16 * regs)];
                let tile = Tile {
                    chunk: c,
                    j0,
                    width: (n - j0).min(16 * regs),
                    n,
                    alpha,
                    beta,
                };
                with_buffer(&PARTIAL, (ROW_CHUNK + 1) * 16 * regs, |part| {
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

/// Row chunk `c` of `a`: per block, its rows sorted by segment length (longest first, then
/// by row) and taken `GROUP` at a time, entries interleaved step by step and padded.
fn build_chunk(a: &Csr, c: usize, kb: usize, nkb: usize) -> ChunkLayout {
    let (row_ptr, col_idx, values) = (a.row_ptr(), a.col_idx(), a.values());
    let (r0, r1) = (c * ROW_CHUNK, ((c + 1) * ROW_CHUNK).min(a.rows()));
    let rows = r1 - r0;
    let mut cursor: Vec<usize> = row_ptr[r0..r1].iter().map(|&p| p as usize).collect();
    let mut l = ChunkLayout::default();
    // (segment length, chunk-local row, first CSR entry)
    let mut seg: Vec<(usize, usize, usize)> = Vec::with_capacity(rows);
    for b in 0..nkb {
        let lim = ((b + 1) * kb).min(a.cols()) as u32;
        seg.clear();
        for (lr, cur) in cursor.iter_mut().enumerate() {
            let (s, end) = (*cur, row_ptr[r0 + lr + 1] as usize);
            let mut e = s;
            while e < end && col_idx[e] < lim {
                e += 1;
            }
            seg.push((e - s, lr, s));
            *cur = e;
        }
        seg.sort_unstable_by_key(|&(len, lr, _)| (Reverse(len), lr));
        let (g0, e0) = (l.glen.len(), l.off.len());
        for grp in seg.chunks(GROUP) {
            let steps = grp[0].0;
            l.glen.push(steps as u16);
            for m in 0..GROUP {
                l.grow.push(grp.get(m).map_or(rows, |s| s.1) as u16);
            }
            for q in 0..steps {
                for m in 0..GROUP {
                    match grp.get(m) {
                        Some(&(len, _, s)) if q < len => {
                            l.off.push((col_idx[s + q] as usize - b * kb) as u16);
                            l.val.push(values[s + q]);
                            l.src.push((s + q) as u32);
                        }
                        _ => {
                            l.off.push(kb as u16);
                            l.val.push(0.0);
                            l.src.push(PAD);
                        }
                    }
                }
            }
        }
        l.groups.push((l.glen.len() - g0) as u32);
        l.entries.push((l.off.len() - e0) as u32);
    }
    l
}

/// A reusable buffer whose slices start on a 4 KiB page. Buffers from the allocator's mmap
/// path start 16 bytes past a page, which splits every 64-byte load across two cache lines;
/// page alignment also measured faster than 64-byte alignment for the packed panels.
#[derive(Default)]
struct PageAligned(Vec<f32>);

impl PageAligned {
    /// A page-aligned slice of `len` floats (contents unspecified).
    fn get(&mut self, len: usize) -> &mut [f32] {
        const PAGE_FLOATS: usize = 4096 / 4;
        if self.0.len() < len + PAGE_FLOATS {
            self.0.resize(len + PAGE_FLOATS, 0.0);
        }
        let skip = (self.0.as_ptr() as usize).wrapping_neg() % 4096 / 4;
        &mut self.0[skip..skip + len]
    }
}

type Buffer = std::cell::Cell<PageAligned>;

std::thread_local! {
    /// Packed `X` panels, reused across calls on the calling thread.
    static PACKED: Buffer = Buffer::default();
    /// A task's running sums (chunk rows + 1 scratch row, x panel width), per worker thread.
    static PARTIAL: Buffer = Buffer::default();
}

/// Runs `f` on `len` page-aligned floats of the thread's buffer `key` (contents
/// unspecified). Re-entrant: a call nested on the same thread (a rayon worker that steals
/// another job while it waits, e.g. another trainer's step) gets a buffer of its own, and
/// the larger one is kept afterwards.
fn with_buffer<R>(
    key: &'static std::thread::LocalKey<Buffer>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.with(Buffer::take);
    let r = f(buf.get(len));
    key.with(|b| {
        let other = b.take();
        b.set(if other.0.len() > buf.0.len() {
            other
        } else {
            buf
        });
    });
    r
}

/// Copies `X (k x n)` into `packed`: panel `(j0, regs)` becomes, at offset `panel_rows · j0`,
/// one `(kb + 1) x 16·regs` row-major block per column block of `A`: the block's rows of `X`
/// (zeros past row `k` and past column `n`), then an all-zero row for padding entries.
fn pack(
    x: &[f32],
    n: usize,
    k: usize,
    kb: usize,
    panels: &[(usize, usize)],
    packed: &mut [f32],
    parallel: bool,
) {
    let nkb = k.div_ceil(kb);
    let panel_rows = nkb * (kb + 1);
    assert!(packed.len() >= panel_rows * n.div_ceil(16) * 16);
    let dst = SharedOut(packed.as_mut_ptr());
    let block = |b: usize| {
        for &(j0, regs) in panels {
            let (w, cols) = (16 * regs, (n - j0).min(16 * regs));
            for i in 0..=kb {
                let j = b * kb + i;
                // SAFETY: row `i` of block `b` of panel `j0` lies at
                // `panel_rows·j0 + (b·(kb+1) + i)·w .. + w` inside `packed` (asserted size);
                // different blocks write disjoint ranges.
                unsafe {
                    let d = dst.get().add(panel_rows * j0 + (b * (kb + 1) + i) * w);
                    if i < kb && j < k {
                        std::ptr::copy_nonoverlapping(x.as_ptr().add(j * n + j0), d, cols);
                        std::ptr::write_bytes(d.add(cols), 0, w - cols);
                    } else {
                        std::ptr::write_bytes(d, 0, w);
                    }
                };
            }
        }
    };
    if parallel {
        (0..nkb).into_par_iter().for_each(block);
    } else {
        (0..nkb).for_each(block);
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
mod kernel;

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

    /// `out == alpha · A · X + beta · out0`, against an f64 reference, to 1e-5 relative.
    #[allow(clippy::too_many_arguments)]
    fn assert_matches_f64(
        a: &Csr,
        x: &[f32],
        n: usize,
        alpha: f32,
        beta: f32,
        out0: &[f32],
        out: &[f32],
        ctx: &str,
    ) {
        for r in 0..a.rows() {
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
                    "{ctx} ({r}, {j}): {got} vs {want}"
                );
            }
        }
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
                let ctx = format!("case {ci} round {round}");
                assert_matches_f64(&a, &x, n, alpha, beta, &out0, out, &ctx);
            }
        }
    }

    /// Padding entries (rows shorter than their group's longest) read the packed zero row,
    /// never a real row of `X`: a NaN row of `X` that no entry references must not leak into
    /// any output, and the output matches the plain CSR result.
    #[test]
    fn padding_never_reads_x() {
        if !crate::simd::has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let (rows, cols, n) = (700, 600, 40);
        let a = random_csr(rows, cols, 0.05, 5);
        // Drop every entry in column 0 (and keep rows of uneven lengths).
        let (mut ptr, mut idx, mut vals) = (vec![0u32], vec![], vec![]);
        for r in 0..rows {
            let (ri, rv) = a.row(r);
            for (&c, &v) in ri.iter().zip(rv) {
                if c != 0 {
                    idx.push(c);
                    vals.push(v);
                }
            }
            ptr.push(idx.len() as u32);
        }
        let a = Csr::from_parts(&[rows, cols], ptr, idx, vals).unwrap();
        let mut st = 7;
        let mut x: Vec<f32> = (0..cols * n).map(|_| lcg(&mut st)).collect();
        x[..n].fill(f32::NAN);
        let mut out = vec![0.0; rows * n];
        BlockedCsr::new(&a).spmm(&x, n, 1.0, 0.0, &mut out, true);
        assert_matches_f64(&a, &x, n, 1.0, 0.0, &vec![0.0; rows * n], &out, "NaN row");
    }
}
