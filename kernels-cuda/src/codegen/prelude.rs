//! The CUDA C every generated module starts with: fixed-width types and the scalar
//! definitions the CPU backend's kernels agree on (NaN-propagating max/min, ReLU that keeps
//! NaN, Rust's saturating float-to-int casts, Philox-2×32-10).

/// Source of the shared device functions.
pub const PRELUDE: &str = r#"
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
#define HASTEN_INF __int_as_float(0x7f800000)

__device__ __forceinline__ bool ranks_above(float a, float b) {
    return a > b || (isnan(a) && !isnan(b));
}
__device__ __forceinline__ float maximum(float a, float b) { return ranks_above(b, a) ? b : a; }
__device__ __forceinline__ float minimum(float a, float b) {
    return (b < a || (isnan(b) && !isnan(a))) ? b : a;
}
__device__ __forceinline__ float relu(float x) { return x <= 0.0f ? 0.0f : x; }
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int wrap_add(int a, int b) { return (int)((u32)a + (u32)b); }
__device__ __forceinline__ int wrap_sub(int a, int b) { return (int)((u32)a - (u32)b); }
__device__ __forceinline__ int wrap_mul(int a, int b) { return (int)((u32)a * (u32)b); }

/* Rust's `f as i32`: truncation toward zero, saturating, NaN to 0. */
__device__ __forceinline__ int f32_to_i32(float x) {
    if (isnan(x)) return 0;
    if (x >= 2147483648.0f) return 2147483647;
    if (x <= -2147483648.0f) return (int)0x80000000;
    return (int)x;
}
/* Rust's `f as u8`. */
__device__ __forceinline__ u8 f32_to_u8(float x) {
    if (isnan(x) || x <= 0.0f) return 0;
    if (x >= 255.0f) return 255;
    return (u8)x;
}
__device__ __forceinline__ u8 i32_to_u8(int x) { return (u8)(x < 0 ? 0 : (x > 255 ? 255 : x)); }

/* Philox-2x32 with 10 rounds, as cpu::kernels::random computes it. */
__device__ __forceinline__ u32 philox_lo(u32 x0, u32 x1, u32 key) {
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        u32 hi = __umulhi(x0, 0xD256D193u);
        u32 lo = x0 * 0xD256D193u;
        x0 = hi ^ key ^ x1;
        x1 = lo;
        key += 0x9E3779B9u;
    }
    return x0;
}
"#;
