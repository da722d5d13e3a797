//! The StableHLO emitter: one `ir::Graph` becomes one MLIR module whose `main` takes the
//! state and then the inputs and returns the updated state and then the outputs. Shapes and
//! dtypes come from the IR (already checked by hasten when the graph was built), so the
//! plugin never sees an ill-typed program. Ops are lowered per family, as the CPU backend's
//! kernels are organised.

mod builder;
mod conv;
mod elementwise;
mod layout;
mod linalg;
mod pool;
mod random;
mod reduce;
mod repeat;
pub mod replica;

use builder::{check_dtype, Builder, V};
use hasten_tensor::ir::{Graph, Node, NodeId, Op};
use hasten_tensor::{DType, Result};
pub use repeat::emit_repeated;
pub use replica::{replica_slices, ReplicaSlice, ReplicaSlices};
use std::fmt::Write;

/// One argument or result of the emitted `main`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// The state, input or output name.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its dims.
    pub dims: Vec<usize>,
}

/// An emitted program and its calling convention.
#[derive(Clone, Debug)]
pub struct Program {
    /// The MLIR text.
    pub text: String,
    /// Every state value (the graph's parameters, in order): the first arguments.
    pub state: Vec<Slot>,
    /// The step's inputs, in order: the arguments after the state.
    pub inputs: Vec<Slot>,
    /// For each updated state, its index into [`Program::state`]: the first results.
    pub updated: Vec<usize>,
    /// The step's outputs, in declaration order: the results after the updates.
    pub outputs: Vec<Slot>,
}

/// The step's calling convention: state, inputs, updated-state indices and outputs.
pub(crate) fn signature(graph: &Graph) -> Result<Program> {
    let nodes = graph.nodes();
    let slot = |name: &str, id: NodeId| -> Result<Slot> {
        check_dtype(nodes[id.0].dtype)?;
        Ok(Slot {
            name: name.to_string(),
            dtype: nodes[id.0].dtype,
            dims: nodes[id.0].shape.dims().to_vec(),
        })
    };
    let params = graph.parameters();
    let updated = graph
        .updates()
        .iter()
        .map(|(p, _)| params.iter().position(|(_, q)| q == p).unwrap_or(0))
        .collect();
    Ok(Program {
        text: String::new(),
        state: params
            .iter()
            .map(|&(n, id)| slot(n, id))
            .collect::<Result<_>>()?,
        inputs: graph
            .inputs()
            .iter()
            .map(|&(n, id)| slot(n, id))
            .collect::<Result<_>>()?,
        updated,
        outputs: graph
            .outputs()
            .iter()
            .map(|(n, id)| slot(n, *id))
            .collect::<Result<_>>()?,
    })
}

/// Lowers every node of `graph` into `b`, its parameters and inputs bound to `leaves` (state
/// then inputs, in the graph's order); returns the step's results: the updated state values,
/// then the outputs.
pub(crate) fn lower_graph(b: &mut Builder, graph: &Graph, leaves: &[V]) -> Result<Vec<V>> {
    let nodes = graph.nodes();
    let mut values: Vec<Option<V>> = vec![None; nodes.len()];
    let ids = graph.parameters().into_iter().chain(graph.inputs());
    for ((_, id), v) in ids.zip(leaves) {
        values[id.0] = Some(v.clone());
    }
    for (i, node) in nodes.iter().enumerate() {
        if values[i].is_some() {
            continue;
        }
        check_dtype(node.dtype)?;
        let args: Vec<&V> = node
            .inputs
            .iter()
            .map(|id| values[id.0].as_ref().expect("operands precede their users"))
            .collect();
        let v = match (b.replica_slices.get(&i).copied(), &node.op) {
            (Some(s), Op::Slice { starts, .. }) => {
                replica::slice(b, args[0], starts, node.shape.dims(), s)
            }
            _ => lower(b, node, &args)?,
        };
        values[i] = Some(v);
    }
    Ok(graph
        .updates()
        .iter()
        .map(|(_, v)| *v)
        .chain(graph.outputs().iter().map(|(_, v)| *v))
        .map(|id| values[id.0].clone().expect("every node is lowered"))
        .collect())
}

/// Arguments `%arg0…` of the given slots.
pub(crate) fn arguments(slots: &[&Slot]) -> Vec<V> {
    slots
        .iter()
        .enumerate()
        .map(|(k, s)| V {
            name: format!("%arg{k}"),
            dims: s.dims.clone(),
            dtype: s.dtype,
        })
        .collect()
}

/// Emits `graph` as a StableHLO module running one step.
pub fn emit(graph: &Graph) -> Result<Program> {
    emit_replicated(graph, 1, &ReplicaSlices::new())
}

/// Emits `graph` as a StableHLO module running one step on each of `replicas` replicas in
/// step, its all-reduces over all of them and its `slices` at each replica's rows.
pub fn emit_replicated(graph: &Graph, replicas: usize, slices: &ReplicaSlices) -> Result<Program> {
    let mut program = signature(graph)?;
    let args = arguments(
        &program
            .state
            .iter()
            .chain(&program.inputs)
            .collect::<Vec<_>>(),
    );
    let mut b = Builder::replicated(replicas, slices.clone());
    let results = lower_graph(&mut b, graph, &args)?;
    program.text = module_text(
        &args,
        &program.updated,
        &b.body,
        &results.iter().collect::<Vec<_>>(),
    );
    Ok(program)
}

/// The module around a `main` with arguments `args`, body text `body` and `results`. The
/// state argument `updated[j]` is donated to result `j` (`tf.aliasing_output`), so XLA may
/// write a state's new value into its old buffer instead of allocating one per step.
pub(crate) fn module_text(args: &[V], updated: &[usize], body: &str, results: &[&V]) -> String {
    let signature: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(k, a)| match updated.iter().position(|&u| u == k) {
            Some(j) => format!("{}: {} {{tf.aliasing_output = {j} : i32}}", a.name, a.ty()),
            None => format!("{}: {}", a.name, a.ty()),
        })
        .collect();
    let result_types: Vec<String> = results.iter().map(|v| v.ty()).collect();
    let result_names: Vec<&str> = results.iter().map(|v| v.name.as_str()).collect();
    let mut text = String::new();
    let _ = writeln!(text, "module @hasten_step {{");
    let _ = writeln!(
        text,
        "  func.func public @main({}) -> ({}) {{",
        signature.join(", "),
        result_types.join(", ")
    );
    text.push_str(body);
    let _ = writeln!(
        text,
        "    \"func.return\"({}) : ({}) -> ()",
        result_names.join(", "),
        result_types.join(", ")
    );
    let _ = writeln!(text, "  }}\n}}");
    text
}

/// Lowers one node, given its operands' values.
fn lower(b: &mut Builder, node: &Node, args: &[&V]) -> Result<V> {
    let dims = node.shape.dims();
    Ok(match &node.op {
        Op::Input { .. } | Op::Parameter { .. } => unreachable!("arguments are bound first"),
        Op::Constant(t) => layout::constant(b, t)?,
        Op::Unary(op) => elementwise::unary(b, *op, args[0]),
        Op::Binary(op) => elementwise::binary(b, *op, args[0], args[1], dims),
        Op::Compare(op) => elementwise::compare(b, *op, args[0], args[1], dims),
        Op::Select => elementwise::select(b, args[0], args[1], args[2], dims),
        Op::Cast { to } => elementwise::cast(b, args[0], *to),
        Op::StopGradient => args[0].clone(),
        Op::AllReduce { op } => reduce::all_reduce(b, *op, args[0]),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => linalg::matmul(b, args[0], args[1], *transpose_a, *transpose_b, dims),
        Op::Conv2d(a) => conv::forward(b, args[0], args[1], a, dims),
        Op::Conv2dGradInput { attrs, .. } => conv::grad_input(b, args[0], args[1], attrs, dims),
        Op::Conv2dGradFilter { attrs, .. } => conv::grad_filter(b, args[0], args[1], attrs, dims),
        Op::MaxPool2d(a) => pool::max(b, args[0], a),
        Op::MaxPool2dGrad(a) => pool::max_grad(b, args[0], args[1], a),
        Op::AvgPool2d(a) => pool::avg(b, args[0], a),
        Op::AvgPool2dGrad { attrs, input_shape } => pool::avg_grad(b, args[0], attrs, input_shape),
        Op::Reduce {
            op,
            axes,
            keep_dims: _,
        } => reduce::reduce(b, *op, args[0], axes, dims),
        Op::ArgMax { axis } => reduce::argmax(b, args[0], *axis),
        Op::Reshape { shape } => b.reshape(args[0], shape),
        Op::Transpose { perm } => layout::transpose(b, args[0], perm, dims),
        Op::Broadcast { shape } => b.broadcast_to(args[0], shape),
        Op::Slice { starts, ends } => {
            let ones = vec![1; starts.len()];
            b.slice(args[0], starts, ends, &ones)
        }
        Op::Pad { low, high } => layout::pad_zeros(b, args[0], low, high),
        Op::Concat { axis } => layout::concat(b, args, *axis, dims),
        Op::OneHot { depth } => layout::one_hot(b, args[0], *depth),
        Op::RandomUniform { shape } => random::uniform(b, args[0], shape)?,
    })
}
