//! Counter-based random numbers for [`crate::ir::Op::RandomUniform`].
//!
//! Element `i` of a draw with seed `s` is a pure function of `(s, i)`, so any backend
//! reproduces the same bits in any order, on any number of threads:
//!
//! 1. the seed becomes a `u32` key: an `I32` seed is taken bit for bit, an `F32` seed is first
//!    truncated toward zero to an `i32` (saturating, NaN → 0, exactly as `Cast` does);
//! 2. `[lo, hi] = philox2x32_10(counter = [i mod 2³², i div 2³²], key)`: Philox-2×32 with 10
//!    rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
//!    generator behind cuRAND's, JAX's and TensorFlow's stateless random ops);
//! 3. the value is `(lo >> 8) · 2⁻²⁴`: one of the 2²⁴ evenly spaced floats in `[0, 1)`, every
//!    one exact in `f32`.

use super::super::pool::{SharedMut, WorkerPool};
use crate::host::HostSlice;

/// Philox's round multiplier.
const PHILOX_M: u32 = 0xD256_D193;
/// Philox's key increment (the golden ratio).
const PHILOX_W: u32 = 0x9E37_79B9;
/// Draws at least this long are split over the pool.
const PARALLEL_MIN_LEN: usize = 1 << 15;

/// Philox-2×32-10: the bijection of a 64-bit counter under a 32-bit key (matches the known-answer
/// vectors of the Random123 reference implementation).
#[inline]
pub fn philox2x32(counter: [u32; 2], key: u32) -> [u32; 2] {
    let [mut x0, mut x1] = counter;
    let mut k = key;
    for _ in 0..10 {
        let product = u64::from(x0) * u64::from(PHILOX_M);
        let (hi, lo) = ((product >> 32) as u32, product as u32);
        x0 = hi ^ k ^ x1;
        x1 = lo;
        k = k.wrapping_add(PHILOX_W);
    }
    [x0, x1]
}

/// The `u32` key of a scalar seed (see the module documentation).
pub fn seed_of(seed: HostSlice<'_>) -> u32 {
    let value = match seed {
        HostSlice::F32(v) => v.first().map_or(0, |&s| s as i32),
        HostSlice::I32(v) => v.first().copied().unwrap_or(0),
        HostSlice::U8(v) => v.first().map_or(0, |&s| i32::from(s)),
        HostSlice::Bool(v) => v.first().map_or(0, |&s| i32::from(s)),
    };
    value as u32
}

/// Element `index` of the uniform draw keyed by `key`.
#[inline]
pub fn uniform_at(key: u32, index: u64) -> f32 {
    let [lo, _] = philox2x32([index as u32, (index >> 32) as u32], key);
    (lo >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Fills `y` with the uniform draw keyed by `key`: `y[i] = uniform_at(key, i)`.
pub fn uniform(key: u32, y: &mut [f32], pool: &WorkerPool) {
    let len = y.len();
    let tasks = if len >= PARALLEL_MIN_LEN {
        pool.threads().min(len.div_ceil(PARALLEL_MIN_LEN / 4))
    } else {
        1
    };
    if tasks <= 1 {
        for (i, v) in y.iter_mut().enumerate() {
            *v = uniform_at(key, i as u64);
        }
        return;
    }
    let out = SharedMut::new(y.as_mut_ptr());
    pool.run(tasks, &|t| {
        let (lo, hi) = (len * t / tasks, len * (t + 1) / tasks);
        for i in lo..hi {
            // SAFETY: `i < len`, and index `i` is written by this task only.
            unsafe { *out.at(i) = uniform_at(key, i as u64) };
        }
    });
}
