//! Weight initialisers, as Keras defines them.

use hasten_tensor::HostTensor;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How a weight starts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras's default for kernels).
    GlorotUniform,
    /// Normal with stddev `sqrt(2 / fan_in)`, truncated at two stddevs.
    HeNormal,
}

impl Initializer {
    /// A tensor of `dims` with the given fans.
    pub fn sample(
        self,
        rng: &mut StdRng,
        dims: &[usize],
        fan_in: usize,
        fan_out: usize,
    ) -> HostTensor {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = match self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f32).sqrt();
                (0..n).map(|_| rng.random_range(-limit..limit)).collect()
            }
            Initializer::HeNormal => {
                let std = (2.0 / fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| truncated_normal(rng) * std).collect()
            }
        };
        HostTensor {
            shape: dims.to_vec().into(),
            data: hasten_tensor::HostData::F32(data),
        }
    }
}

/// A standard normal sample, redrawn outside two standard deviations.
fn truncated_normal(rng: &mut StdRng) -> f32 {
    loop {
        // Box–Muller.
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random::<f32>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}
