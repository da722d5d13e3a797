//! What a backend is: something that compiles a whole graph once into an executable that then
//! runs one step per call, keeping the graph's state on its device between steps.

use crate::host::{HostSlice, HostTensor};
use crate::ir::{Graph, NodeId};
use crate::{Error, Result};

/// Compiles graphs for one kind of device.
pub trait Backend: Send + Sync {
    /// A short name for messages ("cpu", "cuda", "pjrt", …).
    fn name(&self) -> &'static str;

    /// Compiles `graph` (forward, backward and state updates together). State starts at zero;
    /// write it with [`Executable::write_state`].
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>>;

    /// Whether its steps run on this machine's CPU cores, all of them. Then a thread that
    /// prepares the next batch during a step takes a core away from it, so training gathers
    /// each batch on every core just before its step instead of prefetching it.
    fn uses_host_cores(&self) -> bool {
        false
    }

    /// How many processes train one model together through this backend (1 unless it spans
    /// processes, as a data-parallel job over MPI does). Checkpoints record it, so a job resumes
    /// only with the same number of processes.
    fn workers(&self) -> usize {
        1
    }

    /// Compiles `steps` steps of `graph` into one executable (Keras's `steps_per_execution`):
    /// each input is given as `steps` batches stacked on a new leading axis, step i reads
    /// batch i, and each output comes back stacked the same way. By default the one-step
    /// executable runs `steps` times per call ([`crate::repeat::RepeatedExecutable`]); a
    /// backend that can loop on its device runs them in one launch.
    fn compile_steps(&self, graph: &Graph, steps: usize) -> Result<Box<dyn Executable>> {
        let one = self.compile(graph)?;
        Ok(Box::new(crate::repeat::RepeatedExecutable::new(
            one, steps,
        )?))
    }
}

/// A compiled graph with its state.
pub trait Executable: Send {
    /// Input names, in the order [`Executable::run`] takes them.
    fn input_names(&self) -> &[String];

    /// Output names, in declaration order.
    fn output_names(&self) -> &[String];

    /// State (parameter) names.
    fn state_names(&self) -> &[String];

    /// Runs one step: reads the inputs, computes the outputs, and replaces each updated state
    /// value with its new value.
    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()>;

    /// An output of the last step, by index into [`Executable::output_names`], as host data
    /// borrowed from the executable (no allocation).
    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>>;

    /// The current value of a state tensor.
    fn read_state(&mut self, name: &str) -> Result<HostTensor>;

    /// Overwrites a state tensor; the data must match its declared dtype and element count.
    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()>;

    /// Index of an output name.
    fn output_index(&self, name: &str) -> Result<usize> {
        let names = self.output_names();
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "output",
                name: name.to_string(),
                known: names.join(", "),
            })
    }

    /// An output of the last step, copied into an owned tensor.
    fn output(&mut self, name: &str) -> Result<HostTensor>;
}

/// Checks `value` against node `id` of `graph`: the same dtype and element count (backends
/// take flat data, so the dims themselves are not compared). `what` names the value in the
/// error ("input \"x\"", "state \"w\""); it is only built when the check fails.
pub fn check_value(
    graph: &Graph,
    id: NodeId,
    what: impl FnOnce() -> String,
    value: HostSlice<'_>,
) -> Result<()> {
    let node = &graph.nodes()[id.0];
    if value.dtype() != node.dtype || value.len() != node.shape.numel() {
        return Err(Error::BadData {
            what: what(),
            expected_dtype: node.dtype,
            expected_shape: node.shape.clone(),
            found: format!("{} × {}", value.len(), value.dtype()),
        });
    }
    Ok(())
}

/// Checks a step's `inputs` against the graph's input nodes `declared` (named `names`, in
/// the same order): their count, then each one with [`check_value`].
pub fn check_inputs(
    graph: &Graph,
    declared: impl ExactSizeIterator<Item = NodeId>,
    names: &[String],
    inputs: &[HostSlice<'_>],
) -> Result<()> {
    if inputs.len() != declared.len() {
        return Err(Error::InputCount {
            expected: declared.len(),
            names: names.join(", "),
            found: inputs.len(),
        });
    }
    for ((id, x), name) in declared.zip(inputs).zip(names) {
        check_value(graph, id, || format!("input {name:?}"), *x)?;
    }
    Ok(())
}
