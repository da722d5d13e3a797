//! Products with few columns whose A is stored transposed (a Dense layer's weight gradient,
//! `xᵀ · dy` with 10 columns): computed as `Cᵀ = Bᵀ · Aᵀ`, so that A's long side spans the
//! vector lanes and is read row by row, then transposed into C.
//!
//! Read directly, such a product fills 10 of a vector's 16 lanes and broadcasts each of A's
//! elements from rows a whole activation apart; transposed, every lane does work and A streams
//! through contiguously. `gemm_bench --shape 5408x10x128:ta` measures the difference.

use super::microkernel::Kernels;
use super::{sgemm, Epilogue, MatRef, SharedMut, WorkerPool};
use std::cell::RefCell;

/// Rows of C transposed into at a time.
const TRANSPOSE_BLOCK: usize = 256;

thread_local! {
    /// `Cᵀ` of the last transposed product on this thread (grows once to the largest).
    static TRANSPOSED_C: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether `c[m×n] = a · b` runs faster as `cᵀ = bᵀ · aᵀ`: `n` is narrower than one vector,
/// `m` spans at least a wide tile, and A's rows are adjacent elements (so `aᵀ` is read in
/// place with contiguous rows).
pub(super) fn worth_transposing(m: usize, n: usize, a: &MatRef, kernels: &Kernels) -> bool {
    a.rs == 1 && a.cs != 1 && n < kernels.narrow.nr && m >= kernels.wide.nr
}

/// `c (+)= a · b` computed as `bᵀ · aᵀ` into a per-thread buffer, then transposed into `c`.
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn via_transpose(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    pool: &WorkerPool,
) {
    TRANSPOSED_C.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.len() < m * n {
            buffer.resize(m * n, 0.0);
        }
        let ct = buffer.as_mut_ptr();
        let swap = |x: MatRef| MatRef {
            ptr: x.ptr,
            rs: x.cs,
            cs: x.rs,
        };
        // `aᵀ` has unit column stride and `n` rows of C, so this takes the in-place path and
        // never comes back here.
        sgemm(
            n,
            m,
            k,
            swap(b),
            swap(a),
            ct,
            m,
            false,
            Epilogue::NONE,
            pool,
        );
        let (ct, c) = (SharedMut::new(ct), SharedMut::new(c));
        let tasks = pool.threads().min(m.div_ceil(1024)).max(1);
        pool.run(tasks, &|t| {
            let rows = m * t / tasks..m * (t + 1) / tasks;
            // Blocks of C's rows small enough to stay in L1 while each of `cᵀ`'s rows is read
            // through them contiguously.
            for block in rows.clone().step_by(TRANSPOSE_BLOCK) {
                let block = block..rows.end.min(block + TRANSPOSE_BLOCK);
                for j in 0..n {
                    let from = ct.at(j * m);
                    for i in block.clone() {
                        let (v, out) = (*from.add(i), c.at(i * ldc + j));
                        *out = if accumulate { *out + v } else { v };
                    }
                }
            }
        });
    });
}
