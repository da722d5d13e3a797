//! Data movement: transpose, broadcast, slice, pad and concat are all one strided copy over
//! elements of 1, 2 or 4 bytes.

use super::{advance, broadcast_strides, row_major, Small};

/// Copies a `dims`-shaped block: destination element at multi-index `i` (row-major strides
/// `dst_strides` from `dst`) gets the source element at `src + Σ i·src_strides`.
///
/// # Safety
/// Both pointers must be valid for every offset the strides reach, and must not overlap.
unsafe fn strided_copy<T: Copy>(
    dims: &[usize],
    src: *const T,
    src_strides: &[isize],
    dst: *mut T,
    dst_strides: &[isize],
) {
    if dims.contains(&0) {
        return;
    }
    if dims.is_empty() {
        *dst = *src;
        return;
    }
    let last = dims.len() - 1;
    let (inner, s_in, d_in) = (dims[last], src_strides[last], dst_strides[last]);
    let outer = &dims[..last];
    let strides: [&[isize]; 2] = [&src_strides[..last], &dst_strides[..last]];
    let mut idx = Small::<usize>::filled(outer.len());
    let mut offsets = [0isize; 2];
    loop {
        let (s, d) = (src.offset(offsets[0]), dst.offset(offsets[1]));
        if s_in == 1 && d_in == 1 {
            std::ptr::copy_nonoverlapping(s, d, inner);
        } else {
            for j in 0..inner as isize {
                *d.offset(j * d_in) = *s.offset(j * s_in);
            }
        }
        if !advance(&mut idx, outer, &mut offsets, &strides) {
            break;
        }
    }
}

/// Runs `f` with the element type matching `size` bytes.
macro_rules! by_size {
    ($size:expr, $f:ident ( $($arg:expr),* )) => {
        match $size {
            1 => $f::<u8>($($arg),*),
            2 => $f::<u16>($($arg),*),
            _ => $f::<u32>($($arg),*),
        }
    };
}

/// Transposes `x` of `dims` by `perm` into `y`.
///
/// # Safety
/// `x` and `y` hold `dims.product()` elements of `elem` bytes and do not overlap.
pub unsafe fn transpose(elem: usize, x: *const u8, dims: &[usize], perm: &[usize], y: *mut u8) {
    let xs = row_major(dims);
    let mut out_dims = Small::<usize>::filled(0);
    let mut src_strides = Small::<isize>::filled(0);
    for &p in perm {
        out_dims.push(dims[p]);
        src_strides.push(xs[p]);
    }
    let dst_strides = row_major(&out_dims);
    unsafe fn go<T: Copy>(d: &[usize], x: *const u8, ss: &[isize], y: *mut u8, ds: &[isize]) {
        strided_copy(d, x as *const T, ss, y as *mut T, ds)
    }
    by_size!(elem, go(&out_dims, x, &src_strides, y, &dst_strides))
}

/// Broadcasts `x` of `dims` to `out_dims` into `y`.
///
/// # Safety
/// As for [`transpose`].
pub unsafe fn broadcast(elem: usize, x: *const u8, dims: &[usize], out_dims: &[usize], y: *mut u8) {
    let src_strides = broadcast_strides(dims, out_dims);
    let dst_strides = row_major(out_dims);
    unsafe fn go<T: Copy>(d: &[usize], x: *const u8, ss: &[isize], y: *mut u8, ds: &[isize]) {
        strided_copy(d, x as *const T, ss, y as *mut T, ds)
    }
    by_size!(elem, go(out_dims, x, &src_strides, y, &dst_strides))
}

/// Copies the block `[starts, starts + out_dims)` of `x` into `y`.
///
/// # Safety
/// As for [`transpose`].
pub unsafe fn slice(
    elem: usize,
    x: *const u8,
    dims: &[usize],
    starts: &[usize],
    out_dims: &[usize],
    y: *mut u8,
) {
    let xs = row_major(dims);
    let offset: isize = starts
        .iter()
        .zip(xs.iter())
        .map(|(&s, &st)| s as isize * st)
        .sum();
    let dst_strides = row_major(out_dims);
    unsafe fn go<T: Copy>(
        d: &[usize],
        x: *const u8,
        off: isize,
        ss: &[isize],
        y: *mut u8,
        ds: &[isize],
    ) {
        strided_copy(d, (x as *const T).offset(off), ss, y as *mut T, ds)
    }
    by_size!(elem, go(out_dims, x, offset, &xs, y, &dst_strides))
}

/// Writes `x` of `dims` into the block of `y` (dims `out_dims`) that starts at `starts`,
/// leaving the rest of `y` untouched.
///
/// # Safety
/// As for [`transpose`]; the block must fit in `y`.
pub unsafe fn place(
    elem: usize,
    x: *const u8,
    dims: &[usize],
    starts: &[usize],
    out_dims: &[usize],
    y: *mut u8,
) {
    let ys = row_major(out_dims);
    let offset: isize = starts
        .iter()
        .zip(ys.iter())
        .map(|(&s, &st)| s as isize * st)
        .sum();
    let src_strides = row_major(dims);
    unsafe fn go<T: Copy>(
        d: &[usize],
        x: *const u8,
        ss: &[isize],
        y: *mut u8,
        off: isize,
        ds: &[isize],
    ) {
        strided_copy(d, x as *const T, ss, (y as *mut T).offset(off), ds)
    }
    by_size!(elem, go(dims, x, &src_strides, y, offset, &ys))
}
