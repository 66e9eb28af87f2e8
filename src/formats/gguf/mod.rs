//! GGUF files of the architectures in `arch`'s GGUF registry: every tensor decoded to f32 by our ggml block
//! decoders, renamed and put in our layout by the architecture, and the tokenizer rebuilt from the
//! `tokenizer.ggml.*` metadata (gpt2-style byte-level BPE). `write` and `export` make GGUF files.

pub mod export;
pub mod header;
mod tokenizer;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::Value;
use header::Header;
use rayon::prelude::*;

use super::checks::{check_token_ids, check_tokenizer, validate};
use crate::error::{Error, Result};
use crate::model::arch::{self, GgufMetadata};
use crate::model::{Architecture, Model, SourceFormat, cpu};
use crate::quant::ggml::BlockType;

pub fn load(path: &Path) -> Result<Model> {
    let bytes = super::safetensors::map_file(path)?;
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
    let (tensors, stored_dtypes) = read_tensors(path, &bytes, &header, &architecture)?;
    let sourced = tensors.into_iter().map(|(k, t)| (k, (t, path.to_path_buf()))).collect();
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
        lazy: None,
    })
}

/// One GGUF tensor as we hold it: decoded, named and laid out as ours; None for a tensor we do not read.
/// `origin` names the file in errors.
pub(crate) fn decode_tensor(
    origin: &Path,
    architecture: &Architecture,
    name: &str,
    ty: BlockType,
    data: &[u8],
    shape: &[usize],
) -> Result<Option<(String, Tensor)>> {
    let Some(ours) = architecture.from_gguf_name(name) else { return Ok(None) };
    let values = crate::quant::ggml::decode(ty, data, shape.iter().product())
        .map_err(|e| Error::bad_file(origin, format!("cannot read tensor `{name}` ({e})")))?;
    let tensor = Tensor::from_vec(values, shape, &cpu())?;
    let tensor = architecture.from_gguf_layout(&ours, tensor)?;
    Ok(Some((ours, tensor)))
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

/// Decodes every tensor in parallel from the mapped file, renames it and puts it in our layout.
type Tensors = BTreeMap<String, Tensor>;

fn read_tensors(
    path: &Path,
    bytes: &[u8],
    header: &Header,
    architecture: &Architecture,
) -> Result<(Tensors, BTreeMap<String, String>)> {
    let read_one = |info: &header::TensorInfo| -> Result<Option<(String, Tensor, String)>> {
        let data = &bytes[info.start..info.start + info.size];
        let decoded = decode_tensor(path, architecture, &info.name, info.ty, data, &info.shape)?;
        Ok(decoded.map(|(ours, tensor)| (ours, tensor, info.ty.name().to_string())))
    };
    let tensors = header.tensors.par_iter().map(read_one).collect::<Result<Vec<_>>>()?;
    let mut map = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    for (name, tensor, dtype) in tensors.into_iter().flatten() {
        dtypes.insert(name.clone(), dtype);
        map.insert(name, tensor);
    }
    Ok((map, dtypes))
}
