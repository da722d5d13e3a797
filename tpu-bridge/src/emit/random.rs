//! `RandomUniform` as the CPU backend computes it (`cpu::kernels::random`): the seed becomes
//! a `u32` key (an `F32` seed cast to `I32` first, as `Cast` does), element `i` is the low
//! word of Philox-2×32-10 of counter `[i, 0]`, and the value is `(lo >> 8) · 2⁻²⁴`. The ten
//! rounds are unrolled over `ui32`/`ui64` tensors of all the elements at once, so the bits
//! are the CPU's by construction.

use super::builder::{Builder, V};
use super::elementwise::cast;
use hasten_tensor::{DType, Result};

const PHILOX_M: u64 = 0xD256_D193;
const PHILOX_W: u32 = 0x9E37_79B9;
const ROUNDS: usize = 10;

/// A `ui32`/`ui64` value: its SSA name and MLIR type.
struct U {
    name: String,
    ty: String,
}

/// Unsigned arithmetic over `n` elements.
struct Philox<'b> {
    b: &'b mut Builder,
    n: usize,
}

impl Philox<'_> {
    fn ty(&self, bits: u32, vector: bool) -> String {
        if vector {
            format!("tensor<{}xui{bits}>", self.n)
        } else {
            format!("tensor<ui{bits}>")
        }
    }

    fn op(&mut self, op: &str, args: &[&U], attrs: &str, ty: String) -> U {
        let typed: Vec<(&str, String)> = args
            .iter()
            .map(|u| (u.name.as_str(), u.ty.clone()))
            .collect();
        let name = self.b.op_typed(op, &typed, attrs, &ty);
        U { name, ty }
    }

    fn constant(&mut self, value: u64, bits: u32, vector: bool) -> U {
        let ty = self.ty(bits, vector);
        self.op(
            "constant",
            &[],
            &format!("value = dense<{value}> : {ty}"),
            ty,
        )
    }

    fn binary(&mut self, op: &str, a: &U, c: &U) -> U {
        let ty = a.ty.clone();
        self.op(op, &[a, c], "", ty)
    }

    fn convert(&mut self, a: &U, bits: u32) -> U {
        let ty = self.ty(bits, true);
        self.op("convert", &[a], "", ty)
    }

    fn spread(&mut self, scalar: &U) -> U {
        let ty = self.ty(32, true);
        self.op(
            "broadcast_in_dim",
            &[scalar],
            "broadcast_dimensions = array<i64>",
            ty,
        )
    }

    /// One Philox round: `x0 = hi(x0·M) ^ k ^ x1`, `x1 = lo(x0·M)`.
    fn round(&mut self, x0: &U, x1: &U, key: &U) -> (U, U) {
        let wide = self.convert(x0, 64);
        let m = self.constant(PHILOX_M, 64, true);
        let product = self.binary("multiply", &wide, &m);
        let shift = self.constant(32, 64, true);
        let high = self.binary("shift_right_logical", &product, &shift);
        let high = self.convert(&high, 32);
        let low = self.convert(&product, 32);
        let k = self.spread(key);
        let mixed = self.binary("xor", &high, &k);
        (self.binary("xor", &mixed, x1), low)
    }
}

/// `F32` values in `[0, 1)` of `shape`, keyed by the scalar `seed`.
pub(crate) fn uniform(b: &mut Builder, seed: &V, shape: &[usize]) -> Result<V> {
    let n: usize = shape.iter().product();
    if n as u64 > u64::from(u32::MAX) {
        return Err(super::builder::unsupported(format!(
            "random draws of {n} elements (at most 2^32 - 1)"
        )));
    }
    let seed = cast(b, seed, DType::I32);
    let mut p = Philox { b, n };
    let key_ty = p.ty(32, false);
    let seed_u = U {
        name: seed.name.clone(),
        ty: seed.ty(),
    };
    let mut key = p.op("bitcast_convert", &[&seed_u], "", key_ty);
    let counter_ty = p.ty(32, true);
    let mut x0 = p.op("iota", &[], "iota_dimension = 0 : i64", counter_ty);
    let mut x1 = p.constant(0, 32, true);
    let step = p.constant(u64::from(PHILOX_W), 32, false);
    for r in 0..ROUNDS {
        (x0, x1) = p.round(&x0, &x1, &key);
        if r + 1 < ROUNDS {
            key = p.binary("add", &key, &step);
        }
    }
    let eight = p.constant(8, 32, true);
    let top = p.binary("shift_right_logical", &x0, &eight);
    let f = p.op("convert", &[&top], "", format!("tensor<{n}xf32>"));
    let values = V {
        name: f.name,
        dims: vec![n],
        dtype: DType::F32,
    };
    let scale = b.splat(
        super::builder::Scalar::F32(1.0 / (1u32 << 24) as f32),
        DType::F32,
        &[n],
    );
    let scaled = b.same("multiply", &[&values, &scale]);
    Ok(b.reshape(&scaled, shape))
}
