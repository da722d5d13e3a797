//! The executable of a [`crate::Mirrored`] strategy: one executable per replica, run together.

use crate::threads::ThreadGroup;
use hasten_tensor::shard::Shard;
use hasten_tensor::shard::{check_lengths, input_splits, shard_inputs, InputSplit};
use hasten_tensor::{Error, Executable, Graph, HostData, HostSlice, HostTensor, Result, Shape};
use std::sync::{Arc, Mutex};

/// The replicas' executables of one graph.
pub(crate) struct MirroredExecutable {
    replicas: Vec<Box<dyn Executable>>,
    /// Each replica's rows of the batch (`None` for a graph without a batch).
    rows: Vec<Option<Shard>>,
    inputs: Vec<InputSplit>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    /// Per output: its whole-batch shape, if each replica holds its own rows of it.
    batched: Vec<Option<Shape>>,
    /// The joined per-sample outputs of the last step.
    joined: Vec<Option<HostTensor>>,
    group: Arc<ThreadGroup>,
    busy: Arc<Mutex<()>>,
}

impl MirroredExecutable {
    pub fn new(
        graph: &Graph,
        replicas: Vec<Box<dyn Executable>>,
        rows: Vec<Option<Shard>>,
        batched_outputs: Vec<bool>,
        group: Arc<ThreadGroup>,
        busy: Arc<Mutex<()>>,
    ) -> Result<Self> {
        // The global batch, when the graph has one.
        let batch: Option<usize> = rows.iter().map(|s| s.map(|s| s.rows)).sum();
        let (input_names, inputs): (Vec<String>, Vec<InputSplit>) =
            input_splits(graph, batch)?.into_iter().unzip();
        if let Some(r) = replicas.iter().find(|r| r.input_names() != input_names) {
            return Err(Error::InvalidArgument {
                op: "mirrored",
                detail: format!(
                    "a replica compiled inputs [{}] for a graph with inputs [{}]",
                    r.input_names().join(", "),
                    input_names.join(", ")
                ),
            });
        }
        let mut batched = Vec::new();
        for ((_, id), on) in graph.outputs().iter().zip(&batched_outputs) {
            batched.push(on.then(|| graph.shape(*id).cloned()).transpose()?);
        }
        let output_names = graph.outputs().iter().map(|(n, _)| n.clone()).collect();
        Ok(MirroredExecutable {
            joined: vec![None; batched.len()],
            replicas,
            rows,
            inputs,
            input_names,
            output_names,
            batched,
            group,
            busy,
        })
    }

    /// Runs every replica on its own thread; a failing replica breaks the group so that the
    /// others leave their collectives with an error instead of waiting for it.
    fn run_replicas(&mut self, per_replica: Vec<Vec<HostSlice<'_>>>) -> Result<()> {
        let group = &self.group;
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .replicas
                .iter_mut()
                .zip(per_replica)
                .enumerate()
                .map(|(rank, (exe, inputs))| {
                    scope.spawn(move || {
                        let result = exe.run(&inputs);
                        if let Err(e) = &result {
                            group.break_with(&format!("replica {rank} failed: {e}"));
                        }
                        result
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        group.break_with("a replica panicked");
                        Err(Error::Collective("a replica thread panicked".into()))
                    })
                })
                .collect()
        });
        first_cause(results)
    }

    /// Joins each per-sample output of the replicas, in row order.
    fn join_outputs(&mut self) -> Result<()> {
        for k in 0..self.batched.len() {
            let Some(shape) = &self.batched[k] else {
                continue;
            };
            let mut data = match self.joined[k].take() {
                Some(t) => t.data,
                None => HostData::zeros(self.replicas[0].output_slice(k)?.dtype(), 0)?,
            };
            clear(&mut data);
            for exe in &mut self.replicas {
                append(&mut data, exe.output_slice(k)?)?;
            }
            self.joined[k] = Some(HostTensor::new(shape.clone(), data)?);
        }
        Ok(())
    }
}

/// The error that caused a failed step: a replica's own error before the collective errors it
/// caused on the others.
fn first_cause(results: Vec<Result<()>>) -> Result<()> {
    let mut errors: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
    match errors
        .iter()
        .position(|e| !matches!(e, Error::Collective(_)))
    {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(()), Err),
    }
}

fn clear(data: &mut HostData) {
    match data {
        HostData::F32(v) => v.clear(),
        HostData::I32(v) => v.clear(),
        HostData::U8(v) => v.clear(),
        HostData::Bool(v) => v.clear(),
    }
}

fn append(data: &mut HostData, x: HostSlice<'_>) -> Result<()> {
    match (data, x) {
        (HostData::F32(v), HostSlice::F32(x)) => v.extend_from_slice(x),
        (HostData::I32(v), HostSlice::I32(x)) => v.extend_from_slice(x),
        (HostData::U8(v), HostSlice::U8(x)) => v.extend_from_slice(x),
        (HostData::Bool(v), HostSlice::Bool(x)) => v.extend_from_slice(x),
        (d, x) => {
            return Err(Error::Collective(format!(
                "replicas returned an output as {} and as {}",
                d.dtype(),
                x.dtype()
            )))
        }
    }
    Ok(())
}

impl Executable for MirroredExecutable {
    fn input_names(&self) -> &[String] {
        &self.input_names
    }

    fn output_names(&self) -> &[String] {
        &self.output_names
    }

    fn state_names(&self) -> &[String] {
        self.replicas[0].state_names()
    }

    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        check_lengths(inputs, &self.inputs, &self.input_names)?;
        let per_replica = self
            .rows
            .iter()
            .map(|shard| shard_inputs(inputs, &self.inputs, *shard))
            .collect();
        let busy = Arc::clone(&self.busy);
        let _step = busy
            .lock()
            .map_err(|_| Error::Collective("an earlier step panicked".into()))?;
        self.group.mend();
        self.run_replicas(per_replica)?;
        self.join_outputs()
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        match self.joined.get(index) {
            Some(Some(t)) => Ok(t.data.as_slice()),
            _ => self.replicas[0].output_slice(index),
        }
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        self.replicas[0].read_state(name)
    }

    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        self.replicas
            .iter_mut()
            .try_for_each(|r| r.write_state(name, value))
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let k = self.output_index(name)?;
        match &self.joined[k] {
            Some(t) => Ok(t.clone()),
            None => self.replicas[0].output(name),
        }
    }
}
