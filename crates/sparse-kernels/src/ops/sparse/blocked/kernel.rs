//! The AVX-512 kernel of the blocked SpMM: one (chunk, panel) tile, a group's three rows
//! in lock-step with 3 x 4 zmm accumulators.

use super::{BlockedCsr, Tile, GROUP, ROW_CHUNK};
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
            _ => tile::<4>(a, xp, t, part, out),
        }
    }
}

/// For every column block, then every row group of the chunk: continue the members' FMA
/// chains (kept in `part` between blocks) over the group's steps in `GROUP x R` zmm
/// registers. In the last block, `out = alpha·sum + beta·out`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    a: &BlockedCsr,
    xp: &[f32],
    t: &Tile,
    part: &mut [f32],
    out: *mut f32,
) {
    let nkb = a.cols.div_ceil(a.kb);
    let r0 = t.chunk * ROW_CHUNK;
    let rows = (a.rows - r0).min(ROW_CHUNK);
    let w = 16 * R;
    assert!(xp.len() == nkb * (a.kb + 1) * w && part.len() >= (rows + 1) * w);
    assert!(t.j0 + t.width <= t.n && t.width > w - 16 && t.width <= w);
    // Running sums of every row, plus the scratch row of empty group slots.
    part[..(rows + 1) * w].fill(0.0);
    let pp = part.as_mut_ptr();
    // Lanes of the last register that are real columns.
    let tail = ((1u32 << (t.width - 16 * (R - 1))) - 1) as __mmask16;
    let (va, vb) = (_mm512_set1_ps(t.alpha), _mm512_set1_ps(t.beta));
    for b in 0..nkb {
        // SAFETY (whole block): the group arrays were built together, so every group in
        // `gstart[cb]..gstart[cb+1]` has GROUP members (< rows + 1) and `GROUP·glen`
        // entries from `estart[cb]` on, each offset <= kb, i.e. a row of block `b`.
        let xb = unsafe { xp.as_ptr().add(b * (a.kb + 1) * w) };
        let last = b + 1 == nkb;
        let cb = t.chunk * nkb + b;
        let mut e = a.estart[cb] as usize;
        for g in a.gstart[cb] as usize..a.gstart[cb + 1] as usize {
            let steps = a.glen[g] as usize;
            if steps == 0 && !last {
                // Groups are sorted longest first: the rest are empty too.
                break;
            }
            let members = &a.grow[g * GROUP..][..GROUP];
            let mut acc = [[_mm512_setzero_ps(); R]; GROUP];
            for (m, acc) in acc.iter_mut().enumerate() {
                let p = unsafe { pp.add(members[m] as usize * w) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = unsafe { _mm512_loadu_ps(p.add(16 * r)) };
                }
            }
            let (offs, vals) = (&a.off[e..][..steps * GROUP], &a.val[e..][..steps * GROUP]);
            e += steps * GROUP;
            for (so, sv) in offs.chunks_exact(GROUP).zip(vals.chunks_exact(GROUP)) {
                for (m, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(sv[m]);
                    let xr = unsafe { xb.add(so[m] as usize * w) };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xv = unsafe { _mm512_loadu_ps(xr.add(16 * r)) };
                        *acc = _mm512_fmadd_ps(v, xv, *acc);
                    }
                }
            }
            for (m, acc) in acc.iter().enumerate() {
                let lr = members[m] as usize;
                if !last {
                    let p = unsafe { pp.add(lr * w) };
                    for (r, acc) in acc.iter().enumerate() {
                        unsafe { _mm512_storeu_ps(p.add(16 * r), *acc) };
                    }
                    continue;
                }
                if lr == rows {
                    continue;
                }
                // SAFETY: row r0 + lr < a.rows; columns j0 .. j0 + width <= n; masked
                // lanes past `width` are neither read nor written.
                let orow = unsafe { out.add((r0 + lr) * t.n + t.j0) };
                for (r, acc) in acc.iter().enumerate() {
                    let mask = if r + 1 == R { tail } else { 0xFFFF };
                    let p = unsafe { orow.add(16 * r) };
                    let mut res = _mm512_mul_ps(va, *acc);
                    if t.beta != 0.0 {
                        let old = unsafe { _mm512_maskz_loadu_ps(mask, p) };
                        res = _mm512_add_ps(res, _mm512_mul_ps(vb, old));
                    }
                    unsafe { _mm512_mask_storeu_ps(p, mask, res) };
                }
            }
        }
    }
}
