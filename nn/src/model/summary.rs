//! Keras-style `summary()`.

use super::sequential::Sequential;
use crate::Result;
use std::fmt::Write;

impl Sequential {
    /// The number of parameters, trainable and not (batch-norm's moving statistics count,
    /// as in Keras; step counters such as Dropout's are state, not parameters). Builds the
    /// model first if needed.
    pub fn count_params(&mut self) -> Result<usize> {
        self.build()?;
        let built = self.built.as_ref().ok_or(crate::Error::NotCompiled)?;
        Ok(built
            .params
            .iter()
            .flatten()
            .map(|(_, p)| p.parameter_count())
            .sum())
    }

    /// The layer table Keras prints: names and kinds, output shapes, parameter counts.
    pub fn summary(&mut self) -> Result<String> {
        self.build()?;
        let built = self.built.as_ref().ok_or(crate::Error::NotCompiled)?;
        let mut out = String::new();
        let rule = "─".repeat(72);
        let _ = writeln!(out, "Model: \"sequential\"");
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(
            out,
            "{:<32}{:<26}{:>14}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(out, "{}", "═".repeat(72));
        let (mut trainable, mut frozen) = (0usize, 0usize);
        for ((layer, shape), params) in self
            .layers()
            .iter()
            .zip(&built.output_shapes)
            .zip(&built.params)
        {
            let mut count = 0;
            for (_, p) in params {
                let n = p.parameter_count();
                count += n;
                if p.trainable {
                    trainable += n;
                } else {
                    frozen += n;
                }
            }
            let shape = format!(
                "(None, {})",
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = writeln!(
                out,
                "{:<32}{:<26}{:>14}",
                format!("{} ({})", layer.name(), layer.kind()),
                shape,
                group(count)
            );
        }
        let _ = writeln!(out, "{}", "═".repeat(72));
        let _ = writeln!(out, " Total params: {}", group(trainable + frozen));
        let _ = writeln!(out, " Trainable params: {}", group(trainable));
        let _ = writeln!(out, " Non-trainable params: {}", group(frozen));
        let _ = write!(out, "{rule}");
        Ok(out)
    }
}

/// `101770` → `101,770`.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
