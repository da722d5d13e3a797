//! Steps per execution on any backend: [`RepeatedExecutable`] runs a one-step executable k
//! times per `run`, on inputs given as k batches stacked on a leading axis, and stacks the
//! outputs the same way. A backend that can loop on its device (PJRT's `stablehlo.while`)
//! overrides [`crate::Backend::compile_steps`] instead; this is the meaning every other
//! backend gives it.

use crate::{Error, Executable, HostData, HostSlice, HostTensor, Result, Shape};

/// A one-step executable run `steps` times per call.
pub struct RepeatedExecutable {
    inner: Box<dyn Executable>,
    steps: usize,
    /// Per output, the stacked values of the last call.
    outputs: Vec<HostData>,
}

impl RepeatedExecutable {
    /// Runs `inner` `steps` (at least 1) times per call.
    pub fn new(inner: Box<dyn Executable>, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::InvalidArgument {
                op: "steps per execution",
                detail: "at least one step per execution".into(),
            });
        }
        Ok(RepeatedExecutable {
            inner,
            steps,
            outputs: Vec::new(),
        })
    }

    /// Appends every output of the step just run to the stacks.
    fn collect_outputs(&mut self) -> Result<()> {
        for k in 0..self.inner.output_names().len() {
            let step = self.inner.output_slice(k)?;
            match self.outputs.get_mut(k) {
                Some(stack) => step.append_to(stack)?,
                None => self.outputs.push(step.to_owned()),
            }
        }
        Ok(())
    }
}

impl Executable for RepeatedExecutable {
    fn input_names(&self) -> &[String] {
        self.inner.input_names()
    }

    fn output_names(&self) -> &[String] {
        self.inner.output_names()
    }

    fn state_names(&self) -> &[String] {
        self.inner.state_names()
    }

    /// Each input holds `steps` equal batches, one after the other; step i reads batch i.
    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        let steps = self.steps;
        if let Some((k, x)) = inputs
            .iter()
            .enumerate()
            .find(|(_, x)| x.len() % steps != 0)
        {
            return Err(Error::BadData {
                what: format!("input {:?}", self.inner.input_names().get(k)),
                expected_dtype: x.dtype(),
                expected_shape: Shape::new(vec![steps, x.len() / steps]),
                found: format!("{} elements, not {steps} equal batches", x.len()),
            });
        }
        self.outputs.clear();
        for i in 0..steps {
            let batch: Vec<HostSlice<'_>> = inputs
                .iter()
                .map(|x| x.range(i * x.len() / steps, x.len() / steps))
                .collect();
            self.inner.run(&batch)?;
            self.collect_outputs()?;
        }
        Ok(())
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        self.outputs
            .get(index)
            .map(HostData::as_slice)
            .ok_or_else(|| Error::InvalidArgument {
                op: "output",
                detail: format!("output {index} does not exist or no step has run yet"),
            })
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        self.inner.read_state(name)
    }

    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        self.inner.write_state(name, value)
    }

    /// The output with the steps on a new leading axis.
    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let index = self.output_index(name)?;
        let step = self.inner.output(name)?;
        let dims = [&[self.steps][..], step.shape.dims()].concat();
        let data = self.output_slice(index)?.to_owned();
        HostTensor::new(Shape::new(dims), data)
    }
}
