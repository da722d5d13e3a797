//! Batched matrix multiplication on top of the packed SGEMM.

use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::pool::WorkerPool;

/// `y[b] = op(a[b]) @ op(b[b])` for each leading batch index; `a_dims` and `b_dims` are the
/// operands' full dims (batch dims first, equal in both).
pub fn matmul(
    a: &[f32],
    a_dims: &[usize],
    ta: bool,
    b: &[f32],
    b_dims: &[usize],
    tb: bool,
    y: &mut [f32],
    pool: &WorkerPool,
) {
    let r = a_dims.len();
    let (ar, ac) = (a_dims[r - 2], a_dims[r - 1]);
    let (br, bc) = (b_dims[r - 2], b_dims[r - 1]);
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let n = if tb { br } else { bc };
    let batch: usize = a_dims[..r - 2].iter().product();
    for i in 0..batch {
        // SAFETY: each batch's operands and output lie inside the slices, and `y` is a separate
        // buffer (the memory plan never lets an output overlap an operand).
        unsafe {
            sgemm(
                m,
                n,
                k,
                MatRef::row_major(a[i * ar * ac..].as_ptr(), ac, ta),
                MatRef::row_major(b[i * br * bc..].as_ptr(), bc, tb),
                y[i * m * n..].as_mut_ptr(),
                n,
                false,
                pool,
            );
        }
    }
}
