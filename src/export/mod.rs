//! Exporters, one file per format: our packed safetensors layout, plain fp16 Hugging Face weights, and reports.
//! Every write goes through `crate::output` (a temporary sibling renamed into place, only our files replaced).

pub mod hf_fp16;
pub mod packed;
pub mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Architecture;

/// One array of a safetensors file.
pub struct Array<'a> {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

/// The safetensors header for these arrays, padded with spaces to a multiple of 8 bytes as the format suggests.
pub fn safetensors_header(arrays: &[Array], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialize"));
    let mut offset = 0;
    for a in arrays {
        let end = offset + a.bytes.len();
        header.insert(
            a.name.clone(),
            serde_json::json!({"dtype": a.dtype, "shape": a.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&header).expect("JSON serializes");
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    bytes
}

/// Exact size of the safetensors file these arrays make.
pub fn safetensors_size(arrays: &[Array], metadata: &BTreeMap<String, String>) -> usize {
    8 + safetensors_header(arrays, metadata).len() + arrays.iter().map(|a| a.bytes.len()).sum::<usize>()
}

pub fn write_safetensors(path: &Path, arrays: &[Array], metadata: &BTreeMap<String, String>) -> Result<()> {
    let header = safetensors_header(arrays, metadata);
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    let io = |e| Error::io(path, e);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for a in arrays {
        out.write_all(&a.bytes).map_err(io)?;
    }
    out.into_inner().map_err(|e| Error::io(path, e.into_error()))?.sync_all().map_err(io)
}

/// The `__metadata__` of a safetensors file, read from its header alone (bounded); None when it has none.
pub fn safetensors_metadata(path: &Path) -> Option<BTreeMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    // The safetensors crate's own limit on header size.
    if len > 100_000_000 || len > file.metadata().ok()?.len() {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(value.get("__metadata__")?.clone()).ok()
}

/// `config.json` for our loader (and Hugging Face's) from an architecture.
pub fn config_json(architecture: &Architecture) -> Vec<u8> {
    serde_json::to_vec_pretty(&architecture.config_json()).expect("JSON serializes")
}

pub fn write_tokenizer(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    tokenizer.save(path, false).map_err(|e| Error::bad_file(path, format!("cannot write the tokenizer: {e}")))
}

pub fn f16_bytes(values: &[half::f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
