//! GGUF files of the architectures in `arch`'s GGUF registry: the file is memory-mapped and every tensor stays
//! in its ggml blocks there, renamed, and decoded by our ggml block decoders (then put in our layout by the
//! architecture) when it is used; the tokenizer is rebuilt from the `tokenizer.ggml.*` metadata. `write` and
//! `export` make GGUF files.

pub mod export;
pub mod header;
mod tokenizer;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use header::Header;

use super::checks::{check_token_ids, check_tokenizer, validate};
use crate::error::{Error, Result};
use crate::model::arch::{self, GgufMetadata};
use crate::model::{Architecture, Layout, Mapped, Model, SourceFormat, Stored};
use crate::quant::ggml::BlockType;

pub fn load(path: &Path) -> Result<Model> {
    let bytes = Arc::new(super::safetensors::map_file(path)?);
    let header = header::read(path, &bytes)?;
    let map = header.metadata_map();
    let meta = Metadata { path, map: &map };
    let name = meta.string("general.architecture")?;
    let tensor_names: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
    let Some(architecture) = arch::from_gguf(&name, &GgufMetadata::new(&map).with_tensors(&tensor_names)) else {
        let supported = arch::gguf_names();
        return Err(Error::UnsupportedArchitecture { path: path.to_path_buf(), architecture: name, supported });
    };
    let architecture = architecture.map_err(|e| Error::bad_file(path, e))?;
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"] {
        if let Ok(id) = meta.u32(key) {
            check_token_ids(path, key, &[id as u64], architecture.vocab_size())?;
        }
    }
    let (tensors, stored_dtypes) = mapped_tensors(path, &bytes, &header, &architecture)?;
    let sourced = tensors.into_iter().map(|(k, t)| (k, (Stored::Mapped(t), path.to_path_buf()))).collect();
    let weights = validate(path, &architecture, sourced)?;
    let tokenizer = tokenizer::from_metadata(&meta)?;
    check_tokenizer(path, &tokenizer, architecture.vocab_size())?;
    Ok(Model {
        source: path.to_path_buf(),
        format: SourceFormat::Gguf,
        architecture,
        weights,
        tokenizer: Arc::new(tokenizer),
        bos_token_id: meta.u32("tokenizer.ggml.bos_token_id").ok(),
        stored_dtypes,
        made: Default::default(),
    })
}

/// A GGUF file's bits per parameter: tensor bytes × 8 / elements (what llama.cpp prints as BPW), and the whole
/// file's bytes × 8 / elements beside it.
pub fn bits_per_weight(path: &Path) -> Result<(f64, f64)> {
    let header = read_header(path)?;
    let elements: usize = header.tensors.iter().map(|t| t.elements()).sum();
    let tensor_bytes: usize = header.tensors.iter().map(|t| t.size).sum();
    let file_bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let per = |bytes: f64| bytes * 8.0 / elements.max(1) as f64;
    Ok((per(tensor_bytes as f64), per(file_bytes as f64)))
}

/// The header of a GGUF file, read by our bounded reader.
pub fn read_header(path: &Path) -> Result<Header> {
    header::read(path, &super::safetensors::map_file(path)?)
}

/// Errors name the file.
pub(crate) struct Metadata<'a> {
    pub path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn named<T>(&self, got: std::result::Result<T, String>) -> Result<T> {
        got.map_err(|problem| Error::bad_file(self.path, problem))
    }
    fn string(&self, key: &str) -> Result<String> {
        self.named(GgufMetadata::new(self.map).string(key))
    }
    fn u32(&self, key: &str) -> Result<u32> {
        self.named(GgufMetadata::new(self.map).u32(key))
    }
    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.named(GgufMetadata::new(self.map).array(key))
    }
    fn wrong(&self, key: &str, e: candle_core::Error) -> Error {
        Error::bad_file(self.path, format!("GGUF metadata `{key}` has an unexpected type ({e})"))
    }
}

/// Every tensor we read, renamed, as its blocks in the mapped file; and the block type of each.
fn mapped_tensors(
    path: &Path,
    bytes: &Arc<memmap2::Mmap>,
    header: &Header,
    architecture: &Architecture,
) -> Result<(BTreeMap<String, Mapped>, BTreeMap<String, String>)> {
    let mut tensors = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    for info in &header.tensors {
        let range = info.start..info.start + info.size;
        let Some(made) = gguf_tensor(architecture, &info.name, info.ty, info.shape.clone(), bytes.clone(), range)
        else {
            continue;
        };
        let (ours, mapped) = made.map_err(|e| Error::bad_file(path, e.to_string()))?;
        dtypes.insert(ours.clone(), info.ty.name().to_string());
        tensors.insert(ours, mapped);
    }
    Ok((tensors, dtypes))
}

/// The GGUF tensor `name` (`shape` row-major, `range` of `bytes` holding it as `ty`) under our name, left encoded
/// and decoded when used, in our layout; None for a tensor we have no name for.
pub(crate) fn gguf_tensor(
    architecture: &Architecture,
    name: &str,
    ty: BlockType,
    shape: Vec<usize>,
    bytes: crate::memory::SharedBytes,
    range: std::ops::Range<usize>,
) -> Option<Result<(String, Mapped)>> {
    let ours = architecture.from_gguf_name(name)?;
    let layout = match architecture.gguf_layout_changes(&ours) {
        true => Layout::Gguf { architecture: architecture.clone(), name: ours.clone() },
        false => Layout::Kept,
    };
    Some(Mapped::new(ty, shape, bytes, range, layout, name).map(|mapped| (ours, mapped)))
}
