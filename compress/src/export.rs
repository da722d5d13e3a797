//! Sparse model files, and what a model weighs raw and gzip-compressed.
//!
//! A sparse file is one safetensors file. Its metadata holds `format` =
//! `hasten-sparse-1` and `architecture`, the JSON of the unwrapped layers (`{"input": [..],
//! "layers": [{"kind", "config"}]}`). Each Dense or Conv2D kernel `<layer>/kernel`, seen as the
//! matrix `[fan_in, units]`, is stored as block-sparse rows in four tensors:
//! - `<layer>/kernel.shape` (I32, the kernel's dims),
//! - `<layer>/kernel.indptr` (I32 `[block_rows + 1]`),
//! - `<layer>/kernel.indices` (I32 `[blocks]`, each stored block's block column),
//! - `<layer>/kernel.values` (F32 `[blocks, r, c]`),
//!
//! with `r × c` the pruning block size (1×1 for unblocked pruning: plain CSR). Every other
//! weight (biases, batch-norm statistics) is stored dense under its own name.

use crate::plain::{model_from, plain_view, PlainLayer};
use crate::sparse::Bsr;
use crate::{Error, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use hasten_nn::Sequential;
use hasten_tensor::io::{from_safetensors_bytes, to_safetensors_bytes};
use hasten_tensor::{HostData, HostTensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

const FORMAT: &str = "hasten-sparse-1";
const KERNEL_KINDS: [&str; 2] = ["Dense", "Conv2D"];

/// Bytes of a model file, raw and gzip-compressed (default level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Bytes as written.
    pub raw: usize,
    /// Bytes after gzip.
    pub gzip: usize,
}

impl Size {
    fn of(bytes: &[u8]) -> Result<Size> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(bytes)
            .and_then(|_| gz.flush())
            .map_err(|e| io_err("gzip", e))?;
        let gzip = gz.finish().map_err(|e| io_err("gzip", e))?.len();
        Ok(Size {
            raw: bytes.len(),
            gzip,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Architecture {
    input: Vec<usize>,
    layers: Vec<SavedLayer>,
}

#[derive(Serialize, Deserialize)]
struct SavedLayer {
    kind: String,
    config: serde_json::Value,
}

/// The size of `model`'s weights as a dense safetensors file (what `save_weights` writes,
/// without pruning masks).
pub fn dense_size(model: &mut Sequential) -> Result<Size> {
    let (_, weights) = plain_view(model)?;
    Size::of(&to_safetensors_bytes(&weights, None)?)
}

/// The size of `model` as a sparse file ([`save_sparse`]).
pub fn sparse_size(model: &mut Sequential) -> Result<Size> {
    Size::of(&sparse_bytes(model)?)
}

/// Writes `model` (pruned or stripped) as a sparse file.
pub fn save_sparse(model: &mut Sequential, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    hasten_tensor::io::write_atomically(path, &sparse_bytes(model)?)?;
    Ok(())
}

/// Reads a sparse file back as a plain (uncompiled) model with the zeros in its weights.
pub fn load_sparse(path: impl AsRef<Path>) -> Result<Sequential> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bad = |detail: String| Error::Format {
        path: shown.clone(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| io_err(&shown, e))?;
    let (tensors, meta) = from_safetensors_bytes(&bytes, path)?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a {FORMAT} file (its metadata has no format {FORMAT:?})"
        )));
    }
    let arch: Architecture = serde_json::from_str(meta.get("architecture").map_or("", |s| s))
        .map_err(|e| bad(format!("bad architecture: {e}")))?;
    let specs: Vec<(&str, &serde_json::Value)> = arch
        .layers
        .iter()
        .map(|l| (l.kind.as_str(), &l.config))
        .collect();
    let mut model = model_from(&specs, &arch.input)
        .map_err(|e| bad(format!("the architecture does not build: {e}")))?;
    let mut weights = BTreeMap::new();
    for name in model.weight_names() {
        let value = read_weight(&tensors, &name).map_err(|e| bad(format!("{name}: {e}")))?;
        weights.insert(name, value);
    }
    model
        .set_weights(&weights)
        .map_err(|e| bad(e.to_string()))?;
    Ok(model)
}

fn sparse_bytes(model: &mut Sequential) -> Result<Vec<u8>> {
    let (layers, weights) = plain_view(model)?;
    let mut tensors = BTreeMap::new();
    for (name, value) in weights {
        match sparse_kernel_block(&layers, &name) {
            Some(block) => tensors.extend(encode_kernel(&name, &value, block)?),
            None => {
                tensors.insert(name, value);
            }
        }
    }
    let arch = Architecture {
        input: layers
            .first()
            .map(|l| l.input_shape.clone())
            .unwrap_or_default(),
        layers: layers
            .iter()
            .map(|l| SavedLayer {
                kind: l.kind.clone(),
                config: l.config.clone(),
            })
            .collect(),
    };
    let arch = serde_json::to_string(&arch).map_err(|e| Error::config(e.to_string()))?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("architecture".to_string(), arch),
    ]);
    Ok(to_safetensors_bytes(&tensors, Some(meta))?)
}

/// The block size a weight is stored sparsely with, if it is a prunable kernel.
fn sparse_kernel_block(layers: &[PlainLayer], weight: &str) -> Option<(usize, usize)> {
    let layer = weight.strip_suffix("/kernel")?;
    let l = layers.iter().find(|l| l.name == layer)?;
    KERNEL_KINDS
        .contains(&l.kind.as_str())
        .then(|| l.block.unwrap_or((1, 1)))
}

fn encode_kernel(
    name: &str,
    kernel: &HostTensor,
    block: (usize, usize),
) -> Result<BTreeMap<String, HostTensor>> {
    let dims = kernel.shape.dims();
    let cols = *dims.last().unwrap_or(&1);
    let rows = kernel.shape.numel() / cols.max(1);
    let bsr = Bsr::from_dense(kernel.as_f32()?, rows, cols, block)?;
    let ints = |v: Vec<i32>| HostTensor::i32(vec![v.len()], v);
    let dims_i32 = dims.iter().map(|&d| d as i32).collect();
    Ok(BTreeMap::from([
        (format!("{name}.shape"), ints(dims_i32)?),
        (format!("{name}.indptr"), ints(bsr.indptr)?),
        (format!("{name}.indices"), ints(bsr.indices.clone())?),
        (
            format!("{name}.values"),
            HostTensor::f32(vec![bsr.indices.len(), block.0, block.1], bsr.values)?,
        ),
    ]))
}

fn read_weight(tensors: &BTreeMap<String, HostTensor>, name: &str) -> Result<HostTensor> {
    if let Some(dense) = tensors.get(name) {
        return Ok(dense.clone());
    }
    let part = |p: &str| {
        let key = format!("{name}.{p}");
        tensors
            .get(&key)
            .ok_or_else(|| Error::config(format!("the file has no tensor {key:?}")))
    };
    let ints = |t: &HostTensor| match &t.data {
        HostData::I32(v) => Ok(v.clone()),
        _ => Err(Error::config("index tensors must be I32")),
    };
    let dims: Vec<usize> = ints(part("shape")?)?
        .into_iter()
        .map(|d| d.max(0) as usize)
        .collect();
    let values = part("values")?;
    let vdims = values.shape.dims().to_vec();
    if vdims.len() != 3 || dims.is_empty() {
        return Err(Error::config(format!(
            "values must be [blocks, r, c], got {vdims:?}"
        )));
    }
    let cols = dims[dims.len() - 1];
    let bsr = Bsr {
        rows: dims.iter().product::<usize>() / cols.max(1),
        cols,
        block: (vdims[1], vdims[2]),
        indptr: ints(part("indptr")?)?,
        indices: ints(part("indices")?)?,
        values: values.as_f32()?.to_vec(),
    };
    Ok(HostTensor::f32(dims, bsr.to_dense()?)?)
}

fn io_err(path: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_string(),
        source,
    }
}
