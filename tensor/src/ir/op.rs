//! The closed set of primitive operations.
//!
//! Every backend implements exactly these; layers, losses and optimizers are built from them,
//! and autodiff has one rule per op. Attributes are stored explicitly, so a backend never has
//! to re-derive them from shapes.

use crate::collective::AllReduceOp;
use crate::host::HostTensor;
use crate::DType;
use std::sync::Arc;

/// Elementwise functions of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// natural logarithm
    Log,
    /// square root
    Sqrt,
    /// `1 / sqrt(x)`
    Rsqrt,
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// hyperbolic tangent
    Tanh,
    /// `|x|`
    Abs,
    /// `x * x`
    Square,
    /// `1 / x`
    Recip,
}

/// Elementwise functions of two operands, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Max,
    /// `min(a, b)`
    Min,
    /// `a ^ b`
    Pow,
}

impl BinaryOp {
    /// Whether the op is defined on `I32` operands: add, subtract and multiply wrap modulo
    /// 2³² (two's complement, as every backend's integer arithmetic does), max and min are
    /// exact; division and powers are float-only.
    pub fn takes_integers(self) -> bool {
        !matches!(self, BinaryOp::Div | BinaryOp::Pow)
    }
}

/// Elementwise comparisons; the result is `Bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a > b`
    Gt,
    /// `a >= b`
    Ge,
}

/// How a reduction combines the elements of its axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
}

/// Explicit zero (or -inf for max-pooling) padding of the two spatial dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Padding2d {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

/// How a convolution or pooling window is padded, as Keras names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    /// No padding: the output shrinks by the window's extent.
    Valid,
    /// Pad so that `out = ceil(in / stride)`, extra padding going below/right (TensorFlow's rule).
    Same,
    /// Explicit padding.
    Explicit(Padding2d),
}

/// Attributes of a 2-D convolution over NHWC input and HWIO filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dAttrs {
    /// Step between windows (rows, columns).
    pub stride: [usize; 2],
    /// Spacing of filter taps (rows, columns).
    pub dilation: [usize; 2],
    /// Resolved padding.
    pub padding: Padding2d,
}

/// Attributes of a 2-D pooling window over NHWC input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dAttrs {
    /// Window size (rows, columns).
    pub window: [usize; 2],
    /// Step between windows (rows, columns).
    pub stride: [usize; 2],
    /// Resolved padding; padded cells never win a max and are not counted in an average.
    pub padding: Padding2d,
}

/// One primitive operation. The node's output shape and dtype follow from the op and its
/// operands (see `ir::infer`).
#[derive(Clone, Debug)]
pub enum Op {
    /// A value fed at each step.
    Input {
        /// Unique input name.
        name: String,
    },
    /// Persistent state (weights, optimizer slots), kept by the executable between steps.
    Parameter {
        /// Unique state name.
        name: String,
    },
    /// A value known when the graph is built.
    Constant(Arc<HostTensor>),
    /// Elementwise unary function.
    Unary(UnaryOp),
    /// Elementwise binary function with broadcasting.
    Binary(BinaryOp),
    /// Elementwise comparison with broadcasting, giving `Bool`.
    Compare(CompareOp),
    /// `cond ? on_true : on_false`, elementwise with broadcasting.
    Select,
    /// `op(a) @ op(b)` over the last two dims; leading (batch) dims must be equal.
    MatMul {
        /// Use `a` transposed.
        transpose_a: bool,
        /// Use `b` transposed.
        transpose_b: bool,
    },
    /// Convolution: NHWC input, HWIO filter, NHWC output.
    Conv2d(Conv2dAttrs),
    /// Gradient of [`Op::Conv2d`] with respect to its input: operands `(dy, filter)`.
    Conv2dGradInput {
        /// The forward convolution's attributes.
        attrs: Conv2dAttrs,
        /// The forward input's shape (NHWC).
        input_shape: Vec<usize>,
    },
    /// Gradient of [`Op::Conv2d`] with respect to its filter: operands `(x, dy)`.
    Conv2dGradFilter {
        /// The forward convolution's attributes.
        attrs: Conv2dAttrs,
        /// The filter's shape (HWIO).
        filter_shape: Vec<usize>,
    },
    /// Max-pooling over NHWC.
    MaxPool2d(Pool2dAttrs),
    /// Gradient of [`Op::MaxPool2d`]: operands `(x, dy)`; routes each window's gradient to the
    /// first maximal element.
    MaxPool2dGrad(Pool2dAttrs),
    /// Average-pooling over NHWC.
    AvgPool2d(Pool2dAttrs),
    /// Gradient of [`Op::AvgPool2d`]: operand `dy`.
    AvgPool2dGrad {
        /// The forward pooling's attributes.
        attrs: Pool2dAttrs,
        /// The forward input's shape (NHWC).
        input_shape: Vec<usize>,
    },
    /// Reduction over a set of axes.
    Reduce {
        /// How elements are combined.
        op: ReduceOp,
        /// Reduced axes, sorted and unique.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keep_dims: bool,
    },
    /// Same elements, new shape (row-major order kept).
    Reshape {
        /// The new dims.
        shape: Vec<usize>,
    },
    /// Permutes dims: output dim `i` is input dim `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Numpy broadcast to a larger shape.
    Broadcast {
        /// The target dims.
        shape: Vec<usize>,
    },
    /// Contiguous sub-block `[starts, ends)` in each dim.
    Slice {
        /// First index in each dim.
        starts: Vec<usize>,
        /// One past the last index in each dim.
        ends: Vec<usize>,
    },
    /// Zero padding in each dim.
    Pad {
        /// Elements added before, per dim.
        low: Vec<usize>,
        /// Elements added after, per dim.
        high: Vec<usize>,
    },
    /// Joins operands along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Integer labels `[..]` to `f32` one-hot `[.., depth]`; out-of-range labels give zeros.
    OneHot {
        /// Number of classes.
        depth: usize,
    },
    /// Index of the maximum along an axis (first one on ties), as `I32`; the axis is removed.
    ArgMax {
        /// The axis.
        axis: usize,
    },
    /// Converts the element type.
    Cast {
        /// Target dtype.
        to: DType,
    },
    /// Identity whose gradient is zero.
    StopGradient,
    /// `F32` values uniform in `[0, 1)` of `shape`, a pure function of (seed, element index):
    /// one operand, an `I32` or `F32` scalar seed (an `F32` seed is truncated to an integer, as
    /// [`Op::Cast`] does). Every backend reproduces the CPU's bits exactly: see
    /// `cpu::kernels::random`. No gradient; never constant-folded.
    RandomUniform {
        /// The output dims.
        shape: Vec<usize>,
    },
    /// Combines an `F32` value across the replicas of a group (sum, mean or max), through the
    /// communicator the backend was built with; same shape out. The gradient of a sum is the
    /// sum of the cotangents (each replica's output depends on every replica's input with
    /// weight one, so the input's cotangent is the sum over replicas of theirs), the gradient
    /// of a mean their mean; max has none.
    AllReduce {
        /// How the values are combined.
        op: AllReduceOp,
    },
}

impl Op {
    /// A short name for errors and dumps.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Parameter { .. } => "parameter",
            Op::Constant(_) => "constant",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Compare(_) => "compare",
            Op::Select => "select",
            Op::MatMul { .. } => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradFilter { .. } => "conv2d_grad_filter",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::MaxPool2dGrad(_) => "max_pool2d_grad",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::AvgPool2dGrad { .. } => "avg_pool2d_grad",
            Op::Reduce { .. } => "reduce",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::OneHot { .. } => "one_hot",
            Op::ArgMax { .. } => "argmax",
            Op::Cast { .. } => "cast",
            Op::StopGradient => "stop_gradient",
            Op::RandomUniform { .. } => "random_uniform",
            Op::AllReduce { .. } => "all_reduce",
        }
    }

    /// Whether the op is elementwise (each output element depends on the same-index operand
    /// elements after broadcasting), which makes it a candidate for fusion.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select
        )
    }

    /// Whether the op's output is its first operand's memory, reinterpreted (no copy needed).
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape { .. } | Op::StopGradient)
    }
}
