//! Losses: each builds the batch-mean loss from the model's output and the labels.

use crate::layers::LayerOutput;
use crate::{Error, Result};
use hasten_tensor::{DType, Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[EPSILON, 1 - EPSILON]` before a logarithm (Keras's value).
pub const EPSILON: f32 = 1e-7;

/// What labels a loss takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// One `i32` class index per sample (per output position).
    Sparse,
    /// `f32` targets of the output's shape.
    Dense,
}

/// A loss, as Keras names and defines them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy against integer class labels.
    SparseCategoricalCrossentropy {
        /// The model outputs logits rather than probabilities.
        from_logits: bool,
    },
    /// Cross-entropy against one-hot (or soft) targets.
    CategoricalCrossentropy {
        /// The model outputs logits rather than probabilities.
        from_logits: bool,
    },
    /// Binary cross-entropy against 0/1 targets.
    BinaryCrossentropy {
        /// The model outputs logits rather than probabilities.
        from_logits: bool,
    },
    /// Mean squared error.
    MeanSquaredError,
}

impl Loss {
    /// Sparse categorical cross-entropy on probabilities.
    pub fn sparse_categorical_crossentropy() -> Self {
        Loss::SparseCategoricalCrossentropy { from_logits: false }
    }

    /// The same cross-entropy taking logits (`on`) or probabilities, as Keras's
    /// `from_logits=True`; other losses are returned unchanged.
    pub fn from_logits(self, on: bool) -> Self {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => {
                Loss::SparseCategoricalCrossentropy { from_logits: on }
            }
            Loss::CategoricalCrossentropy { .. } => {
                Loss::CategoricalCrossentropy { from_logits: on }
            }
            Loss::BinaryCrossentropy { .. } => Loss::BinaryCrossentropy { from_logits: on },
            Loss::MeanSquaredError => Loss::MeanSquaredError,
        }
    }

    /// The labels this loss expects.
    pub fn label_kind(&self) -> LabelKind {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => LabelKind::Sparse,
            _ => LabelKind::Dense,
        }
    }

    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// The per-sample label shape and dtype for a per-sample output shape.
    pub fn label_spec(&self, output: &[usize]) -> (Vec<usize>, DType) {
        match self.label_kind() {
            LabelKind::Sparse => (
                output[..output.len().saturating_sub(1)].to_vec(),
                DType::I32,
            ),
            LabelKind::Dense => (output.to_vec(), DType::F32),
        }
    }

    /// Appends the batch-mean loss. When the output is a softmax and the loss takes
    /// probabilities, the loss is computed from the logits (log-softmax), which is exact and
    /// cannot overflow.
    pub fn build(&self, g: &mut Graph, out: LayerOutput, labels: NodeId) -> Result<NodeId> {
        match *self {
            Loss::SparseCategoricalCrossentropy { from_logits } => {
                let classes = *g.shape(out.value)?.dims().last().unwrap_or(&1);
                let one_hot = g.one_hot(labels, classes)?;
                cross_entropy(g, out, one_hot, from_logits)
            }
            Loss::CategoricalCrossentropy { from_logits } => {
                cross_entropy(g, out, labels, from_logits)
            }
            Loss::BinaryCrossentropy { from_logits } => {
                binary_cross_entropy(g, out.value, labels, from_logits)
            }
            Loss::MeanSquaredError => {
                let d = g.sub(out.value, labels)?;
                let d2 = g.mul(d, d)?;
                Ok(g.mean_all(d2)?)
            }
        }
    }

    /// Checks the output suits the loss (cross-entropy needs a class axis).
    pub fn check_output(&self, output: &[usize]) -> Result<()> {
        if output.is_empty() {
            return Err(Error::config(format!(
                "{} needs an output with a class axis",
                self.name()
            )));
        }
        Ok(())
    }
}

/// `-mean(Σ targets · log p)` over the class axis.
fn cross_entropy(
    g: &mut Graph,
    out: LayerOutput,
    targets: NodeId,
    from_logits: bool,
) -> Result<NodeId> {
    let log_p = match (from_logits, out.logits) {
        (true, _) => g.log_softmax(out.value)?,
        (false, Some(logits)) => g.log_softmax(logits)?,
        (false, None) => {
            let p = clip(g, out.value)?;
            g.log(p)?
        }
    };
    let last = g.shape(log_p)?.rank() - 1;
    let picked = g.mul(targets, log_p)?;
    let per_sample = g.sum(picked, &[last], false)?;
    let mean = g.mean_all(per_sample)?;
    Ok(g.neg(mean)?)
}

/// Binary cross-entropy, averaged over every element.
fn binary_cross_entropy(
    g: &mut Graph,
    out: NodeId,
    y: NodeId,
    from_logits: bool,
) -> Result<NodeId> {
    let per_element = if from_logits {
        // max(z, 0) - z·y + log(1 + e^-|z|)
        let zero = g.scalar(0.0);
        let pos = g.binary(hasten_tensor::ir::BinaryOp::Max, out, zero)?;
        let zy = g.mul(out, y)?;
        let abs = g.unary(hasten_tensor::ir::UnaryOp::Abs, out)?;
        let neg = g.neg(abs)?;
        let e = g.exp(neg)?;
        let one = g.scalar(1.0);
        let sp = g.add(one, e)?;
        let sp = g.log(sp)?;
        let a = g.sub(pos, zy)?;
        g.add(a, sp)?
    } else {
        let p = clip(g, out)?;
        let one = g.scalar(1.0);
        let log_p = g.log(p)?;
        let q = g.sub(one, p)?;
        let log_q = g.log(q)?;
        let not_y = g.sub(one, y)?;
        let a = g.mul(y, log_p)?;
        let b = g.mul(not_y, log_q)?;
        let s = g.add(a, b)?;
        g.neg(s)?
    };
    Ok(g.mean_all(per_element)?)
}

/// Clips probabilities away from 0 and 1.
fn clip(g: &mut Graph, p: NodeId) -> Result<NodeId> {
    let lo = g.scalar(EPSILON);
    let hi = g.scalar(1.0 - EPSILON);
    let p = g.binary(hasten_tensor::ir::BinaryOp::Max, p, lo)?;
    Ok(g.binary(hasten_tensor::ir::BinaryOp::Min, p, hi)?)
}
