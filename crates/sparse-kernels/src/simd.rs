//! Hot inner loops with runtime dispatch: an AVX-512 build (512-bit vectors) and an
//! AVX2+FMA build of each kernel when the CPU has them, a portable build otherwise. All are
//! the same generic code; only `madd` differs (fused on the fast paths, which share their
//! bits), so results are reproducible on a given machine.

/// Column tile of the SpMM and plane kernels: 64 f32 accumulators = 8 AVX registers.
pub(crate) const TILE: usize = 64;

/// True when the running CPU has AVX2 and FMA (checked once).
#[inline]
pub(crate) fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a * b + c`, fused when `F`.
#[inline(always)]
pub(crate) fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `(wide, avx2)`: the AVX-512 and the AVX2+FMA builds of `$generic::<true>`, as unsafe fns
/// (the CPU must have avx512f/vl, or avx2 and fma). [`dispatch_fma!`] picks one at run time;
/// tests call both to check that they give the same bits.
#[cfg(target_arch = "x86_64")]
macro_rules! both_builds {
    ($generic:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
            $generic::<true>($($arg),*)
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
            $generic::<true>($($arg),*)
        }
        (wide, avx2)
    }};
}

/// Defines `$name(args)` that runs `$generic::<true>` under `avx512f` (512-bit vectors) or
/// `avx2,fma` when available, else `$generic::<false>`. The generic code keeps its lanes
/// explicit and the compiler does not reorder float arithmetic, so the vector width only
/// changes speed: the AVX-512 and AVX2 builds give the same bits.
macro_rules! dispatch_fma {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                let (wide, fast) = both_builds!($generic($($arg: $ty),*) $(-> $ret)?);
                if $crate::simd::has_avx512() {
                    // SAFETY: the CPU supports avx512f/vl, avx2 and fma (checked at run time).
                    return unsafe { wide($($arg),*) };
                }
                if $crate::simd::has_fma() {
                    // SAFETY: the CPU supports avx2 and fma (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}

#[inline(always)]
fn dot_generic<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] = madd::<F>(x[i], y[i], acc[i]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail = madd::<F>(*x, *y, tail);
    }
    // Fixed pairwise reduction: deterministic.
    let mut w = 16;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0] + tail
}

dispatch_fma!(
    /// Dot product with a fixed summation order.
    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 => dot_generic
);

#[inline(always)]
fn dots_into_generic<const F: bool>(
    a: &[f32],
    n: usize,
    (t0, t1): (usize, usize),
    b: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    for (o, &r) in out.iter_mut().zip(rows) {
        let r = r as usize;
        *o += dot_generic::<F>(&a[r * n + t0..r * n + t1], b);
    }
}

dispatch_fma!(
    /// `out[e] += dot(a[rows[e]·n + t0 .. rows[e]·n + t1], b)` for every `e`: many
    /// [`dot`]s against one vector (the same sums, one dispatch).
    pub(crate) fn dots_into(
        a: &[f32],
        n: usize,
        tile: (usize, usize),
        b: &[f32],
        rows: &[u32],
        out: &mut [f32],
    ) => dots_into_generic
);

/// True when the running CPU has AVX-512F besides AVX2 and FMA (checked once).
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            has_fma() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the running CPU executes 512-bit FMAs at twice the 256-bit rate: AVX-512 on an
/// Intel CPU or on AMD Zen 5 and later (family 0x1A and up). AMD's Zen 4 (family 0x19) splits
/// every 512-bit operation into two 256-bit halves, so its AVX-512 peak equals its AVX2 peak,
/// as on a CPU without AVX-512. Read from CPUID once; the same CPU always gives the same
/// answer. [`crate::ExecPolicy::cpu_default`] sets its convolution threshold from it.
pub(crate) fn avx512_full_rate() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static FULL: OnceLock<bool> = OnceLock::new();
        *FULL.get_or_init(|| {
            if !has_avx512() {
                return false;
            }
            // CPUID leaves 0 and 1 exist on every x86-64 CPU.
            let (l0, l1) = (std::arch::x86_64::__cpuid(0), std::arch::x86_64::__cpuid(1));
            let amd = (l0.ebx, l0.edx, l0.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
            cpu_family(l1.eax).is_none_or(|family| !amd || family >= 0x1A)
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CPU family of CPUID leaf 1's `eax` (base family, plus the extended family when the
/// base is 0xF), or `None` for a zero signature.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn cpu_family(eax: u32) -> Option<u32> {
    if eax == 0 {
        return None;
    }
    let base = (eax >> 8) & 0xF;
    Some(if base == 0xF {
        base + ((eax >> 20) & 0xFF)
    } else {
        base
    })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::test_util::lcg;

    #[test]
    fn avx512_and_avx2_dots_give_the_same_bits() {
        if !has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut s = 7u64;
        let a: Vec<f32> = (0..4133).map(|_| lcg(&mut s)).collect();
        let b: Vec<f32> = (0..4133).map(|_| lcg(&mut s)).collect();
        let (wide, avx2) = both_builds!(dot_generic(a: &[f32], b: &[f32]) -> f32);
        for len in [0, 1, 7, 31, 32, 33, 100, 1000, 4133] {
            // SAFETY: the CPU has AVX-512 (checked above), hence avx2 and fma too.
            let (w, v) = unsafe { (wide(&a[..len], &b[..len]), avx2(&a[..len], &b[..len])) };
            assert_eq!(w.to_bits(), v.to_bits(), "length {len}");
        }
    }

    /// CPU families from published CPUID signatures: EPYC 9004 (Zen 4), EPYC 9005 (Zen 5),
    /// a Sapphire Rapids Xeon (base family 6, no extended family added).
    #[test]
    fn cpu_family_reads_base_and_extended_family() {
        assert_eq!(cpu_family(0x00A1_0F11), Some(0x19));
        assert_eq!(cpu_family(0x00B0_0F21), Some(0x1A));
        assert_eq!(cpu_family(0x0008_06F8), Some(6));
        assert_eq!(cpu_family(0), None);
    }
}
