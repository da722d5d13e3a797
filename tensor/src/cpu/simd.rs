//! Runtime choice of vector instructions for the non-GEMM kernels.
//!
//! The crate is built for the baseline x86-64 target (SSE2), so that one binary runs on every
//! x86-64 CPU. Hot loops are written once as plain Rust; [`dispatch`] runs such a loop inside a
//! function compiled with AVX-512 or AVX2+FMA enabled, chosen once per process from what the
//! CPU reports, so the compiler vectorises the same source for the wider unit. Rust never
//! contracts `a * b + c` into an FMA on its own, so the results do not depend on the choice.
//!
//! For the wider code to apply, the closure and everything it calls must be inlined into the
//! wrapper: write `simd::dispatch(#[inline(always)] || ...)` and mark helpers
//! `#[inline(always)]` (a closure left to the inliner's choice was compiled on its own, for
//! the baseline target, and ran at SSE2 speed).

use std::sync::OnceLock;

/// The vector instruction sets a kernel may be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 (F, BW, VL, DQ) with FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// The baseline target.
    Baseline,
}

/// The widest level this CPU supports; `HASTEN_SIMD=avx2|baseline` caps it (to compare
/// levels, or to rule them out when chasing a numeric difference).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("HASTEN_SIMD").unwrap_or_default();
        detected(&cap.to_ascii_lowercase())
    })
}

#[cfg(target_arch = "x86_64")]
fn detected(cap: &str) -> Level {
    use std::arch::is_x86_feature_detected as has;
    if cap == "baseline" {
        return Level::Baseline;
    }
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq");
    if cap != "avx2" && avx512 && has!("fma") {
        Level::Avx512
    } else if has!("avx2") && has!("fma") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected(_cap: &str) -> Level {
    Level::Baseline
}

/// Runs `f` compiled for [`level`]; `f` and the helpers it inlines get the wider code.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: each variant runs only where `level` found its features.
        match level() {
            Level::Avx512 => unsafe { x86::avx512(f) },
            Level::Avx2 => unsafe { x86::avx2(f) },
            Level::Baseline => f(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    f()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt")]
    pub(super) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt")]
    pub(super) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_runs_the_closure_once_and_returns_its_value() {
        let mut calls = 0;
        let sum: f32 = dispatch(|| {
            calls += 1;
            (0..1000).map(|i| i as f32 * 0.5).sum()
        });
        assert_eq!(calls, 1);
        assert_eq!(sum, (0..1000).map(|i| i as f32 * 0.5).sum::<f32>());
    }
}
