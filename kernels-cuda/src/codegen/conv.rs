//! 2-D convolution (NHWC input, HWIO filter) and its two gradients as direct kernels: the
//! forward pass and the input gradient one thread per output element, the filter gradient one
//! block per filter element reducing over batch and positions. (cuDNN, with its algorithm
//! chosen once at compile, is the next step; these are the reference lowering.)

use super::reduce::{block_combine, block_for};
use super::{signature, Kernel};
use hasten_tensor::ir::{Conv2dAttrs, Graph, NodeId, Op};
use hasten_tensor::DType;

/// Sizes of one convolution: input `[n, h, w, c]`, filter `[kh, kw, c, o]`, output
/// `[n, oh, ow, o]`.
struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    kh: usize,
    kw: usize,
    o: usize,
    oh: usize,
    ow: usize,
    a: Conv2dAttrs,
}

impl Geometry {
    fn new(x: &[usize], f: &[usize], y: &[usize], a: Conv2dAttrs) -> Self {
        Geometry {
            n: x[0],
            h: x[1],
            w: x[2],
            c: x[3],
            kh: f[0],
            kw: f[1],
            o: f[3],
            oh: y[1],
            ow: y[2],
            a,
        }
    }

    /// C statements: `ih`/`iw` of tap (`ky`, `kx`) for output position (`oy`, `ox`), as ints.
    fn input_pos(&self) -> String {
        let Conv2dAttrs {
            stride,
            dilation,
            padding,
        } = self.a;
        format!(
            "int ih = (int)(oy * {}u + ky * {}u) - {}; int iw = (int)(ox * {}u + kx * {}u) - {};",
            stride[0], dilation[0], padding.top, stride[1], dilation[1], padding.left
        )
    }
}

/// A convolution or one of its gradients.
pub fn conv(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let dims = |k: usize| nodes[node.inputs[k].0].shape.dims();
    let y = node.shape.dims();
    let sig = signature(&name, &[DType::F32, DType::F32], &[DType::F32]);
    match &node.op {
        Op::Conv2d(a) => forward(Geometry::new(dims(0), dims(1), y, *a), sig, name),
        Op::Conv2dGradInput { attrs, input_shape } => grad_input(
            Geometry::new(input_shape, dims(1), dims(0), *attrs),
            sig,
            name,
        ),
        Op::Conv2dGradFilter {
            attrs,
            filter_shape,
        } => grad_filter(
            Geometry::new(dims(0), filter_shape, dims(1), *attrs),
            sig,
            name,
        ),
        other => unreachable!("{} is not a convolution", other.name()),
    }
}

/// `y[b, oy, ox, f] = Σ x[b, ih, iw, c] · w[ky, kx, c, f]` (operands `x`, `w`).
fn forward(g: Geometry, sig: String, name: String) -> Kernel {
    let total = g.n * g.oh * g.ow * g.o;
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {total}u) return;\n \
         u32 f = i % {o}u; u32 ox = (i / {o}u) % {ow}u; u32 oy = (i / ({o}u * {ow}u)) % {oh}u; u32 b = i / ({o}u * {ow}u * {oh}u);\n \
         float acc = 0.0f;\n for (u32 ky = 0; ky < {kh}u; ++ky) for (u32 kx = 0; kx < {kw}u; ++kx) {{\n  {pos}\n  \
         if (ih < 0 || ih >= {h} || iw < 0 || iw >= {w}) continue;\n  \
         const float* xp = in0 + ((b * {h}u + (u32)ih) * {w}u + (u32)iw) * {c}u;\n  \
         const float* wp = in1 + (ky * {kw}u + kx) * {c}u * {o}u + f;\n  \
         for (u32 ci = 0; ci < {c}u; ++ci) acc += xp[ci] * wp[ci * {o}u];\n }}\n out0[i] = acc;\n}}\n",
        o = g.o, ow = g.ow, oh = g.oh, kh = g.kh, kw = g.kw, h = g.h, w = g.w, c = g.c,
        pos = g.input_pos(),
    );
    Kernel::per_element(name, source, total)
}

/// `dx[b, ih, iw, c] = Σ dy[b, oy, ox, f] · w[ky, kx, c, f]` over the taps that read it
/// (operands `dy`, `w`).
fn grad_input(g: Geometry, sig: String, name: String) -> Kernel {
    let total = g.n * g.h * g.w * g.c;
    let Conv2dAttrs {
        stride,
        dilation,
        padding,
    } = g.a;
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {total}u) return;\n \
         u32 ci = i % {c}u; int iw = (int)((i / {c}u) % {w}u); int ih = (int)((i / ({c}u * {w}u)) % {h}u); u32 b = i / ({c}u * {w}u * {h}u);\n \
         float acc = 0.0f;\n for (u32 ky = 0; ky < {kh}u; ++ky) {{\n  int ty = ih + {pt} - (int)(ky * {dy}u);\n  \
         if (ty < 0 || ty % {sy} != 0) continue;\n  u32 oy = (u32)(ty / {sy}); if (oy >= {oh}u) continue;\n  \
         for (u32 kx = 0; kx < {kw}u; ++kx) {{\n   int tx = iw + {pl} - (int)(kx * {dx}u);\n   \
         if (tx < 0 || tx % {sx} != 0) continue;\n   u32 ox = (u32)(tx / {sx}); if (ox >= {ow}u) continue;\n   \
         const float* gp = in0 + ((b * {oh}u + oy) * {ow}u + ox) * {o}u;\n   \
         const float* wp = in1 + ((ky * {kw}u + kx) * {c}u + ci) * {o}u;\n   \
         for (u32 f = 0; f < {o}u; ++f) acc += gp[f] * wp[f];\n  }}\n }}\n out0[i] = acc;\n}}\n",
        c = g.c, w = g.w, h = g.h, kh = g.kh, kw = g.kw, o = g.o, oh = g.oh, ow = g.ow,
        pt = padding.top, pl = padding.left, dy = dilation[0], dx = dilation[1],
        sy = stride[0], sx = stride[1],
    );
    Kernel::per_element(name, source, total)
}

/// `dw[ky, kx, c, f] = Σ_{b, oy, ox} x[b, ih, iw, c] · dy[b, oy, ox, f]` (operands `x`, `dy`),
/// one block per filter element.
fn grad_filter(g: Geometry, sig: String, name: String) -> Kernel {
    let total = g.kh * g.kw * g.c * g.o;
    let count = g.n * g.oh * g.ow;
    let block = block_for(count);
    let tree = block_combine("float", block, &|a, b| format!("({a} + {b})"));
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x;\n u32 f = i % {o}u; u32 ci = (i / {o}u) % {c}u; u32 kx = (i / ({o}u * {c}u)) % {kw}u; u32 ky = i / ({o}u * {c}u * {kw}u);\n \
         float acc = 0.0f;\n for (u32 r = threadIdx.x; r < {count}u; r += {block}u) {{\n  \
         u32 ox = r % {ow}u; u32 oy = (r / {ow}u) % {oh}u; u32 b = r / ({ow}u * {oh}u);\n  {pos}\n  \
         if (ih < 0 || ih >= {h} || iw < 0 || iw >= {w}) continue;\n  \
         acc += in0[((b * {h}u + (u32)ih) * {w}u + (u32)iw) * {c}u + ci] * in1[r * {o}u + f];\n }}\n{tree} \
         if (threadIdx.x == 0) out0[i] = result;\n}}\n",
        o = g.o, c = g.c, kw = g.kw, ow = g.ow, oh = g.oh, h = g.h, w = g.w,
        pos = g.input_pos(),
    );
    Kernel::per_block(name, source, total, block)
}
