//! The three graphs a model compiles: train step, evaluation step, prediction.

use super::sequential::{Built, Sequential};
use crate::layers::{batched, ForwardCtx, LayerOutput};
use crate::optimizers::{Hyper, Optimizer, ParamGrad};
use crate::{losses::Loss, metrics::Metric, Result};
use hasten_tensor::{grad, DType, Graph, NodeId};

/// Names of the optimizer's step counter and learning-rate state.
pub const ITERATIONS: &str = "optimizer/iterations";
/// Name of the learning-rate state.
pub const LEARNING_RATE: &str = "optimizer/learning_rate";

/// A forward pass: the output and the trainable parameters with their state names.
pub struct Forward {
    pub output: LayerOutput,
    pub trainable: Vec<(String, NodeId)>,
    pub updates: Vec<(NodeId, NodeId)>,
    /// Each layer's parameter nodes, in [`crate::layers::Layer::params`] order.
    pub layer_params: Vec<Vec<NodeId>>,
}

impl Sequential {
    /// Appends the forward pass over `x` (dims `[batch, ..input]`).
    pub(crate) fn forward(
        &self,
        built: &Built,
        g: &mut Graph,
        x: NodeId,
        training: bool,
    ) -> Result<Forward> {
        let mut updates = Vec::new();
        let mut trainable = Vec::new();
        let mut out = LayerOutput::from(x);
        let mut layer_params = Vec::with_capacity(built.params.len());
        for (layer, specs) in self.layers().iter().zip(&built.params) {
            let mut params = Vec::with_capacity(specs.len());
            for (name, spec) in specs {
                let p = g.parameter(name, spec.shape.clone(), spec.dtype())?;
                if spec.trainable {
                    trainable.push((name.clone(), p));
                }
                params.push(p);
            }
            let mut ctx = ForwardCtx {
                training,
                updates: &mut updates,
            };
            out = layer.forward(g, out.value, &params, &mut ctx)?;
            layer_params.push(params);
        }
        Ok(Forward {
            output: out,
            trainable,
            updates,
            layer_params,
        })
    }

    fn inputs(
        &self,
        built: &Built,
        g: &mut Graph,
        batch: usize,
        loss: Option<&Loss>,
    ) -> Result<(NodeId, Option<NodeId>)> {
        let x = g.input("x", batched(batch, &built.input_shape), DType::F32)?;
        let y = match loss {
            Some(loss) => {
                let (shape, dtype) = loss.label_spec(built.output_shape());
                Some(g.input("y", batched(batch, &shape), dtype)?)
            }
            None => None,
        };
        Ok((x, y))
    }

    fn loss_and_metrics(
        &self,
        g: &mut Graph,
        out: LayerOutput,
        y: NodeId,
        loss: &Loss,
        metrics: &[Metric],
    ) -> Result<NodeId> {
        let l = loss.build(g, out, y)?;
        g.output("loss", l)?;
        for m in metrics {
            let v = m.build(g, out.value, y, loss.label_kind())?;
            g.output(&m.name(), v)?;
        }
        Ok(l)
    }

    /// The train step: outputs `loss` and each metric; updates weights and optimizer state.
    pub(crate) fn train_graph(
        &self,
        built: &Built,
        batch: usize,
        optimizer: &dyn Optimizer,
        loss: &Loss,
        metrics: &[Metric],
    ) -> Result<Graph> {
        let mut g = Graph::new();
        let (x, y) = self.inputs(built, &mut g, batch, Some(loss))?;
        let y = y.ok_or(crate::Error::NotCompiled)?;
        let fwd = self.forward(built, &mut g, x, true)?;
        let l = self.loss_and_metrics(&mut g, fwd.output, y, loss, metrics)?;
        let wrt: Vec<NodeId> = fwd.trainable.iter().map(|(_, p)| *p).collect();
        let grads = grad(&mut g, l, &wrt)?;
        let iterations = g.parameter(ITERATIONS, [0usize; 0], DType::F32)?;
        let lr = g.parameter(LEARNING_RATE, [0usize; 0], DType::F32)?;
        let one = g.scalar(1.0);
        let step = g.add(iterations, one)?;
        g.update(iterations, step)?;
        let params: Vec<ParamGrad> = fwd
            .trainable
            .iter()
            .zip(grads)
            .map(|((name, param), grad)| ParamGrad {
                name: name.clone(),
                param: *param,
                grad,
            })
            .collect();
        optimizer.apply(
            &mut g,
            &params,
            Hyper {
                learning_rate: lr,
                step,
            },
        )?;
        self.apply_constraints(built, &mut g, &fwd.layer_params)?;
        for (p, v) in fwd.updates {
            g.update(p, v)?;
        }
        Ok(g)
    }

    /// Passes each trainable weight's updated value through its layer's
    /// [`crate::layers::Layer::constrain`].
    fn apply_constraints(
        &self,
        built: &Built,
        g: &mut Graph,
        layer_params: &[Vec<NodeId>],
    ) -> Result<()> {
        let layers = self.layers().iter().zip(&built.params).zip(layer_params);
        for ((layer, specs), nodes) in layers {
            for (index, ((_, spec), &param)) in specs.iter().zip(nodes).enumerate() {
                let Some(updated) = g.update_of(param).filter(|_| spec.trainable) else {
                    continue;
                };
                let constrained = layer.constrain(g, index, nodes, updated)?;
                if constrained != updated {
                    g.replace_update(param, constrained)?;
                }
            }
        }
        Ok(())
    }

    /// The evaluation step: outputs `loss` and each metric.
    pub(crate) fn eval_graph(
        &self,
        built: &Built,
        batch: usize,
        loss: &Loss,
        metrics: &[Metric],
    ) -> Result<Graph> {
        let mut g = Graph::new();
        let (x, y) = self.inputs(built, &mut g, batch, Some(loss))?;
        let y = y.ok_or(crate::Error::NotCompiled)?;
        let fwd = self.forward(built, &mut g, x, false)?;
        self.loss_and_metrics(&mut g, fwd.output, y, loss, metrics)?;
        Ok(g)
    }

    /// The prediction step: outputs `predictions`.
    pub(crate) fn predict_graph(&self, built: &Built, batch: usize) -> Result<Graph> {
        let mut g = Graph::new();
        let (x, _) = self.inputs(built, &mut g, batch, None)?;
        let fwd = self.forward(built, &mut g, x, false)?;
        g.output("predictions", fwd.output.value)?;
        Ok(g)
    }
}
