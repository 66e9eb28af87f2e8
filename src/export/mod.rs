//! Exporters, one file per format: our packed safetensors layout, plain fp16 Hugging Face weights, and reports.
//! Every write goes to a temporary sibling first and is renamed into place, so no half-written output remains.

pub mod hf_fp16;
pub mod packed;
pub mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Writes a folder through `fill` into a temporary sibling, then swaps it into place.
pub fn write_dir_atomically(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        out.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} is not a folder name", out.display())))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = sibling(parent, name, "tmp");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let old = sibling(parent, name, "old");
    if out.exists() {
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| Error::io(out, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Writes one file through a temporary sibling and a rename.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} is not a file name", path.display())))?;
    let staging = sibling(parent, name, "tmp");
    std::fs::write(&staging, bytes).map_err(|e| Error::io(&staging, e))?;
    std::fs::rename(&staging, path).map_err(|e| Error::io(path, e))
}

fn sibling(parent: &Path, name: &std::ffi::OsStr, tag: &str) -> PathBuf {
    parent.join(format!(".{}.{tag}-{}", name.to_string_lossy(), std::process::id()))
}

/// `config.json` for our loader (and Hugging Face's) from an architecture.
pub fn config_json(architecture: &Architecture) -> Vec<u8> {
    let mut value = match architecture {
        Architecture::Llama(c) => serde_json::to_value(c),
        Architecture::Gpt2(c) => serde_json::to_value(c),
    }
    .expect("configs serialize");
    let (model_type, class) = match architecture {
        Architecture::Llama(_) => ("llama", "LlamaForCausalLM"),
        Architecture::Gpt2(_) => ("gpt2", "GPT2LMHeadModel"),
    };
    value["model_type"] = model_type.into();
    value["architectures"] = serde_json::json!([class]);
    serde_json::to_vec_pretty(&value).expect("JSON serializes")
}

pub fn write_tokenizer(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    tokenizer.save(path, false).map_err(|e| Error::bad_file(path, format!("cannot write the tokenizer: {e}")))
}

pub fn f16_bytes(values: &[half::f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
