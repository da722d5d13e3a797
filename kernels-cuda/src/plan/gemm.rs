//! A `MatMul` as one cuBLASLt call: the row-major product `C = op(A)·op(B)` issued as the
//! column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`, batched over equal leading dims, with the bias (and
//! ReLU) of an affine group as its epilogue.

use hasten_tensor::ir::{Graph, NodeId, Op};

/// Everything cuBLASLt needs for one product, in its column-major terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    /// cuBLASLt's `A`: the graph's right operand.
    pub a: NodeId,
    /// cuBLASLt's `B`: the graph's left operand.
    pub b: NodeId,
    /// The node whose buffer receives the result (the product, or its epilogue's output).
    pub out: NodeId,
    /// The `[n]` bias added by the epilogue.
    pub bias: Option<NodeId>,
    /// Whether the epilogue clamps at zero.
    pub relu: bool,
    /// Rows of the column-major result (the graph's `N`).
    pub m: u64,
    /// Columns of the column-major result (the graph's `M`).
    pub n: u64,
    /// The contracted length.
    pub k: u64,
    /// Whether cuBLASLt's `A` is transposed.
    pub trans_a: bool,
    /// Whether cuBLASLt's `B` is transposed.
    pub trans_b: bool,
    /// Products in the batch (1 when unbatched).
    pub batch: usize,
    /// The generated kernel (index into the plan's kernels) that applies the epilogue when
    /// cuBLASLt has no algorithm with it for this shape.
    pub fallback: Option<usize>,
}

impl Gemm {
    /// The product node `matmul` writing into `out`, with an optional epilogue.
    pub fn of(
        graph: &Graph,
        matmul: NodeId,
        out: NodeId,
        bias: Option<NodeId>,
        relu: bool,
    ) -> Self {
        let nodes = graph.nodes();
        let node = &nodes[matmul.0];
        let Op::MatMul {
            transpose_a,
            transpose_b,
        } = node.op
        else {
            unreachable!("not a product")
        };
        let dims = node.shape.dims();
        let r = dims.len();
        let (rows, cols) = (dims[r - 2], dims[r - 1]);
        let left = nodes[node.inputs[0].0].shape.dims();
        let k = if transpose_a {
            left[r - 2]
        } else {
            left[r - 1]
        };
        Gemm {
            a: node.inputs[1],
            b: node.inputs[0],
            out,
            bias,
            relu,
            m: cols as u64,
            n: rows as u64,
            k: k as u64,
            trans_a: transpose_b,
            trans_b: transpose_a,
            batch: dims[..r - 2].iter().product(),
            fallback: None,
        }
    }

    /// Stored rows, columns and leading dimension of `A` (column-major).
    pub fn layout_a(&self) -> (u64, u64, i64) {
        if self.trans_a {
            (self.k, self.m, self.k as i64)
        } else {
            (self.m, self.k, self.m as i64)
        }
    }

    /// Stored rows, columns and leading dimension of `B` (column-major).
    pub fn layout_b(&self) -> (u64, u64, i64) {
        if self.trans_b {
            (self.n, self.k, self.n as i64)
        } else {
            (self.k, self.n, self.k as i64)
        }
    }

    /// Elements between consecutive products of `A`, `B` and `C`.
    pub fn batch_strides(&self) -> (i64, i64, i64) {
        let (m, n, k) = (self.m as i64, self.n as i64, self.k as i64);
        (m * k, n * k, m * n)
    }
}
