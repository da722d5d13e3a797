//! Metrics, computed inside the step as batch means and averaged over an epoch on the host.

use crate::losses::LabelKind;
use crate::Result;
use hasten_tensor::ir::CompareOp;
use hasten_tensor::{DType, Graph, NodeId};
use serde::{Deserialize, Serialize};

/// A metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of samples classified right: the arg-max against integer or one-hot labels, or
    /// a 0.5 threshold for a single sigmoid output.
    Accuracy,
    /// Fraction of samples whose label is among the `k` highest scores.
    TopKAccuracy(usize),
}

impl Metric {
    /// The name used in logs and history ("accuracy", "top_5_accuracy").
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::TopKAccuracy(k) => format!("top_{k}_accuracy"),
        }
    }

    /// Appends the batch mean of the metric.
    pub fn build(
        &self,
        g: &mut Graph,
        out: NodeId,
        labels: NodeId,
        kind: LabelKind,
    ) -> Result<NodeId> {
        let last = g.shape(out)?.rank() - 1;
        let classes = g.shape(out)?.dims()[last];
        let hits = match (self, kind) {
            (Metric::Accuracy, LabelKind::Dense) if classes == 1 => {
                let half = g.scalar(0.5);
                let p = g.compare(CompareOp::Gt, out, half)?;
                let t = g.compare(CompareOp::Gt, labels, half)?;
                let p = g.cast(p, DType::F32)?;
                let t = g.cast(t, DType::F32)?;
                g.compare(CompareOp::Eq, p, t)?
            }
            (Metric::Accuracy, LabelKind::Sparse) => {
                let predicted = g.argmax(out, last)?;
                g.compare(CompareOp::Eq, predicted, labels)?
            }
            (Metric::Accuracy, LabelKind::Dense) => {
                let predicted = g.argmax(out, last)?;
                let truth = g.argmax(labels, last)?;
                g.compare(CompareOp::Eq, predicted, truth)?
            }
            (Metric::TopKAccuracy(k), _) => {
                let one_hot = match kind {
                    LabelKind::Sparse => g.one_hot(labels, classes)?,
                    LabelKind::Dense => labels,
                };
                let picked = g.mul(one_hot, out)?;
                let label_score = g.sum(picked, &[last], true)?;
                let above = g.compare(CompareOp::Gt, out, label_score)?;
                let above = g.cast(above, DType::F32)?;
                let rank = g.sum(above, &[last], false)?;
                let k = g.scalar(*k as f32);
                g.compare(CompareOp::Lt, rank, k)?
            }
        };
        let hits = g.cast(hits, DType::F32)?;
        Ok(g.mean_all(hits)?)
    }
}
