//! Steps per execution: `k` steps of one graph inside a `stablehlo.while`, so one PJRT call
//! runs `k` batches. The loop carries the step counter, the state, the stacked inputs and the
//! stacked outputs; step `i` reads batch `i` with `dynamic_slice` and writes its outputs at
//! `i` with `dynamic_update_slice`. The state never leaves the loop between steps.
//!
//! XLA was measured (with JAX on XLA CPU) to lose its fast convolution path for a conv
//! inside a `while` body, so convolutional models may run slower this way on that plugin.

use super::builder::{Builder, Scalar, V};
use super::{arguments, lower_graph, module_text, signature, Program, Slot};
use hasten_tensor::ir::Graph;
use hasten_tensor::{DType, Error, Result};
use std::fmt::Write;

/// `slot` with a leading axis of `steps`.
fn stacked(slot: &Slot, steps: usize) -> Slot {
    Slot {
        name: slot.name.clone(),
        dtype: slot.dtype,
        dims: [&[steps][..], &slot.dims].concat(),
    }
}

/// `values` renamed `%<prefix>0…`, as the block arguments of a region.
fn block(values: &[V], prefix: &str) -> Vec<V> {
    values
        .iter()
        .enumerate()
        .map(|(n, v)| V {
            name: format!("%{prefix}{n}"),
            ..v.clone()
        })
        .collect()
}

fn typed_list(values: &[V]) -> String {
    let list: Vec<String> = values
        .iter()
        .map(|v| format!("{}: {}", v.name, v.ty()))
        .collect();
    list.join(", ")
}

fn names(values: &[&V]) -> String {
    values
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn types(values: &[&V]) -> String {
    values.iter().map(|v| v.ty()).collect::<Vec<_>>().join(", ")
}

/// Emits `graph` as a module running `steps` steps per call: every input gets a leading
/// axis of `steps` (batch `i` feeds step `i`), every output too (step `i`'s value at `i`);
/// the state is updated `steps` times.
pub fn emit_repeated(graph: &Graph, steps: usize) -> Result<Program> {
    if steps == 0 {
        return Err(Error::InvalidArgument {
            op: "steps_per_execution",
            detail: "at least one step per execution".into(),
        });
    }
    let step = signature(graph)?;
    let program = Program {
        text: String::new(),
        state: step.state.clone(),
        inputs: step.inputs.iter().map(|s| stacked(s, steps)).collect(),
        updated: step.updated.clone(),
        outputs: step.outputs.iter().map(|s| stacked(s, steps)).collect(),
    };
    let args = arguments(
        &program
            .state
            .iter()
            .chain(&program.inputs)
            .collect::<Vec<_>>(),
    );
    let mut b = Builder::new();
    let mut carried = vec![b.zero(DType::I32)];
    carried.extend(args.iter().cloned());
    for out in &program.outputs {
        carried.push(b.splat(Scalar::I32(0), out.dtype, &out.dims));
    }
    let (cond, body) = (block(&carried, "c"), block(&carried, "w"));
    let cond_text = in_region(&mut b, |b| {
        let k = b.scalar(Scalar::I32(steps as i32), DType::I32);
        let more = b.compare("LT", &cond[0], &k);
        Ok(vec![more])
    })?;
    let body_text = in_region(&mut b, |b| step_body(b, graph, &program, &body))?;
    let (s, i) = (program.state.len(), program.inputs.len());
    let all: Vec<&V> = carried.iter().collect();
    let _ = writeln!(
        b.body,
        "    %loop:{} = \"stablehlo.while\"({}) ({{\n    ^bb0({}):\n{cond_text}    }}, {{\n    ^bb0({}):\n{body_text}    }}) : ({}) -> ({})",
        carried.len(),
        names(&all),
        typed_list(&cond),
        typed_list(&body),
        types(&all),
        types(&all)
    );
    let result = |n: usize, template: &V| V {
        name: format!("%loop#{n}"),
        ..template.clone()
    };
    let results: Vec<V> = program
        .updated
        .iter()
        .map(|&k| result(1 + k, &carried[1 + k]))
        .chain((0..program.outputs.len()).map(|j| result(1 + s + i + j, &carried[1 + s + i + j])))
        .collect();
    let text = module_text(
        &args,
        &program.updated,
        &b.body,
        &results.iter().collect::<Vec<_>>(),
    );
    Ok(Program { text, ..program })
}

/// Runs `f` with an empty body, returns what it wrote followed by a `stablehlo.return` of
/// its values; the outer body is restored.
fn in_region(b: &mut Builder, f: impl FnOnce(&mut Builder) -> Result<Vec<V>>) -> Result<String> {
    let outer = std::mem::take(&mut b.body);
    let returned = f(b);
    let mut text = std::mem::replace(&mut b.body, outer);
    let returned = returned?;
    let refs: Vec<&V> = returned.iter().collect();
    let _ = writeln!(
        text,
        "      \"stablehlo.return\"({}) : ({}) -> ()",
        names(&refs),
        types(&refs)
    );
    Ok(text)
}

/// One step inside the loop: slice batch `i`, lower the graph, write the outputs at `i`.
fn step_body(b: &mut Builder, graph: &Graph, program: &Program, carried: &[V]) -> Result<Vec<V>> {
    let (s, n_in) = (program.state.len(), program.inputs.len());
    let i = &carried[0];
    let state = &carried[1..1 + s];
    let stacks = &carried[1 + s..1 + s + n_in];
    let outs = &carried[1 + s + n_in..];
    let zero = b.zero(DType::I32);
    let mut leaves = state.to_vec();
    for stack in stacks {
        let starts = start_indices(i, &zero, stack.rank());
        let mut sizes = stack.dims.clone();
        sizes[0] = 1;
        let attr = format!("slice_sizes = {}", super::builder::dims_array(&sizes));
        let mut operands = vec![stack];
        operands.extend(starts.iter());
        let batch = b.op("dynamic_slice", &operands, &attr, &sizes, stack.dtype);
        leaves.push(b.reshape(&batch, &stack.dims[1..]));
    }
    let results = lower_graph(b, graph, &leaves)?;
    let mut next_state = state.to_vec();
    for (&k, value) in program.updated.iter().zip(&results) {
        next_state[k] = value.clone();
    }
    let mut next_outs = Vec::with_capacity(outs.len());
    for (out, value) in outs.iter().zip(&results[program.updated.len()..]) {
        let mut dims = value.dims.clone();
        dims.insert(0, 1);
        let row = b.reshape(value, &dims);
        let starts = start_indices(i, &zero, out.rank());
        let mut operands = vec![out, &row];
        operands.extend(starts.iter());
        next_outs.push(b.op("dynamic_update_slice", &operands, "", &out.dims, out.dtype));
    }
    let one = b.scalar(Scalar::I32(1), DType::I32);
    let mut next = vec![b.same("add", &[i, &one])];
    next.extend(next_state);
    next.extend(stacks.iter().cloned());
    next.extend(next_outs);
    Ok(next)
}

/// `[i, 0, 0, …]` for a rank-`rank` stack.
fn start_indices(i: &V, zero: &V, rank: usize) -> Vec<V> {
    let mut starts = vec![i.clone()];
    starts.extend((1..rank).map(|_| zero.clone()));
    starts
}
