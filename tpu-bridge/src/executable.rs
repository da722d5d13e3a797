//! [`PjrtExecutable`]: one compiled step. The state lives in device buffers; each step's
//! updated-state results become the next step's state arguments (no host round trip).
//! Inputs are copied to the device once per step; outputs and state are copied to the host
//! only when asked for.

use crate::emit::{Program, Slot};
use crate::pjrt::{Buffer, Client, LoadedExecutable};
use hasten_tensor::shard::{check_lengths, shard_inputs, InputSplit, Shard};
use hasten_tensor::{DType, Error, Executable, HostData, HostSlice, HostTensor, Result, Shape};
use std::sync::Arc;

/// How a step is spread over replicas: each runs the same program on its rows of the batch.
#[derive(Clone, Debug)]
pub(crate) struct Replication {
    /// Replicas (devices 0..replicas).
    pub replicas: usize,
    /// Rows of the batch each replica takes, when the step has a batch.
    pub rows: Option<usize>,
    /// How each input of the whole step is split between the replicas.
    pub splits: Vec<InputSplit>,
    /// Per output: whether each replica holds its own rows of it (joined in replica order),
    /// rather than a value all share.
    pub batched: Vec<bool>,
}

impl Replication {
    /// One device running the whole step.
    pub fn single(program: &Program) -> Self {
        Replication {
            replicas: 1,
            rows: None,
            splits: Vec::new(),
            batched: vec![false; program.outputs.len()],
        }
    }
}

/// A compiled graph with its state on the device (on each replica's device).
pub struct PjrtExecutable {
    client: Arc<Client>,
    program: Program,
    loaded: LoadedExecutable,
    replication: Replication,
    results: Vec<(DType, Vec<usize>)>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    state_names: Vec<String>,
    /// Per replica, the state buffers.
    state: Vec<Vec<Buffer>>,
    /// Per replica, the last step's outputs.
    outputs: Vec<Vec<Buffer>>,
    /// Host copies of the last step's outputs (replicas joined), made on demand.
    host: Vec<Option<HostData>>,
}

impl PjrtExecutable {
    pub(crate) fn new(
        client: &Arc<Client>,
        program: Program,
        loaded: LoadedExecutable,
        replication: Replication,
    ) -> Result<Self> {
        let state = (0..replication.replicas)
            .map(|device| {
                program
                    .state
                    .iter()
                    .map(|s| {
                        let zeros = HostData::zeros(s.dtype, numel(s))?;
                        let bytes = zeros.as_slice();
                        Ok(client.buffer_from_host(bytes.as_bytes(), s.dtype, &s.dims, device)?)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let results = program
            .updated
            .iter()
            .map(|&k| &program.state[k])
            .chain(program.outputs.iter())
            .map(|s| (s.dtype, s.dims.clone()))
            .collect();
        let names = |slots: &[Slot]| slots.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        Ok(PjrtExecutable {
            client: client.clone(),
            input_names: names(&program.inputs),
            output_names: names(&program.outputs),
            state_names: names(&program.state),
            host: Vec::new(),
            outputs: Vec::new(),
            results,
            program,
            loaded,
            replication,
            state,
        })
    }

    fn state_index(&self, name: &str) -> Result<usize> {
        self.state_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "state",
                name: name.to_string(),
                known: self.state_names.join(", "),
            })
    }

    /// Copies `data` to a new buffer on `device` after checking it against `slot`.
    fn upload(&self, slot: &Slot, data: HostSlice<'_>, device: usize) -> Result<Buffer> {
        check(slot, data)?;
        Ok(self
            .client
            .buffer_from_host(data.as_bytes(), slot.dtype, &slot.dims, device)?)
    }

    /// Each replica's input buffers: its rows of the split inputs, the others whole.
    fn upload_inputs(&self, inputs: &[HostSlice<'_>]) -> Result<Vec<Vec<Buffer>>> {
        let r = &self.replication;
        if let Some(rows) = r.rows {
            check_lengths(inputs, &r.splits, &self.input_names)?;
            (0..r.replicas)
                .map(|device| {
                    let shard = Shard {
                        offset: device * rows,
                        rows,
                    };
                    let mine = shard_inputs(inputs, &r.splits, Some(shard));
                    self.upload_all(&mine, device)
                })
                .collect()
        } else {
            (0..r.replicas)
                .map(|d| self.upload_all(inputs, d))
                .collect()
        }
    }

    fn upload_all(&self, inputs: &[HostSlice<'_>], device: usize) -> Result<Vec<Buffer>> {
        if inputs.len() != self.program.inputs.len() {
            return Err(Error::InputCount {
                expected: self.program.inputs.len(),
                names: self.input_names.join(", "),
                found: inputs.len(),
            });
        }
        self.program
            .inputs
            .iter()
            .zip(inputs)
            .map(|(slot, &data)| self.upload(slot, data, device))
            .collect()
    }

    /// Output `index` on the host: replica 0's, or every replica's rows joined.
    fn download_output(&self, index: usize) -> Result<HostData> {
        if !self.replication.batched[index] {
            return download(&self.outputs[0][index]);
        }
        let parts = self
            .outputs
            .iter()
            .map(|o| download(&o[index]))
            .collect::<Result<Vec<_>>>()?;
        join(parts)
    }

    /// The whole step's dims of output `index`.
    fn output_dims(&self, index: usize) -> Vec<usize> {
        let mut dims = self.program.outputs[index].dims.clone();
        if self.replication.batched[index] {
            dims[0] *= self.replication.replicas;
        }
        dims
    }
}

fn numel(slot: &Slot) -> usize {
    slot.dims.iter().product()
}

/// Refuses data whose dtype or element count differs from the slot's.
fn check(slot: &Slot, data: HostSlice<'_>) -> Result<()> {
    if data.dtype() != slot.dtype || data.len() != numel(slot) {
        return Err(Error::BadData {
            what: slot.name.clone(),
            expected_dtype: slot.dtype,
            expected_shape: Shape::new(slot.dims.clone()),
            found: format!("{} {} elements", data.dtype(), data.len()),
        });
    }
    Ok(())
}

/// Host data of one dtype joined end to end (the replicas' rows of an output, in order).
fn join(parts: Vec<HostData>) -> Result<HostData> {
    let mut parts = parts.into_iter();
    let mut all = parts.next().ok_or_else(|| Error::InvalidArgument {
        op: "output",
        detail: "no replica gave the output".into(),
    })?;
    for part in parts {
        part.as_slice().append_to(&mut all)?;
    }
    Ok(all)
}

/// A device buffer copied into host data.
fn download(buffer: &Buffer) -> Result<HostData> {
    let len = buffer.dims().iter().product();
    let mut bytes = vec![0u8; buffer.byte_len()];
    buffer.to_host(&mut bytes)?;
    let words = |b: &[u8]| -> Vec<[u8; 4]> {
        b.chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect()
    };
    Ok(match buffer.dtype() {
        DType::F32 => HostData::F32(words(&bytes).into_iter().map(f32::from_le_bytes).collect()),
        DType::I32 => HostData::I32(words(&bytes).into_iter().map(i32::from_le_bytes).collect()),
        DType::U8 => HostData::U8(bytes),
        DType::Bool => HostData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        other => HostData::zeros(other, len)?,
    })
}

impl Executable for PjrtExecutable {
    fn input_names(&self) -> &[String] {
        &self.input_names
    }

    fn output_names(&self) -> &[String] {
        &self.output_names
    }

    fn state_names(&self) -> &[String] {
        &self.state_names
    }

    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        let uploaded = self.upload_inputs(inputs)?;
        let args: Vec<Vec<&Buffer>> = self
            .state
            .iter()
            .zip(&uploaded)
            .map(|(state, inputs)| state.iter().chain(inputs).collect())
            .collect();
        let results = self.loaded.execute(&args, &self.results)?;
        self.outputs.clear();
        for (device, mut results) in results.into_iter().enumerate() {
            let outputs = results.split_off(self.program.updated.len());
            for (&k, buffer) in self.program.updated.iter().zip(results) {
                self.state[device][k] = buffer;
            }
            self.outputs.push(outputs);
        }
        self.host = vec![None; self.program.outputs.len()];
        Ok(())
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        let name = self.output_names.get(index).cloned().unwrap_or_default();
        if self.outputs.is_empty() || index >= self.program.outputs.len() {
            return Err(Error::InvalidArgument {
                op: "output",
                detail: format!("output {index} ({name:?}) does not exist or no step has run yet"),
            });
        }
        if self.host[index].is_none() {
            self.host[index] = Some(self.download_output(index)?);
        }
        Ok(self.host[index]
            .as_ref()
            .map(HostData::as_slice)
            .unwrap_or(HostSlice::F32(&[])))
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        let k = self.state_index(name)?;
        let data = download(&self.state[0][k])?;
        HostTensor::new(Shape::new(self.program.state[k].dims.clone()), data)
    }

    /// Writes the value on every replica.
    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        let k = self.state_index(name)?;
        for device in 0..self.replication.replicas {
            self.state[device][k] = self.upload(&self.program.state[k], value, device)?;
        }
        Ok(())
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let index = self.output_index(name)?;
        let dims = self.output_dims(index);
        let data = self.output_slice(index)?.to_owned();
        HostTensor::new(Shape::new(dims), data)
    }
}
