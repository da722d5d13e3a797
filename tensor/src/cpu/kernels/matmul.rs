//! Batched matrix multiplication on top of the packed SGEMM.

use crate::cpu::gemm::{sgemm, Epilogue, MatRef};
use crate::cpu::pool::WorkerPool;

/// A matmul operand: its elements, its full dims (batch dims first) and whether it is read
/// transposed.
pub struct Operand<'a> {
    /// Row-major elements.
    pub data: &'a [f32],
    /// Full dims.
    pub dims: &'a [usize],
    /// Read transposed.
    pub transposed: bool,
}

/// `y[i] = op(a[i]) @ op(b[i])` for each leading batch index (batch dims equal in both).
pub fn matmul(a: Operand<'_>, b: Operand<'_>, y: &mut [f32], pool: &WorkerPool) {
    matmul_bias_relu(a, b, None, false, y, pool)
}

/// [`matmul`], then `bias` added to every row and, with `relu`, the result clamped at zero,
/// both as the product is stored.
///
/// # Panics
/// If `bias` does not hold one value per column of the product.
pub fn matmul_bias_relu(
    a: Operand<'_>,
    b: Operand<'_>,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    pool: &WorkerPool,
) {
    let (a_dims, b_dims, ta, tb) = (a.dims, b.dims, a.transposed, b.transposed);
    let (a, b) = (a.data, b.data);
    let r = a_dims.len();
    let (ar, ac) = (a_dims[r - 2], a_dims[r - 1]);
    let (br, bc) = (b_dims[r - 2], b_dims[r - 1]);
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let n = if tb { br } else { bc };
    let batch: usize = a_dims[..r - 2].iter().product();
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "a bias value per column of the product");
    }
    let epilogue = Epilogue {
        bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        relu,
    };
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
                epilogue,
                pool,
            );
        }
    }
}
