//! Label and type conversions: one-hot, argmax, cast.

use super::elementwise::ranks_above;
use crate::host::HostSlice;
use crate::DType;

/// One-hot rows of `depth` for each label; labels outside `0..depth` give a zero row.
pub fn one_hot(labels: &[i32], depth: usize, y: &mut [f32]) {
    y.fill(0.0);
    for (row, &l) in y.chunks_exact_mut(depth).zip(labels) {
        if let Ok(l) = usize::try_from(l) {
            if l < depth {
                row[l] = 1.0;
            }
        }
    }
}

/// Index of the first maximum along the axis of length `len` in `x` viewed as
/// `[outer, len, inner]`; NaN is the maximum (the first NaN's index, as NumPy gives).
pub fn argmax(x: &[f32], outer: usize, len: usize, inner: usize, y: &mut [i32]) {
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            let mut best = 0;
            let mut best_v = x[base];
            for k in 1..len {
                let v = x[base + k * inner];
                if ranks_above(v, best_v) {
                    best = k;
                    best_v = v;
                }
            }
            y[o * inner + i] = best as i32;
        }
    }
}

/// Converts elements between host dtypes (`f32` → integer truncates toward zero, saturating).
///
/// # Safety
/// `y` must be valid for writes of `len` elements of `to`.
pub unsafe fn cast(x: HostSlice<'_>, to: DType, y: *mut u8, len: usize) {
    {
        match to {
            DType::F32 => {
                let y = std::slice::from_raw_parts_mut(y as *mut f32, len);
                match x {
                    HostSlice::F32(v) => y.copy_from_slice(v),
                    HostSlice::I32(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as f32),
                    HostSlice::U8(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as f32),
                    HostSlice::Bool(v) => {
                        y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as u8 as f32)
                    }
                }
            }
            DType::I32 => {
                let y = std::slice::from_raw_parts_mut(y as *mut i32, len);
                match x {
                    HostSlice::F32(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as i32),
                    HostSlice::I32(v) => y.copy_from_slice(v),
                    HostSlice::U8(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as i32),
                    HostSlice::Bool(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as i32),
                }
            }
            DType::U8 => {
                let y = std::slice::from_raw_parts_mut(y, len);
                match x {
                    HostSlice::F32(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as u8),
                    HostSlice::I32(v) => y
                        .iter_mut()
                        .zip(v)
                        .for_each(|(o, &a)| *o = a.clamp(0, 255) as u8),
                    HostSlice::U8(v) => y.copy_from_slice(v),
                    HostSlice::Bool(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a as u8),
                }
            }
            DType::Bool => {
                let y = std::slice::from_raw_parts_mut(y as *mut bool, len);
                match x {
                    HostSlice::F32(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a != 0.0),
                    HostSlice::I32(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a != 0),
                    HostSlice::U8(v) => y.iter_mut().zip(v).for_each(|(o, &a)| *o = a != 0),
                    HostSlice::Bool(v) => y.copy_from_slice(v),
                }
            }
            DType::F16 | DType::BF16 => {}
        }
    }
}
