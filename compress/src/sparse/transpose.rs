//! 8×8 blocks of `f32` transposed in AVX registers, for moving samples into and out of
//! tiles. Element by element the move cost about 2 cycles a value (a store per value, each to
//! another cache line), as much as the sparse product of a 90 % sparse layer; in registers
//! it is 24 shuffles per 64 values.

/// Whether [`block`] may be called (AVX, checked once; `HASTEN_SIMD=baseline` turns it off).
pub fn available() -> bool {
    hasten_tensor::cpu::simd::level() != hasten_tensor::cpu::simd::Level::Baseline
}

/// `dst[c · dst_stride + r] = src[r · src_stride + c]` for `r, c < 8`.
///
/// # Panics
/// If either slice is too short for its eight rows. Call only where [`available`] holds.
#[inline(always)]
pub fn block(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8);
    assert!(available());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX (`available`), and the asserts keep every access in bounds.
    unsafe {
        x86::block(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// See [`super::block`]; the pointers must reach eight rows of eight values.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn block(src: *const f32, src_stride: usize, dst: *mut f32, stride: usize) {
        let row = |k: usize| src.add(k * src_stride);
        let r = [
            _mm256_loadu_ps(row(0)),
            _mm256_loadu_ps(row(1)),
            _mm256_loadu_ps(row(2)),
            _mm256_loadu_ps(row(3)),
            _mm256_loadu_ps(row(4)),
            _mm256_loadu_ps(row(5)),
            _mm256_loadu_ps(row(6)),
            _mm256_loadu_ps(row(7)),
        ];
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for k in 0..4 {
            let low = _mm256_permute2f128_ps::<0x20>(u[k], u[k + 4]);
            let high = _mm256_permute2f128_ps::<0x31>(u[k], u[k + 4]);
            _mm256_storeu_ps(dst.add(k * stride), low);
            _mm256_storeu_ps(dst.add((k + 4) * stride), high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_transposed_in_place_of_its_strides() {
        if !available() {
            return;
        }
        let src: Vec<f32> = (0..8 * 11).map(|v| v as f32).collect();
        let mut dst = vec![-1.0; 8 * 13];
        block(&src[2..], 11, &mut dst[1..], 13);
        for r in 0..8 {
            for c in 0..8 {
                assert_eq!(dst[1 + c * 13 + r], src[2 + r * 11 + c], "{r}, {c}");
            }
        }
        assert_eq!(dst[0], -1.0);
    }
}
