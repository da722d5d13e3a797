//! CPU kernels, one family per file. They work on plain slices; the executable resolves
//! node ids to memory and guarantees that outputs never overlap operands.

pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod layout;
pub mod matmul;
pub mod misc;
pub mod pool2d;
pub mod reduce;

/// Odometer over a multi-index: advances `idx` within `dims`, updating every offset in
/// `offsets` by its stride table, and returns false after the last position.
#[inline]
pub(crate) fn advance(
    idx: &mut [usize],
    dims: &[usize],
    offsets: &mut [isize],
    strides: &[&[isize]],
) -> bool {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o += s[d];
        }
        if idx[d] < dims[d] {
            return true;
        }
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o -= s[d] * dims[d] as isize;
        }
        idx[d] = 0;
    }
    false
}

/// Row-major strides of `operand` read as if broadcast to `out` (stride 0 on broadcast dims).
pub(crate) fn broadcast_strides(operand: &[usize], out: &[usize]) -> Vec<isize> {
    let lead = out.len() - operand.len();
    let mut strides = vec![0isize; out.len()];
    let mut s = 1isize;
    for d in (0..operand.len()).rev() {
        if operand[d] != 1 {
            strides[lead + d] = s;
        }
        s *= operand[d] as isize;
    }
    strides
}
