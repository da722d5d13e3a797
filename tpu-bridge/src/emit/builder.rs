//! The text builder every lowering writes through: typed SSA values, StableHLO ops in MLIR's
//! generic form (stable across StableHLO versions), constants, broadcasting and reductions
//! with a one-op region.

use super::replica::ReplicaSlices;
use hasten_tensor::{DType, Error, Result};
use std::fmt::Write;

/// A value of the module being emitted: its SSA name, dims and dtype.
#[derive(Clone, Debug)]
pub(crate) struct V {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DType,
}

impl V {
    /// The MLIR tensor type.
    pub fn ty(&self) -> String {
        tensor_type(&self.dims, self.dtype)
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }
}

/// The MLIR element type of a dtype (`U8` is unsigned, `Bool` is `i1`).
pub(crate) fn element_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I32 => "i32",
        DType::U8 => "ui8",
        DType::Bool => "i1",
    }
}

/// `tensor<2x3xf32>` (`tensor<f32>` for a scalar).
pub(crate) fn tensor_type(dims: &[usize], dtype: DType) -> String {
    let mut s = String::from("tensor<");
    for d in dims {
        let _ = write!(s, "{d}x");
    }
    s.push_str(element_type(dtype));
    s.push('>');
    s
}

/// `array<i64: 1, 2>`.
pub(crate) fn i64_array(values: &[i64]) -> String {
    if values.is_empty() {
        return "array<i64>".into();
    }
    let list: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("array<i64: {}>", list.join(", "))
}

/// [`i64_array`] of `usize`s.
pub(crate) fn dims_array(values: &[usize]) -> String {
    i64_array(&values.iter().map(|&v| v as i64).collect::<Vec<_>>())
}

/// A scalar constant of a hasten dtype.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar {
    F32(f32),
    I32(i32),
}

/// Writes the function body, one op a line.
pub(crate) struct Builder {
    pub body: String,
    next: usize,
    /// The replicas running the program together (the all-reduce group).
    pub replicas: usize,
    /// Slices that start at each replica's rows (node index of the graph being lowered).
    pub replica_slices: ReplicaSlices,
}

impl Builder {
    pub fn new() -> Self {
        Self::replicated(1, ReplicaSlices::new())
    }

    /// A builder of a program run by `replicas` replicas in step.
    pub fn replicated(replicas: usize, replica_slices: ReplicaSlices) -> Self {
        Builder {
            body: String::new(),
            next: 0,
            replicas,
            replica_slices,
        }
    }

    /// `stablehlo.all_reduce` of `x` with `combine` over every replica (one group).
    pub fn all_reduce(&mut self, x: &V, combine: &str) -> V {
        let region = self.region(combine, x.dtype);
        let name = self.fresh();
        let group: Vec<String> = (0..self.replicas).map(|r| r.to_string()).collect();
        let groups = format!(
            "replica_groups = dense<[[{}]]> : tensor<1x{}xi64>",
            group.join(", "),
            self.replicas
        );
        let _ = writeln!(
            self.body,
            "    {name} = \"stablehlo.all_reduce\"({}) {region} {{{groups}}} : ({}) -> {}",
            x.name,
            x.ty(),
            x.ty()
        );
        V {
            name,
            dims: x.dims.clone(),
            dtype: x.dtype,
        }
    }

    /// A fresh SSA name.
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%t{}", self.next)
    }

    /// `%r = "stablehlo.<op>"(args) {attrs} : (types) -> result` in the generic form.
    pub fn op(&mut self, op: &str, args: &[&V], attrs: &str, dims: &[usize], dtype: DType) -> V {
        let typed: Vec<(&str, String)> = args.iter().map(|a| (a.name.as_str(), a.ty())).collect();
        let name = self.op_typed(op, &typed, attrs, &tensor_type(dims, dtype));
        V {
            name,
            dims: dims.to_vec(),
            dtype,
        }
    }

    /// [`Builder::op`] on operands given by name and MLIR type, for element types that
    /// hasten's dtypes do not name (the `ui32`/`ui64` arithmetic of the random generator).
    pub fn op_typed(
        &mut self,
        op: &str,
        args: &[(&str, String)],
        attrs: &str,
        out: &str,
    ) -> String {
        let name = self.fresh();
        let names: Vec<&str> = args.iter().map(|a| a.0).collect();
        let types: Vec<&str> = args.iter().map(|a| a.1.as_str()).collect();
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {{{attrs}}}")
        };
        let _ = writeln!(
            self.body,
            "    {name} = \"stablehlo.{op}\"({}){attrs} : ({}) -> {out}",
            names.join(", "),
            types.join(", ")
        );
        name
    }

    /// An elementwise op whose result has the first operand's dims and dtype.
    pub fn same(&mut self, op: &str, args: &[&V]) -> V {
        let (dims, dtype) = (args[0].dims.clone(), args[0].dtype);
        self.op(op, args, "", &dims, dtype)
    }

    /// An elementwise comparison giving `Bool`.
    pub fn compare(&mut self, direction: &str, a: &V, b: &V) -> V {
        let attr = format!("comparison_direction = #stablehlo<comparison_direction {direction}>");
        let dims = a.dims.clone();
        self.op("compare", &[a, b], &attr, &dims, DType::Bool)
    }

    /// `cond ? a : b` on values of one shape.
    pub fn select(&mut self, cond: &V, a: &V, b: &V) -> V {
        let (dims, dtype) = (a.dims.clone(), a.dtype);
        self.op("select", &[cond, a, b], "", &dims, dtype)
    }

    /// Converts the element type (`stablehlo.convert`).
    pub fn convert(&mut self, x: &V, to: DType) -> V {
        let dims = x.dims.clone();
        self.op("convert", &[x], "", &dims, to)
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&mut self, value: Scalar, dtype: DType) -> V {
        let literal = match (value, dtype) {
            (Scalar::I32(v), DType::Bool) => (v != 0).to_string(),
            (Scalar::F32(v), DType::F32) => format!("0x{:08X}", v.to_bits()),
            (Scalar::F32(v), _) => (v as i32).to_string(),
            (Scalar::I32(v), DType::F32) => format!("0x{:08X}", (v as f32).to_bits()),
            (Scalar::I32(v), _) => v.to_string(),
        };
        self.constant(&format!("dense<{literal}>"), &[], dtype)
    }

    /// Zero of `dtype` (`false` for `Bool`).
    pub fn zero(&mut self, dtype: DType) -> V {
        self.scalar(Scalar::I32(0), dtype)
    }

    /// A scalar constant broadcast to `dims`.
    pub fn splat(&mut self, value: Scalar, dtype: DType, dims: &[usize]) -> V {
        let s = self.scalar(value, dtype);
        self.broadcast_to(&s, dims)
    }

    /// A `stablehlo.constant` with the given `dense<…>` literal.
    pub fn constant(&mut self, literal: &str, dims: &[usize], dtype: DType) -> V {
        let ty = tensor_type(dims, dtype);
        self.op(
            "constant",
            &[],
            &format!("value = {literal} : {ty}"),
            dims,
            dtype,
        )
    }

    /// `x` broadcast numpy-style to `dims` (trailing dims aligned; size-1 dims stretch).
    pub fn broadcast_to(&mut self, x: &V, dims: &[usize]) -> V {
        if x.dims == dims {
            return x.clone();
        }
        let offset = dims.len() - x.rank();
        let map: Vec<usize> = (offset..dims.len()).collect();
        self.broadcast_in_dim(x, &map, dims)
    }

    /// `stablehlo.broadcast_in_dim`: operand dim `i` becomes result dim `map[i]`.
    pub fn broadcast_in_dim(&mut self, x: &V, map: &[usize], dims: &[usize]) -> V {
        let attr = format!("broadcast_dimensions = {}", dims_array(map));
        self.op("broadcast_in_dim", &[x], &attr, dims, x.dtype)
    }

    /// `stablehlo.reshape` to `dims` (same element count; checked by the caller's IR).
    pub fn reshape(&mut self, x: &V, dims: &[usize]) -> V {
        if x.dims == dims {
            return x.clone();
        }
        self.op("reshape", &[x], "", dims, x.dtype)
    }

    /// `stablehlo.iota` along `axis` of a new `dims` tensor.
    pub fn iota(&mut self, dims: &[usize], axis: usize, dtype: DType) -> V {
        let attr = format!("iota_dimension = {axis} : i64");
        self.op("iota", &[], &attr, dims, dtype)
    }

    /// A strided `stablehlo.slice`.
    pub fn slice(&mut self, x: &V, start: &[usize], limit: &[usize], strides: &[usize]) -> V {
        let dims: Vec<usize> = (0..x.rank())
            .map(|i| (limit[i] - start[i]).div_ceil(strides[i]))
            .collect();
        let attr = format!(
            "start_indices = {}, limit_indices = {}, strides = {}",
            dims_array(start),
            dims_array(limit),
            dims_array(strides)
        );
        self.op("slice", &[x], &attr, &dims, x.dtype)
    }

    /// `stablehlo.pad` with `value`: edge padding (may be negative) and interior padding.
    pub fn pad(&mut self, x: &V, value: &V, low: &[i64], high: &[i64], interior: &[i64]) -> V {
        let dims: Vec<usize> = (0..x.rank())
            .map(|i| {
                let n = x.dims[i] as i64;
                let inner = if n == 0 { 0 } else { (n - 1) * interior[i] };
                (n + inner + low[i] + high[i]).max(0) as usize
            })
            .collect();
        let attr = format!(
            "edge_padding_low = {}, edge_padding_high = {}, interior_padding = {}",
            i64_array(low),
            i64_array(high),
            i64_array(interior)
        );
        self.op("pad", &[x, value], &attr, &dims, x.dtype)
    }

    /// `max(a, b)` or `min(a, b)` (`combine` is `maximum` or `minimum`) that is NaN when
    /// either operand is, as ARCHITECTURE.md requires: XLA CPU's own `maximum` was measured
    /// to drop NaN, so the NaN cases are selected explicitly.
    pub fn nan_extremum(&mut self, combine: &str, a: &V, c: &V) -> V {
        let m = self.same(combine, &[a, c]);
        if a.dtype != DType::F32 {
            return m;
        }
        let a_nan = self.compare("NE", a, a);
        let m = self.select(&a_nan, a, &m);
        let c_nan = self.compare("NE", c, c);
        self.select(&c_nan, c, &m)
    }

    /// A reduction region `^bb0(%a, %b): return combine(%a, %b)` over scalars of `dtype`;
    /// `maximum` and `minimum` propagate NaN ([`Builder::nan_extremum`]).
    fn region(&mut self, combine: &str, dtype: DType) -> String {
        let t = tensor_type(&[], dtype);
        let a = V {
            name: self.fresh(),
            dims: vec![],
            dtype,
        };
        let c = V {
            name: self.fresh(),
            dims: vec![],
            dtype,
        };
        let outer = std::mem::take(&mut self.body);
        let r = match combine {
            "maximum" | "minimum" => self.nan_extremum(combine, &a, &c),
            _ => self.same(combine, &[&a, &c]),
        };
        let inner = std::mem::replace(&mut self.body, outer);
        format!(
            "({{\n    ^bb0({}: {t}, {}: {t}):\n{inner}      \"stablehlo.return\"({}) : ({t}) -> ()\n    }})",
            a.name, c.name, r.name
        )
    }

    /// `stablehlo.reduce` of `x` over `axes` with `combine` (`add`, `maximum`, …) from
    /// `init` (a scalar of `x`'s dtype); the reduced axes are removed.
    pub fn reduce(&mut self, x: &V, init: &V, combine: &str, axes: &[usize]) -> V {
        let dims: Vec<usize> = (0..x.rank())
            .filter(|i| !axes.contains(i))
            .map(|i| x.dims[i])
            .collect();
        let attrs = format!("dimensions = {}", dims_array(axes));
        self.with_region("reduce", x, init, combine, &attrs, dims)
    }

    /// `stablehlo.reduce_window` with `combine` from `init`; `window`, `strides` and
    /// `padding` (low, high) are per dim; the output dims are computed here.
    pub fn reduce_window(
        &mut self,
        x: &V,
        init: &V,
        combine: &str,
        window: &[usize],
        strides: &[usize],
        padding: &[(usize, usize)],
    ) -> V {
        let dims: Vec<usize> = (0..x.rank())
            .map(|i| (x.dims[i] + padding[i].0 + padding[i].1 - window[i]) / strides[i] + 1)
            .collect();
        let attrs = format!(
            "window_dimensions = {}, window_strides = {}, padding = {}",
            dims_array(window),
            dims_array(strides),
            padding_attr(padding)
        );
        self.with_region("reduce_window", x, init, combine, &attrs, dims)
    }

    /// An op of `(x, init)` with a `combine` region, giving `dims` of `x`'s dtype.
    fn with_region(
        &mut self,
        op: &str,
        x: &V,
        init: &V,
        combine: &str,
        attrs: &str,
        dims: Vec<usize>,
    ) -> V {
        let region = self.region(combine, x.dtype);
        let name = self.fresh();
        let out = tensor_type(&dims, x.dtype);
        let _ = writeln!(
            self.body,
            "    {name} = \"stablehlo.{op}\"({}, {}) {region} {{{attrs}}} : ({}, {}) -> {out}",
            x.name,
            init.name,
            x.ty(),
            init.ty()
        );
        V {
            name,
            dims,
            dtype: x.dtype,
        }
    }
}

/// `dense<[[lo, hi], …]> : tensor<Nx2xi64>`.
pub(crate) fn padding_attr(padding: &[(usize, usize)]) -> String {
    signed_padding_attr(
        &padding
            .iter()
            .map(|&(l, h)| (l as i64, h as i64))
            .collect::<Vec<_>>(),
    )
}

/// [`padding_attr`] with signed (possibly negative) padding.
pub(crate) fn signed_padding_attr(padding: &[(i64, i64)]) -> String {
    let rows: Vec<String> = padding.iter().map(|(l, h)| format!("[{l}, {h}]")).collect();
    format!(
        "dense<[{}]> : tensor<{}x2xi64>",
        rows.join(", "),
        padding.len()
    )
}

/// The error for an op or dtype this emitter does not lower.
pub(crate) fn unsupported(what: impl Into<String>) -> Error {
    Error::Unsupported {
        backend: "pjrt",
        what: what.into(),
    }
}

/// Refuses dtypes the PJRT backend does not move (reduced-precision floats).
pub(crate) fn check_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::I32 | DType::U8 | DType::Bool => Ok(()),
        other => Err(unsupported(format!("{other} values"))),
    }
}
