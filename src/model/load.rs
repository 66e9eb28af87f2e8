//! Opens whatever a path names: a Hugging Face folder, a GGUF file, or our packed export; checks it thoroughly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use rayon::prelude::*;

use super::{Architecture, Model, SourceFormat, Weights, gguf, gpt2, tensor_io};
use crate::error::{Error, Result};

/// Loads a model from a Hugging Face folder (or a file inside one), a `.gguf` file, or a packed export folder.
pub fn load(path: &Path) -> Result<Model> {
    if !path.exists() {
        return Err(Error::bad_file(path, "no such file or directory"));
    }
    if path.is_file() {
        if is_gguf(path)? {
            return gguf::load(path);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".safetensors") || name == "config.json" {
            return load(path.parent().unwrap_or(Path::new(".")));
        }
        return Err(Error::bad_file(path, "neither a GGUF file nor a Hugging Face model folder"));
    }
    if crate::export::packed::is_packed_dir(path) {
        return crate::export::packed::load(path);
    }
    load_hf_dir(path)
}

fn is_gguf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(n == 4 && &magic == b"GGUF" || path.extension().is_some_and(|e| e == "gguf"))
}

/// `config.json` -> architecture, with the config's own errors named.
pub fn read_config(dir: &Path) -> Result<Architecture> {
    let path = dir.join("config.json");
    if !path.exists() {
        return Err(Error::bad_file(dir, "not a model folder: config.json is missing"));
    }
    let text = String::from_utf8(crate::error::read_file(&path)?)
        .map_err(|_| Error::bad_file(&path, "config.json is not UTF-8"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, format!("malformed JSON: {e}")))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let invalid = |e: String| Error::bad_file(&path, format!("invalid {model_type} config: {e}"));
    let architecture = match model_type.as_str() {
        "llama" => Architecture::Llama(serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?),
        "gpt2" => Architecture::Gpt2(serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?),
        "" => return Err(Error::bad_file(&path, "no `model_type` field")),
        other => {
            return Err(Error::UnsupportedArchitecture { path, architecture: other.to_string() });
        }
    };
    match &architecture {
        Architecture::Llama(c) => c.validate(),
        Architecture::Gpt2(c) => c.validate(),
    }
    .map_err(invalid)?;
    Ok(architecture)
}

/// The safetensors files of a folder: `model.safetensors`, or the shards named by its index.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(Error::bad_file(dir, "no model.safetensors and no model.safetensors.index.json"));
    }
    let value: serde_json::Value = serde_json::from_slice(&crate::error::read_file(&index)?)
        .map_err(|e| Error::bad_file(&index, format!("malformed JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(&index, "no `weight_map` object"))?;
    let mut files: Vec<PathBuf> = map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn load_hf_dir(dir: &Path) -> Result<Model> {
    let architecture = read_config(dir)?;
    let mut tensors = BTreeMap::new();
    let mut stored_dtypes = BTreeMap::new();
    for file in weight_files(dir)? {
        for (key, (tensor, dtype)) in tensor_io::read_safetensors_f32(&file)? {
            if let Some(name) = canonical_name(&architecture, &key) {
                stored_dtypes.insert(name, dtype);
            }
            tensors.insert(key, (tensor, file.clone()));
        }
    }
    let tensors = normalize_names(&architecture, tensors)?;
    let weights = validate(dir, &architecture, tensors)?;
    let tokenizer = load_tokenizer(dir)?;
    let bos_token_id = match &architecture {
        Architecture::Llama(c) => c.bos_token_id,
        Architecture::Gpt2(c) => c.bos_token_id,
    };
    Ok(Model {
        source: dir.to_path_buf(),
        format: SourceFormat::HuggingFace,
        architecture,
        weights,
        tokenizer: Arc::new(tokenizer),
        bos_token_id,
        stored_dtypes,
        lazy: None,
    })
}

fn canonical_name(architecture: &Architecture, key: &str) -> Option<String> {
    match architecture {
        Architecture::Llama(_) => Some(key.to_string()),
        Architecture::Gpt2(_) => gpt2::canonical_name(key),
    }
}

type Sourced = BTreeMap<String, (Tensor, PathBuf)>;

/// Architecture-specific key clean-up: GPT-2 prefixes, buffers and Conv1D layout.
fn normalize_names(architecture: &Architecture, tensors: Sourced) -> Result<Sourced> {
    match architecture {
        Architecture::Llama(c) => Ok(tensors
            .into_iter()
            .filter(|(k, _)| !(c.tie_word_embeddings && k == super::llama::LM_HEAD))
            .filter(|(k, _)| !k.ends_with("rotary_emb.inv_freq"))
            .collect()),
        Architecture::Gpt2(_) => {
            let mut out = BTreeMap::new();
            for (key, (tensor, file)) in tensors {
                let Some(name) = gpt2::canonical_name(&key) else { continue };
                let tensor =
                    if gpt2::is_conv1d(&name) && tensor.rank() == 2 { tensor.t()?.contiguous()? } else { tensor };
                out.insert(name, (tensor, file));
            }
            Ok(out)
        }
    }
}

/// Every expected tensor present with the shape the config implies, nothing non-finite.
pub fn validate(source: &Path, architecture: &Architecture, mut tensors: Sourced) -> Result<Weights> {
    let mut weights = Weights::default();
    for (name, shape) in architecture.expected_tensors() {
        let (tensor, file) = tensors
            .remove(&name)
            .ok_or_else(|| Error::MissingTensor { path: source.to_path_buf(), name: name.clone() })?;
        if tensor.dims() != shape.as_slice() {
            // GPT-2 Conv1D weights were transposed on load: report shapes as stored in the file.
            let as_stored = |mut dims: Vec<usize>| {
                if matches!(architecture, Architecture::Gpt2(_)) && gpt2::is_conv1d(&name) {
                    dims.reverse();
                }
                dims
            };
            let (expected, actual) = (as_stored(shape), as_stored(tensor.dims().to_vec()));
            return Err(Error::ShapeMismatch { path: file, name, expected, actual });
        }
        weights.insert(name, tensor);
    }
    check_finite(source, &weights)?;
    Ok(weights)
}

pub fn check_finite(source: &Path, weights: &Weights) -> Result<()> {
    let bad = weights
        .0
        .par_iter()
        .map(|(name, t)| {
            let values = tensor_io::tensor_to_vec(t)?;
            Ok((name, values.iter().filter(|v| !v.is_finite()).count()))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .find(|(_, count)| *count > 0);
    match bad {
        Some((name, count)) => Err(Error::NonFinite { path: source.to_path_buf(), name: name.clone(), count }),
        None => Ok(()),
    }
}

pub fn load_tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Err(Error::bad_file(dir, "tokenizer.json is missing"));
    }
    tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::bad_file(&path, format!("invalid tokenizer: {e}")))
}
