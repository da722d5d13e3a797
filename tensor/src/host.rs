//! Host-side data: owned tensors for constants and state, borrowed slices for the per-step
//! inputs and outputs (so a step needs no allocation), and conversion to and from candle.

use crate::{DType, Error, Result, Shape};
use candle_core::{Device, Tensor};

/// Owned element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// `f32` values.
    F32(Vec<f32>),
    /// `i32` values.
    I32(Vec<i32>),
    /// `u8` values.
    U8(Vec<u8>),
    /// Booleans.
    Bool(Vec<bool>),
}

/// An owned, row-major host tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Its shape.
    pub shape: Shape,
    /// Its elements.
    pub data: HostData,
}

/// Borrowed elements, as given to or read from a step.
#[derive(Clone, Copy, Debug)]
pub enum HostSlice<'a> {
    /// `f32` values.
    F32(&'a [f32]),
    /// `i32` values.
    I32(&'a [i32]),
    /// `u8` values.
    U8(&'a [u8]),
    /// Booleans.
    Bool(&'a [bool]),
}

impl HostData {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::I32(_) => DType::I32,
            HostData::U8(_) => DType::U8,
            HostData::Bool(_) => DType::Bool,
        }
    }

    /// A borrowed view.
    pub fn as_slice(&self) -> HostSlice<'_> {
        match self {
            HostData::F32(v) => HostSlice::F32(v),
            HostData::I32(v) => HostSlice::I32(v),
            HostData::U8(v) => HostSlice::U8(v),
            HostData::Bool(v) => HostSlice::Bool(v),
        }
    }

    /// Zeros of a dtype the host can hold.
    pub fn zeros(dtype: DType, len: usize) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => HostData::F32(vec![0.0; len]),
            DType::I32 => HostData::I32(vec![0; len]),
            DType::U8 => HostData::U8(vec![0; len]),
            DType::Bool => HostData::Bool(vec![false; len]),
            other => {
                return Err(Error::Unsupported {
                    backend: "host",
                    what: format!("host storage of {other}"),
                })
            }
        })
    }
}

impl<'a> HostSlice<'a> {
    /// Elements `start..start + len` (panics when out of range, as slicing does).
    pub fn range(&self, start: usize, len: usize) -> HostSlice<'a> {
        let r = start..start + len;
        match *self {
            HostSlice::F32(v) => HostSlice::F32(&v[r]),
            HostSlice::I32(v) => HostSlice::I32(&v[r]),
            HostSlice::U8(v) => HostSlice::U8(&v[r]),
            HostSlice::Bool(v) => HostSlice::Bool(&v[r]),
        }
    }

    /// Appends these elements to `data`, which must have the same dtype.
    pub fn append_to(&self, data: &mut HostData) -> Result<()> {
        match (*self, data) {
            (HostSlice::F32(v), HostData::F32(d)) => d.extend_from_slice(v),
            (HostSlice::I32(v), HostData::I32(d)) => d.extend_from_slice(v),
            (HostSlice::U8(v), HostData::U8(d)) => d.extend_from_slice(v),
            (HostSlice::Bool(v), HostData::Bool(d)) => d.extend_from_slice(v),
            (v, d) => {
                return Err(Error::InvalidArgument {
                    op: "append",
                    detail: format!("{} elements appended to {} data", v.dtype(), d.dtype()),
                })
            }
        }
        Ok(())
    }
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            HostSlice::F32(_) => DType::F32,
            HostSlice::I32(_) => DType::I32,
            HostSlice::U8(_) => DType::U8,
            HostSlice::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostSlice::F32(v) => v.len(),
            HostSlice::I32(v) => v.len(),
            HostSlice::U8(v) => v.len(),
            HostSlice::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        // SAFETY: every element type here is plain old data with no padding, and `bool` is one
        // byte; the byte view covers exactly the slice's memory.
        unsafe {
            match *self {
                HostSlice::F32(v) => std::slice::from_raw_parts(v.as_ptr().cast(), v.len() * 4),
                HostSlice::I32(v) => std::slice::from_raw_parts(v.as_ptr().cast(), v.len() * 4),
                HostSlice::U8(v) => v,
                HostSlice::Bool(v) => std::slice::from_raw_parts(v.as_ptr().cast(), v.len()),
            }
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> HostData {
        match *self {
            HostSlice::F32(v) => HostData::F32(v.to_vec()),
            HostSlice::I32(v) => HostData::I32(v.to_vec()),
            HostSlice::U8(v) => HostData::U8(v.to_vec()),
            HostSlice::Bool(v) => HostData::Bool(v.to_vec()),
        }
    }
}

impl HostTensor {
    /// A tensor from `f32` values; errors if the length does not match the shape.
    pub fn f32(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        Self::new(shape.into(), HostData::F32(data))
    }

    /// A tensor from `i32` values; errors if the length does not match the shape.
    pub fn i32(shape: impl Into<Shape>, data: Vec<i32>) -> Result<Self> {
        Self::new(shape.into(), HostData::I32(data))
    }

    /// A tensor from a shape and data whose length must match.
    pub fn new(shape: Shape, data: HostData) -> Result<Self> {
        let len = data.as_slice().len();
        if len != shape.numel() {
            return Err(Error::shape(
                "host tensor",
                format!("{} elements do not fill shape {shape}", len),
            ));
        }
        Ok(HostTensor { shape, data })
    }

    /// The same elements with new dims (no copy); errors if the element count differs.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.shape.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {} as {shape}", self.shape),
            ));
        }
        Ok(HostTensor { shape, ..self })
    }

    /// Rows `start..end` along the first dim (a copy), or an error if they are out of range.
    pub fn rows(&self, start: usize, end: usize) -> Result<Self> {
        let dims = self.shape.dims();
        let n = dims.first().copied().unwrap_or(0);
        if start > end || end > n {
            return Err(Error::invalid(
                "rows",
                format!("rows {start}..{end} of a tensor with {n} rows"),
            ));
        }
        let row: usize = dims[1..].iter().product();
        let (a, b) = (start * row, end * row);
        let data = match &self.data {
            HostData::F32(v) => HostData::F32(v[a..b].to_vec()),
            HostData::I32(v) => HostData::I32(v[a..b].to_vec()),
            HostData::U8(v) => HostData::U8(v[a..b].to_vec()),
            HostData::Bool(v) => HostData::Bool(v[a..b].to_vec()),
        };
        let mut shape = dims.to_vec();
        shape[0] = end - start;
        Ok(HostTensor {
            shape: Shape::new(shape),
            data,
        })
    }

    /// A scalar `f32`.
    pub fn scalar(value: f32) -> Self {
        HostTensor {
            shape: Shape::scalar(),
            data: HostData::F32(vec![value]),
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The `f32` elements, or an error naming the actual dtype.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            HostData::F32(v) => Ok(v),
            other => Err(Error::DTypeMismatch {
                op: "as_f32",
                expected: "f32".into(),
                found: other.dtype(),
            }),
        }
    }

    /// Converts a candle tensor (any device, contiguous or not) to host data.
    pub fn from_candle(t: &Tensor) -> Result<Self> {
        let shape = Shape::new(t.dims().to_vec());
        let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
        let data = match t.dtype() {
            candle_core::DType::F32 => HostData::F32(flat.to_vec1()?),
            candle_core::DType::I32 => HostData::I32(flat.to_vec1()?),
            candle_core::DType::I64 => HostData::I32(
                flat.to_vec1::<i64>()?
                    .into_iter()
                    .map(|v| i32::try_from(v).unwrap_or(i32::MAX))
                    .collect(),
            ),
            candle_core::DType::U32 => HostData::I32(
                flat.to_vec1::<u32>()?
                    .into_iter()
                    .map(|v| i32::try_from(v).unwrap_or(i32::MAX))
                    .collect(),
            ),
            candle_core::DType::U8 => HostData::U8(flat.to_vec1()?),
            candle_core::DType::F64 | candle_core::DType::F16 | candle_core::DType::BF16 => {
                HostData::F32(flat.to_dtype(candle_core::DType::F32)?.to_vec1()?)
            }
            other => {
                return Err(Error::Unsupported {
                    backend: "host",
                    what: format!("candle dtype {other:?}"),
                })
            }
        };
        Ok(HostTensor { shape, data })
    }

    /// Converts to a candle tensor on the CPU (booleans become `u8`).
    pub fn to_candle(&self) -> Result<Tensor> {
        let dims = self.shape.dims();
        Ok(match &self.data {
            HostData::F32(v) => Tensor::from_slice(v, dims, &Device::Cpu)?,
            HostData::I32(v) => Tensor::from_slice(v, dims, &Device::Cpu)?,
            HostData::U8(v) => Tensor::from_slice(v, dims, &Device::Cpu)?,
            HostData::Bool(v) => {
                let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
                Tensor::from_slice(&bytes, dims, &Device::Cpu)?
            }
        })
    }
}
