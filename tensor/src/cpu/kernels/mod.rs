//! CPU kernels, one family per file. They work on plain slices; the executable resolves
//! node ids to memory and guarantees that outputs never overlap operands.

pub mod adam_update;
pub mod conv;
pub mod elementwise;
pub mod exp;
pub mod fused;
pub mod layout;
pub mod matmul;
pub mod misc;
pub mod pool2d;
pub mod random;
pub mod reduce;

/// Highest rank the CPU kernels handle; index arithmetic lives in fixed arrays of this size so
/// that kernels never allocate.
pub const MAX_RANK: usize = 8;

/// A short list on the stack (dims, strides, indices) of at most [`MAX_RANK`] entries.
#[derive(Clone, Copy, Debug)]
pub struct Small<T: Copy + Default> {
    items: [T; MAX_RANK],
    len: usize,
}

impl<T: Copy + Default> Small<T> {
    /// `len` default values.
    pub fn filled(len: usize) -> Self {
        Small {
            items: [T::default(); MAX_RANK],
            len: len.min(MAX_RANK),
        }
    }

    /// A copy of `items` (truncated at [`MAX_RANK`]; ranks are checked at compile time).
    pub fn from_slice(items: &[T]) -> Self {
        let mut s = Self::filled(items.len());
        s.items[..s.len].copy_from_slice(&items[..s.len]);
        s
    }

    /// Appends an item (ignored past [`MAX_RANK`]).
    pub fn push(&mut self, item: T) {
        if self.len < MAX_RANK {
            self.items[self.len] = item;
            self.len += 1;
        }
    }
}

impl<T: Copy + Default> std::ops::Deref for Small<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T: Copy + Default> std::ops::DerefMut for Small<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

/// Row-major strides of `dims`.
pub(crate) fn row_major(dims: &[usize]) -> Small<isize> {
    let mut s = Small::filled(dims.len());
    let mut acc = 1isize;
    for d in (0..dims.len()).rev() {
        s[d] = acc;
        acc *= dims[d] as isize;
    }
    s
}

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
pub(crate) fn broadcast_strides(operand: &[usize], out: &[usize]) -> Small<isize> {
    let lead = out.len() - operand.len();
    let mut strides = Small::filled(out.len());
    let mut s = 1isize;
    for d in (0..operand.len()).rev() {
        if operand[d] != 1 {
            strides[lead + d] = s;
        }
        s *= operand[d] as isize;
    }
    strides
}
