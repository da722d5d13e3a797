//! Named tensors to and from safetensors files (the format other tools read), written
//! atomically: a temporary file, fsync, then rename.

use crate::host::{HostData, HostTensor};
use crate::{Error, Result, Shape};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

fn st_err(path: &Path, detail: impl ToString) -> Error {
    Error::Safetensors {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `tensors` to `path` atomically (never leaves a half-written file behind).
pub fn save_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let bytes = serialize(tensors, None, path)?;
    write_atomically(path, &bytes)
}

/// `tensors` as the bytes of a safetensors file, with `metadata` in its header (the
/// format's `__metadata__`).
pub fn to_safetensors_bytes(
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    serialize(tensors, metadata, Path::new("<memory>"))
}

fn serialize(
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = match t.data {
            HostData::F32(_) => Dtype::F32,
            HostData::I32(_) => Dtype::I32,
            HostData::U8(_) => Dtype::U8,
            HostData::Bool(_) => Dtype::BOOL,
        };
        let view = TensorView::new(dtype, t.shape.0.clone(), t.data.as_slice().as_bytes())
            .map_err(|e| st_err(path, e))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, metadata).map_err(|e| st_err(path, e))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err(path, e))
}

/// Reads every tensor of a safetensors file; a truncated or corrupt file is an error.
pub fn load_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    Ok(from_safetensors_bytes(&bytes, path)?.0)
}

/// The tensors and header metadata of safetensors `bytes`; errors name `origin`.
pub fn from_safetensors_bytes(
    bytes: &[u8],
    origin: &Path,
) -> Result<(BTreeMap<String, HostTensor>, HashMap<String, String>)> {
    let path = origin;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| st_err(path, e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => HostData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::I32 => HostData::I32(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::U8 => HostData::U8(raw.to_vec()),
            Dtype::BOOL => HostData::Bool(raw.iter().map(|&b| b != 0).collect()),
            other => {
                return Err(st_err(
                    path,
                    format!("tensor {name:?} has unsupported dtype {other:?}"),
                ))
            }
        };
        let t = HostTensor::new(Shape::new(view.shape().to_vec()), data)
            .map_err(|e| st_err(path, e))?;
        out.insert(name, t);
    }
    Ok((out, metadata))
}
