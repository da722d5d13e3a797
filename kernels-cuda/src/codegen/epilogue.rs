//! A product's bias (and ReLU) as a kernel of its own, for when cuBLASLt offers no algorithm
//! with that epilogue for a shape: `out[i] = relu(out[i] + bias[i % n])` in place, with the
//! CPU's NaN-keeping ReLU.

use super::{signature, Kernel};
use hasten_tensor::DType;

/// The epilogue over `len` row-major elements of rows of `n`.
pub fn bias_relu(len: usize, n: usize, relu: bool, name: String) -> Kernel {
    let value = if relu { "relu(v)" } else { "v" };
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {len}u) return;\n \
         float v = out0[i] + in0[i % {n}u];\n out0[i] = {value};\n}}\n",
        sig = signature(&name, &[DType::F32], &[DType::F32]),
    );
    Kernel::per_element(name, source, len)
}
