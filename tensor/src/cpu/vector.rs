//! f32 vectors behind one trait, so that a register-tiled kernel is written once and compiled
//! for AVX-512, AVX2+FMA or plain Rust.
//!
//! The fused loops leave vectorisation to LLVM (see `simd`), but kernels that keep a tile of
//! sums in registers (GEMM, direct convolution) need the vectors spelled out: LLVM's
//! vectoriser does not reliably keep a `[[f32; 32]; 12]` accumulator in 24 registers. A
//! kernel is a generic `#[inline(always)]` function over [`Simd`], instantiated inside a
//! `#[target_feature]` wrapper per instruction set; the intrinsics inline into the wrapper.
//!
//! Every method is `unsafe`: they may only run where the instruction set is present, and the
//! pointer methods read or write `LANES` (or the first `n`) floats at the pointer.

/// An instruction set's f32 vector and the operations kernels use.
pub trait Simd: Copy + 'static {
    /// The vector register type.
    type V: Copy;
    /// Floats per vector.
    const LANES: usize;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// `LANES` floats from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `n ≤ LANES` floats from `p`, zeros beyond; nothing past them is read.
    unsafe fn load_first(p: *const f32, n: usize) -> Self::V;
    /// Stores all lanes at `p` (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the first `n ≤ LANES` lanes at `p`; nothing past them is written.
    unsafe fn store_first(p: *mut f32, v: Self::V, n: usize);
    /// `acc + a · b`, fused where the instruction set has FMA.
    unsafe fn mul_add(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `if_above` in the lanes where `a` ranks above `b` with NaN the greatest value (`a > b`,
    /// or `a` is NaN and `b` is not: see `elementwise::ranks_above`), `otherwise` elsewhere.
    /// A running maximum built from it keeps the first NaN, as IEEE `maximum` does; beware of
    /// `_mm512_max_ps`, which returns its second operand when either is NaN.
    unsafe fn select_above(
        a: Self::V,
        b: Self::V,
        if_above: Self::V,
        otherwise: Self::V,
    ) -> Self::V;
    /// `if_equal` in the lanes where `a == b`, `otherwise` elsewhere.
    unsafe fn select_eq(a: Self::V, b: Self::V, if_equal: Self::V, otherwise: Self::V) -> Self::V;
    /// The first `n ≤ LANES` bytes from `p` as floats, zeros beyond; nothing past them is read.
    unsafe fn load_bytes(p: *const u8, n: usize) -> Self::V;
    /// The first `n ≤ LANES` lanes, whole numbers in `0..=255`, stored as bytes at `p`;
    /// nothing past them is written.
    unsafe fn store_bytes(p: *mut u8, v: Self::V, n: usize);
}

/// Calls the generic kernel `$f::<S, …>(…)` with `S` the vector type of a [`Level`] value
/// (the one [`dispatch`] compiled the caller for): `with_vectors!(level, f::<_, P>(x, y))`.
///
/// [`Level`]: crate::cpu::simd::Level
/// [`dispatch`]: crate::cpu::simd::dispatch
macro_rules! with_vectors {
    ($level:expr, $f:ident::<_ $(, $g:tt)*>($($arg:expr),* $(,)?)) => {
        match $level {
            #[cfg(target_arch = "x86_64")]
            $crate::cpu::simd::Level::Avx512 => {
                $f::<$crate::cpu::vector::Avx512 $(, $g)*>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            $crate::cpu::simd::Level::Avx2 => $f::<$crate::cpu::vector::Avx2 $(, $g)*>($($arg),*),
            _ => $f::<$crate::cpu::vector::Portable $(, $g)*>($($arg),*),
        }
    };
}
pub(crate) use with_vectors;

/// Plain Rust, 8 lanes (LLVM maps them to whatever the baseline target has).
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl Simd for Portable {
    type V = [f32; 8];
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self::V {
        let mut v = [0.0; 8];
        std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n.min(8));
        v
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        std::ptr::write_unaligned(p as *mut [f32; 8], v)
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, v: Self::V, n: usize) {
        std::ptr::copy_nonoverlapping(v.as_ptr(), p, n.min(8));
    }
    #[inline(always)]
    unsafe fn mul_add(acc: Self::V, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| acc[i] + a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn select_above(a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V {
        std::array::from_fn(|i| {
            if crate::cpu::kernels::elementwise::ranks_above(a[i], b[i]) {
                x[i]
            } else {
                y[i]
            }
        })
    }
    #[inline(always)]
    unsafe fn select_eq(a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V {
        std::array::from_fn(|i| if a[i] == b[i] { x[i] } else { y[i] })
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8, n: usize) -> Self::V {
        let mut v = [0.0; 8];
        for (i, v) in v.iter_mut().enumerate().take(n) {
            *v = f32::from(*p.add(i));
        }
        v
    }
    #[inline(always)]
    unsafe fn store_bytes(p: *mut u8, v: Self::V, n: usize) {
        for (i, &v) in v.iter().enumerate().take(n) {
            *p.add(i) = v as u8;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// AVX-512F: 16 lanes, masked partial loads and stores.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512;

    /// The mask of the first `n` of 16 lanes.
    #[inline(always)]
    fn first_lanes(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_first(p: *const f32, n: usize) -> __m512 {
            // Kernels call this for full vectors too: take the plain load for them.
            if n >= 16 {
                return _mm512_loadu_ps(p);
            }
            _mm512_maskz_loadu_ps(first_lanes(n), p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn store_first(p: *mut f32, v: __m512, n: usize) {
            if n >= 16 {
                return _mm512_storeu_ps(p, v);
            }
            _mm512_mask_storeu_ps(p, first_lanes(n), v)
        }
        #[inline(always)]
        unsafe fn mul_add(acc: __m512, a: __m512, b: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn select_above(a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
            // `!(a <= b)` (true where either is NaN), in the lanes where `b` is a number.
            let b_ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(b, b);
            let above = _mm512_mask_cmp_ps_mask::<_CMP_NLE_UQ>(b_ordered, a, b);
            _mm512_mask_blend_ps(above, y, x)
        }
        #[inline(always)]
        unsafe fn select_eq(a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b), y, x)
        }
        #[inline(always)]
        unsafe fn load_bytes(p: *const u8, n: usize) -> __m512 {
            let bytes = if n >= 16 {
                _mm_loadu_si128(p as *const __m128i)
            } else {
                let mut b = [0u8; 16];
                std::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), n);
                _mm_loadu_si128(b.as_ptr() as *const __m128i)
            };
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes))
        }
        #[inline(always)]
        unsafe fn store_bytes(p: *mut u8, v: __m512, n: usize) {
            let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
            if n >= 16 {
                _mm_storeu_si128(p as *mut __m128i, bytes);
            } else {
                let mut b = [0u8; 16];
                _mm_storeu_si128(b.as_mut_ptr() as *mut __m128i, bytes);
                std::ptr::copy_nonoverlapping(b.as_ptr(), p, n);
            }
        }
    }

    /// AVX2 with FMA: 8 lanes; partial loads and stores through `vmaskmovps`.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2;

    /// The mask of the first `n` of 8 lanes.
    #[inline(always)]
    unsafe fn first_lanes8(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n.min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_first(p: *const f32, n: usize) -> __m256 {
            // `vmaskmovps` is slower than a plain load; kernels call this for full vectors too.
            if n >= 8 {
                return _mm256_loadu_ps(p);
            }
            _mm256_maskload_ps(p, first_lanes8(n))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn store_first(p: *mut f32, v: __m256, n: usize) {
            if n >= 8 {
                return _mm256_storeu_ps(p, v);
            }
            _mm256_maskstore_ps(p, first_lanes8(n), v)
        }
        #[inline(always)]
        unsafe fn mul_add(acc: __m256, a: __m256, b: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn select_above(a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
            // `!(a <= b)` (true where either is NaN), in the lanes where `b` is a number.
            let above = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_NLE_UQ>(a, b),
                _mm256_cmp_ps::<_CMP_ORD_Q>(b, b),
            );
            _mm256_blendv_ps(y, x, above)
        }
        #[inline(always)]
        unsafe fn select_eq(a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
            _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b))
        }
        #[inline(always)]
        unsafe fn load_bytes(p: *const u8, n: usize) -> __m256 {
            let mut b = [0u8; 8];
            std::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), n.min(8));
            let bytes = _mm_cvtsi64_si128(i64::from_le_bytes(b));
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
        }
        #[inline(always)]
        unsafe fn store_bytes(p: *mut u8, v: __m256, n: usize) {
            let mut w = [0i32; 8];
            _mm256_storeu_si256(w.as_mut_ptr() as *mut __m256i, _mm256_cvtps_epi32(v));
            for (i, &w) in w.iter().enumerate().take(n) {
                *p.add(i) = w as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads, partial loads and stores, and the arithmetic, lane by lane against scalars.
    unsafe fn check<S: Simd>() {
        let l = S::LANES;
        let a: Vec<f32> = (0..l).map(|i| i as f32 - 3.5).collect();
        let b: Vec<f32> = (0..l).map(|i| 0.25 * i as f32).collect();
        let c: Vec<f32> = (0..l).map(|i| 1.0 - i as f32).collect();
        let (va, vb, vc) = (
            S::load(a.as_ptr()),
            S::load(b.as_ptr()),
            S::load(c.as_ptr()),
        );
        let mut out = vec![f32::NAN; l + 1];
        S::store(out.as_mut_ptr(), S::mul_add(vc, va, vb));
        for i in 0..l {
            assert_eq!(out[i], c[i] + a[i] * b[i]);
        }
        S::store(out.as_mut_ptr(), S::add(va, vb));
        assert!((0..l).all(|i| out[i] == a[i] + b[i]));
        for n in 0..=l {
            let mut dst = vec![7.0f32; l + 1];
            S::store_first(dst.as_mut_ptr(), S::load_first(a.as_ptr(), n), n);
            assert_eq!(&dst[..n], &a[..n]);
            assert!(
                dst[n..].iter().all(|&v| v == 7.0),
                "store_first({n}) wrote past n"
            );
            S::store(dst.as_mut_ptr(), S::load_first(a.as_ptr(), n));
            assert!(
                dst[n..l].iter().all(|&v| v == 0.0),
                "load_first({n}) not zero-filled"
            );
        }
        S::store(out.as_mut_ptr(), S::splat(2.5));
        assert!(out[..l].iter().all(|&v| v == 2.5));

        // Selections: NaN ranks above every number and not above NaN; NaN equals nothing.
        let mut d = b.clone();
        d[0] = f32::NAN;
        d[1] = a[1];
        d[3] = f32::INFINITY;
        d[4] = f32::NEG_INFINITY;
        let mut e = a.clone();
        e[0] = f32::NAN;
        e[2] = f32::NAN;
        e[5] = f32::INFINITY;
        let (vd, ve) = (S::load(d.as_ptr()), S::load(e.as_ptr()));
        let ranks_above = |x: f32, y: f32| x > y || (x.is_nan() && !y.is_nan());
        for (left, vleft, right, vright) in [(&a, va, &d, vd), (&e, ve, &d, vd), (&d, vd, &e, ve)] {
            S::store(out.as_mut_ptr(), S::select_above(vleft, vright, vb, vc));
            for i in 0..l {
                let want = if ranks_above(left[i], right[i]) {
                    b[i]
                } else {
                    c[i]
                };
                assert_eq!(
                    out[i], want,
                    "select_above({}, {}) lane {i}",
                    left[i], right[i]
                );
            }
        }
        S::store(out.as_mut_ptr(), S::select_eq(va, vd, vb, vc));
        for i in 0..l {
            assert_eq!(
                out[i],
                if a[i] == d[i] { b[i] } else { c[i] },
                "select_eq lane {i}"
            );
        }
        // Bytes round-trip, partially too.
        let bytes: Vec<u8> = (0..l).map(|i| (i * 37 % 256) as u8).collect();
        for n in 0..=l {
            let v = S::load_bytes(bytes.as_ptr(), n);
            S::store(out.as_mut_ptr(), v);
            for i in 0..l {
                let want = if i < n { f32::from(bytes[i]) } else { 0.0 };
                assert_eq!(out[i], want, "load_bytes({n}) lane {i}");
            }
            let mut dst = vec![9u8; l + 1];
            S::store_bytes(dst.as_mut_ptr(), v, n);
            assert_eq!(&dst[..n], &bytes[..n]);
            assert!(
                dst[n..].iter().all(|&b| b == 9),
                "store_bytes({n}) wrote past n"
            );
        }
        S::store_bytes(out.as_mut_ptr() as *mut u8, S::splat(255.0), 1);
        assert_eq!(*(out.as_ptr() as *const u8), 255);
    }

    #[test]
    fn every_instruction_set_agrees_with_scalar_arithmetic() {
        unsafe { check::<Portable>() };
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                unsafe { check::<Avx2>() };
            }
            if has!("avx512f") {
                unsafe { check::<Avx512>() };
            }
        }
    }
}
