//! [`PjrtExecutable`]: one compiled step. The state lives in device buffers; each step's
//! updated-state results become the next step's state arguments (no host round trip).
//! Inputs are copied to the device once per step; outputs and state are copied to the host
//! only when asked for.

use crate::emit::{Program, Slot};
use crate::pjrt::{Buffer, Client, LoadedExecutable};
use hasten_tensor::{DType, Error, Executable, HostData, HostSlice, HostTensor, Result, Shape};
use std::sync::Arc;

/// A compiled graph with its state on the device.
pub struct PjrtExecutable {
    client: Arc<Client>,
    program: Program,
    loaded: LoadedExecutable,
    results: Vec<(DType, Vec<usize>)>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    state_names: Vec<String>,
    state: Vec<Buffer>,
    outputs: Vec<Buffer>,
    /// Host copies of the last step's outputs, made on demand.
    host: Vec<Option<HostData>>,
}

impl PjrtExecutable {
    pub(crate) fn new(
        client: &Arc<Client>,
        program: Program,
        loaded: LoadedExecutable,
    ) -> Result<Self> {
        let state = program
            .state
            .iter()
            .map(|s| {
                let zeros = HostData::zeros(s.dtype, numel(s))?;
                Ok(client.buffer_from_host(zeros.as_slice().as_bytes(), s.dtype, &s.dims)?)
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

    /// Copies `data` to a new device buffer after checking it against `slot`.
    fn upload(&self, slot: &Slot, data: HostSlice<'_>) -> Result<Buffer> {
        check(slot, data)?;
        Ok(self
            .client
            .buffer_from_host(data.as_bytes(), slot.dtype, &slot.dims)?)
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
        if inputs.len() != self.program.inputs.len() {
            return Err(Error::InputCount {
                expected: self.program.inputs.len(),
                names: self.input_names.join(", "),
                found: inputs.len(),
            });
        }
        let uploaded = self
            .program
            .inputs
            .iter()
            .zip(inputs)
            .map(|(slot, &data)| self.upload(slot, data))
            .collect::<Result<Vec<_>>>()?;
        let args: Vec<&Buffer> = self.state.iter().chain(uploaded.iter()).collect();
        let mut results = self.loaded.execute(&args, &self.results)?;
        let outputs = results.split_off(self.program.updated.len());
        for (&k, buffer) in self.program.updated.iter().zip(results) {
            self.state[k] = buffer;
        }
        self.outputs = outputs;
        self.host = vec![None; self.outputs.len()];
        Ok(())
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        let name = self.output_names.get(index).cloned().unwrap_or_default();
        let buffer = self
            .outputs
            .get(index)
            .ok_or_else(|| Error::InvalidArgument {
                op: "output",
                detail: format!("output {index} ({name:?}) does not exist or no step has run yet"),
            })?;
        if self.host[index].is_none() {
            self.host[index] = Some(download(buffer)?);
        }
        Ok(self.host[index]
            .as_ref()
            .map(HostData::as_slice)
            .unwrap_or(HostSlice::F32(&[])))
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        let k = self.state_index(name)?;
        let data = download(&self.state[k])?;
        HostTensor::new(Shape::new(self.program.state[k].dims.clone()), data)
    }

    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        let k = self.state_index(name)?;
        self.state[k] = self.upload(&self.program.state[k], value)?;
        Ok(())
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let index = self.output_index(name)?;
        let dims = self.program.outputs[index].dims.clone();
        let data = self.output_slice(index)?.to_owned();
        HostTensor::new(Shape::new(dims), data)
    }
}
