//! Keeping freed activation memory for reuse (glibc settings, and a cache of the largest
//! blocks), and huge pages for the largest buffers.
//!
//! A training step allocates and frees activations, gradients and scratch buffers of many
//! megabytes. By default glibc serves those above a moving threshold with fresh `mmap`s and
//! gives freed heap tops back to the kernel, so every pass pays page faults and the zeroing of
//! new pages (measured: ResNet-20 RigL 90%, the 8x8-stage sparse forward took 9 ms per layer
//! instead of 3). [`keep_freed_memory`] fixes the threshold at glibc's maximum (32 MiB) and
//! stops the trimming, so the same buffers are reused from step to step. It also keeps every
//! thread on glibc's main arena: a worker thread's own arena unmaps a whole heap (up to
//! 64 MiB) as soon as it is empty, whatever the trim threshold, and ResNet-18 at batch 128
//! faulted in about 44,000 fresh 4 KiB pages per step that way (about 1,000 with one arena).
//! The kernels allocate few, large buffers, so one arena's lock costs nothing measurable.
//! Memory use stays at the peak of one step. Other platforms' allocators are left alone.
//! Blocks above that threshold, which glibc maps and unmaps each time, are kept by
//! [`HugePageAlloc`] in a [`cache::BlockCache`] of at most `SPARSE_ALLOC_CACHE_MIB` MiB
//! (default 4096; 0 turns it off).

mod cache;

use std::sync::atomic::{AtomicUsize, Ordering};

/// The most bytes [`HugePageAlloc`] keeps in freed large blocks.
static CACHE_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_CACHE_MIB << 20);
const DEFAULT_CACHE_MIB: usize = 4096;
static CACHE: cache::BlockCache = cache::BlockCache::new();

/// Applies the allocator settings above, and reads `SPARSE_ALLOC_CACHE_MIB` (a number of
/// MiB; anything else is an error); call once at startup, before any thread starts.
pub fn keep_freed_memory() -> anyhow::Result<()> {
    if let Some(v) = std::env::var_os("SPARSE_ALLOC_CACHE_MIB") {
        let mib: usize = v
            .to_str()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("SPARSE_ALLOC_CACHE_MIB must be a whole number of MiB, got {v:?}")
            })?;
        CACHE_LIMIT.store(mib.saturating_mul(1 << 20), Ordering::Relaxed);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's upper limit for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2).
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes allocator parameters; called before other threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    Ok(())
}

/// The system allocator, asking the kernel for transparent huge pages (`MADV_HUGEPAGE`) on
/// allocations glibc maps afresh (more than the 32 MiB threshold above, such as a batch of
/// 128 64-channel 32x32 activations). Such a buffer is otherwise faulted in 4 KiB page by
/// page on first touch, every step; with huge pages it takes one fault per 2 MiB. Where the
/// kernel has THP off, or another platform, this is the system allocator unchanged. Freed
/// blocks of that size go to the block cache, and an allocation of the same layout takes one
/// back (zeroing it when asked) instead of mapping new pages.
pub struct HugePageAlloc;

/// Allocations of at least this many bytes are advised (they are mmapped by glibc).
const HUGE_FROM: usize = 32 << 20;

#[cfg(target_os = "linux")]
fn advise_huge(p: *mut u8, size: usize) {
    const HUGE: usize = 2 << 20;
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize + size) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside the allocation just made; MADV_HUGEPAGE only changes
        // how the kernel backs it (an error, e.g. THP disabled, leaves it as it was).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: *mut u8, _: usize) {}

// SAFETY: every block comes from `System`, which upholds the `GlobalAlloc` contract, and goes
// back to it with the layout it was made with. A cached block is handed out only for exactly
// that layout, to one caller at a time (taken out of the cache under its lock), and zeroed
// when `alloc_zeroed` asks. The advice does not change the memory's contents or ownership.
unsafe impl std::alloc::GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.size() >= HUGE_FROM {
            if let Some(p) = CACHE.take(l.size(), l.align()) {
                return p;
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() && l.size() >= HUGE_FROM {
            advise_huge(p, l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.size() >= HUGE_FROM {
            if let Some(p) = CACHE.take(l.size(), l.align()) {
                // SAFETY: the block was allocated with this layout and is no one else's.
                unsafe { p.write_bytes(0, l.size()) };
                return p;
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { std::alloc::System.alloc_zeroed(l) };
        if !p.is_null() && l.size() >= HUGE_FROM {
            advise_huge(p, l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        if l.size() < HUGE_FROM {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { std::alloc::System.dealloc(p, l) };
        }
        let limit = CACHE_LIMIT.load(Ordering::Relaxed);
        for (q, size, align) in CACHE
            .put(p, l.size(), l.align(), limit)
            .into_iter()
            .flatten()
        {
            // SAFETY: every evicted block (this one too, when not kept) was allocated by
            // `System` with this size and alignment, and is no longer in use.
            unsafe {
                std::alloc::System.dealloc(
                    q as *mut u8,
                    std::alloc::Layout::from_size_align_unchecked(size, align),
                )
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let q = unsafe { std::alloc::System.realloc(p, l, size) };
        if !q.is_null() && size >= HUGE_FROM {
            advise_huge(q, size);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// Advised and cached allocations behave as the system's: zeroed when asked (a reused
    /// block too), contents kept across a growing realloc, and small ones untouched.
    #[test]
    fn huge_page_allocations_keep_their_contents() {
        let a = HugePageAlloc;
        for size in [4096usize, HUGE_FROM, HUGE_FROM + 12345] {
            let l = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: non-zero size; every pointer is checked, used within its size and freed
            // with the layout it was made with.
            unsafe {
                let z = a.alloc_zeroed(l);
                assert!(!z.is_null());
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                a.dealloc(z, l);
                let p = a.alloc(l);
                assert!(!p.is_null());
                for i in (0..size).step_by(4093) {
                    *p.add(i) = (i % 251) as u8;
                }
                // A freed large block comes back from the cache: zeroed when asked.
                a.dealloc(p, l);
                let p = a.alloc_zeroed(l);
                assert!(!p.is_null());
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                for i in (0..size).step_by(4093) {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, l, size * 2);
                assert!(!q.is_null());
                for i in (0..size).step_by(4093) {
                    assert_eq!(*q.add(i), (i % 251) as u8);
                }
                a.dealloc(q, Layout::from_size_align(size * 2, 64).unwrap());
            }
        }
    }
}
