//! Output buffers that a kernel fills completely, without zeroing them first: on large
//! activations the zeroing is a whole extra pass over memory.

use std::mem::MaybeUninit;

/// `n` elements to be written before [`assume_written`].
pub(crate) fn unwritten(n: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit<f32>` needs no initialisation, and the capacity is `n`.
    unsafe { v.set_len(n) };
    v
}

/// The buffer of [`unwritten`] as f32.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn assume_written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same allocation, length and capacity; `MaybeUninit<f32>` has f32's layout, and
    // the caller guarantees that every element is initialised.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// Sets every element of `s` to `v` and returns it as f32.
pub(crate) fn fill(s: &mut [MaybeUninit<f32>], v: f32) -> &mut [f32] {
    s.fill(MaybeUninit::new(v));
    // SAFETY: every element was just written; same layout.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Copies `src` into `dst` (of the same length) in 8-element moves, inline: a short row is
/// not worth a call to `memcpy`.
pub(crate) fn copy(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in (&mut d).zip(&mut s) {
        let d: &mut [f32; 8] = d.try_into().expect("8 elements");
        *d = s.try_into().expect("8 elements");
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to three 8-element moves and a tail: the same elements, in place.
    #[test]
    fn copy_and_fill_write_every_element() {
        for n in 0..27 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 1.5 - 3.0).collect();
            let mut dst = unwritten(n + 2);
            let (head, rest) = dst.split_at_mut(1);
            fill(head, 7.0);
            let (mid, tail) = rest.split_at_mut(n);
            let mid = fill(mid, f32::NAN);
            copy(mid, &src);
            fill(tail, -1.0);
            // SAFETY: all n + 2 elements were written above.
            let dst = unsafe { assume_written(dst) };
            assert_eq!(dst[0], 7.0);
            assert_eq!(&dst[1..=n], &src[..]);
            assert_eq!(dst[n + 1], -1.0);
        }
    }
}
