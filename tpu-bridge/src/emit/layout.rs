//! Constants and data movement: transpose, zero padding, concatenation, one-hot.
//! (Reshape, broadcast and slice are single builder calls.)

use super::builder::{dims_array, Builder, V};
use hasten_tensor::{DType, HostData, HostTensor, Result};
use std::fmt::Write;

/// A constant tensor: a splat when every element is equal, else its bytes as a hex literal
/// (exact for every float); booleans travel as `u8` and are compared with zero.
pub(crate) fn constant(b: &mut Builder, t: &HostTensor) -> Result<V> {
    let dims = t.shape.dims();
    if let HostData::Bool(v) = &t.data {
        let bytes = HostData::U8(v.iter().map(|&x| u8::from(x)).collect());
        let as_u8 = constant(b, &HostTensor::new(t.shape.clone(), bytes)?)?;
        let zero = b.zero(DType::U8);
        let zero = b.broadcast_to(&zero, dims);
        return Ok(b.compare("NE", &as_u8, &zero));
    }
    let slice = t.data.as_slice();
    let bytes = slice.as_bytes();
    let size = t.dtype().size_in_bytes();
    let splat = bytes
        .chunks(size)
        .all(|c| c == &bytes[..size.min(bytes.len())]);
    let literal = if splat {
        let first = bytes.get(..size).unwrap_or(&[0; 4][..size]);
        scalar_literal(first, t.dtype())
    } else {
        let mut hex = String::with_capacity(bytes.len() * 2 + 4);
        hex.push_str("\"0x");
        for byte in bytes {
            let _ = write!(hex, "{byte:02X}");
        }
        hex.push('"');
        hex
    };
    Ok(b.constant(&format!("dense<{literal}>"), dims, t.dtype()))
}

/// One element's little-endian bytes as an MLIR literal (floats by their bits).
fn scalar_literal(bytes: &[u8], dtype: DType) -> String {
    match dtype {
        DType::F32 => format!(
            "0x{:08X}",
            u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4]))
        ),
        DType::I32 => i32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])).to_string(),
        _ => bytes[0].to_string(),
    }
}

/// Output dim `i` is input dim `perm[i]`.
pub(crate) fn transpose(b: &mut Builder, x: &V, perm: &[usize], dims: &[usize]) -> V {
    let attr = format!("permutation = {}", dims_array(perm));
    b.op("transpose", &[x], &attr, dims, x.dtype)
}

/// Zero padding before and after each dim.
pub(crate) fn pad_zeros(b: &mut Builder, x: &V, low: &[usize], high: &[usize]) -> V {
    let zero = b.zero(x.dtype);
    let signed = |v: &[usize]| v.iter().map(|&p| p as i64).collect::<Vec<_>>();
    let interior = vec![0; x.rank()];
    b.pad(x, &zero, &signed(low), &signed(high), &interior)
}

/// Joins `parts` along `axis`.
pub(crate) fn concat(b: &mut Builder, parts: &[&V], axis: usize, dims: &[usize]) -> V {
    let attr = format!("dimension = {axis} : i64");
    b.op("concatenate", parts, &attr, dims, parts[0].dtype)
}

/// `f32` one-hot rows of `depth` for `I32` labels; labels outside `[0, depth)` give zeros.
pub(crate) fn one_hot(b: &mut Builder, labels: &V, depth: usize) -> V {
    let mut dims = labels.dims.clone();
    dims.push(depth);
    let map: Vec<usize> = (0..labels.rank()).collect();
    let spread = b.broadcast_in_dim(labels, &map, &dims);
    let classes = b.iota(&dims, labels.rank(), DType::I32);
    let hot = b.compare("EQ", &spread, &classes);
    b.convert(&hot, DType::F32)
}
