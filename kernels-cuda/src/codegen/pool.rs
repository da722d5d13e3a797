//! Max- and average-pooling over NHWC and their gradients, one thread per output element.
//! Padded cells never win a max and are not counted in an average; the max gradient goes to
//! each window's first maximal element (NaN ranking highest), as on the CPU.

use super::{signature, Kernel};
use hasten_tensor::ir::{Graph, NodeId, Op, Pool2dAttrs};
use hasten_tensor::DType;

/// Sizes of one pooling: input `[n, h, w, c]`, output `[n, oh, ow, c]`.
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    a: Pool2dAttrs,
}

impl Geometry {
    fn new(x: &[usize], y: &[usize], a: Pool2dAttrs) -> Self {
        Geometry {
            h: x[1],
            w: x[2],
            c: x[3],
            oh: y[1],
            ow: y[2],
            a,
        }
    }

    /// C statements declaring the window of output (`b`, `oy`, `ox`, `ch`): rows `y0..y1`,
    /// columns `x0..x1`, clipped to the input.
    fn window(&self) -> String {
        let Pool2dAttrs {
            window,
            stride,
            padding,
        } = self.a;
        format!(
            "int y0 = (int)(oy * {sy}u) - {pt}; int x0 = (int)(ox * {sx}u) - {pl};\n  \
             int y1 = imin(y0 + {wy}, {h}); int x1 = imin(x0 + {wx}, {w}); y0 = imax(y0, 0); x0 = imax(x0, 0);",
            sy = stride[0], sx = stride[1], pt = padding.top, pl = padding.left,
            wy = window[0], wx = window[1], h = self.h, w = self.w
        )
    }

    /// C statements: the flat index `best` of the first maximal element of the window.
    fn argmax(&self) -> String {
        format!(
            "{win}\n  u32 best = 0xffffffffu; float best_v = 0.0f;\n  \
             for (int yy = y0; yy < y1; ++yy) for (int xx = x0; xx < x1; ++xx) {{\n   \
             u32 at = ((b * {h}u + (u32)yy) * {w}u + (u32)xx) * {c}u + ch; float v = in0[at];\n   \
             if (best == 0xffffffffu || ranks_above(v, best_v)) {{ best = at; best_v = v; }}\n  }}",
            win = self.window(),
            h = self.h,
            w = self.w,
            c = self.c
        )
    }

    /// C statements splitting output index `i` into `b`, `oy`, `ox`, `ch`.
    fn split_output(&self) -> String {
        format!(
            "u32 ch = i % {c}u; u32 ox = (i / {c}u) % {ow}u; u32 oy = (i / ({c}u * {ow}u)) % {oh}u; u32 b = i / ({c}u * {ow}u * {oh}u);",
            c = self.c, ow = self.ow, oh = self.oh
        )
    }

    /// C statements: for input element `i` (`b`, `ih`, `iw`, `ch`), a loop over the outputs
    /// (`oy`, `ox`) whose windows hold it, running `body`.
    fn windows_of_input(&self, body: &str) -> String {
        let Pool2dAttrs {
            window,
            stride,
            padding,
        } = self.a;
        format!(
            "u32 ch = i % {c}u; int iw = (int)((i / {c}u) % {w}u); int ih = (int)((i / ({c}u * {w}u)) % {h}u); u32 b = i / ({c}u * {w}u * {h}u);\n \
             int ly = ih + {pt} - {wy} + 1; int lx = iw + {pl} - {wx} + 1;\n \
             u32 oy0 = ly <= 0 ? 0u : (u32)((ly + {sy} - 1) / {sy}); u32 oy1 = (u32)((ih + {pt}) / {sy}) + 1u; if (oy1 > {oh}u) oy1 = {oh}u;\n \
             u32 ox0 = lx <= 0 ? 0u : (u32)((lx + {sx} - 1) / {sx}); u32 ox1 = (u32)((iw + {pl}) / {sx}) + 1u; if (ox1 > {ow}u) ox1 = {ow}u;\n \
             for (u32 oy = oy0; oy < oy1; ++oy) {{\n  int ry = ih + {pt} - (int)(oy * {sy}u); if (ry < 0 || ry >= {wy}) continue;\n  \
             for (u32 ox = ox0; ox < ox1; ++ox) {{\n   int rx = iw + {pl} - (int)(ox * {sx}u); if (rx < 0 || rx >= {wx}) continue;\n   {body}\n  }}\n }}",
            c = self.c, w = self.w, h = self.h, oh = self.oh, ow = self.ow,
            pt = padding.top, pl = padding.left, sy = stride[0], sx = stride[1],
            wy = window[0], wx = window[1]
        )
    }
}

/// A pooling node or its gradient.
pub fn pool(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let dims = |k: usize| nodes[node.inputs[k].0].shape.dims();
    let y = node.shape.dims();
    let (body, operands) = match &node.op {
        Op::MaxPool2d(a) => {
            let g = Geometry::new(dims(0), y, *a);
            (
                format!(
                    " {}\n  {}\n out0[i] = best_v;\n",
                    g.split_output(),
                    g.argmax()
                ),
                1,
            )
        }
        Op::AvgPool2d(a) => {
            let g = Geometry::new(dims(0), y, *a);
            let body = format!(
                " {}\n  {}\n float acc = 0.0f;\n for (int yy = y0; yy < y1; ++yy) for (int xx = x0; xx < x1; ++xx) \
                 acc += in0[((b * {h}u + (u32)yy) * {w}u + (u32)xx) * {c}u + ch];\n \
                 out0[i] = acc / (float)((y1 - y0) * (x1 - x0));\n",
                g.split_output(), g.window(), h = g.h, w = g.w, c = g.c
            );
            (body, 1)
        }
        Op::MaxPool2dGrad(a) => {
            // Operands (x, dy): dx[i] sums dy over the windows whose first maximum is i.
            let g = Geometry::new(dims(0), dims(1), *a);
            let inner = format!(
                "{{ {}\n   if (best == i) acc += in1[((b * {oh}u + oy) * {ow}u + ox) * {c}u + ch]; }}",
                g.argmax(), oh = g.oh, ow = g.ow, c = g.c
            );
            (
                format!(
                    " float acc = 0.0f;\n {}\n out0[i] = acc;\n",
                    g.windows_of_input(&inner)
                ),
                2,
            )
        }
        Op::AvgPool2dGrad { attrs, input_shape } => {
            // Operand dy: dx[i] sums dy / count over the windows holding i.
            let g = Geometry::new(input_shape, dims(0), *attrs);
            let inner = format!(
                "{{ {}\n   acc += in0[((b * {oh}u + oy) * {ow}u + ox) * {c}u + ch] / (float)((y1 - y0) * (x1 - x0)); }}",
                g.window(), oh = g.oh, ow = g.ow, c = g.c
            );
            (
                format!(
                    " float acc = 0.0f;\n {}\n out0[i] = acc;\n",
                    g.windows_of_input(&inner)
                ),
                1,
            )
        }
        other => unreachable!("{} is not a pooling", other.name()),
    };
    let n = node.shape.numel();
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n{body}}}\n",
        sig = signature(&name, &vec![DType::F32; operands], &[DType::F32]),
    );
    Kernel::per_element(name, source, n)
}
