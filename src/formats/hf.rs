//! Hugging Face folders: `config.json` through the architecture registry, single or sharded safetensors,
//! `tokenizer.json`; and the `config.json` / `tokenizer.json` our exports write beside their weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checks::{Sourced, check_token_ids, check_tokenizer, validate};
use super::safetensors::map_safetensors;
use crate::error::{Error, Result};
use crate::model::{Architecture, Model, SourceFormat, arch};

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
    let token_id_fields = ["bos_token_id", "eos_token_id", "pad_token_id"].map(|k| (k, value.get(k).cloned()));
    if model_type.is_empty() {
        return Err(Error::bad_file(&path, "no `model_type` field"));
    }
    let Some(architecture) = arch::from_hf_config(&model_type, value) else {
        let supported = arch::hf_names();
        return Err(Error::UnsupportedArchitecture { path, architecture: model_type, supported });
    };
    let architecture = architecture.map_err(|e| Error::bad_file(&path, format!("invalid {model_type} config: {e}")))?;
    for (key, field) in token_id_fields {
        // A single id or a list of them (Llama 3 lists several EOS ids).
        let ids = match token_ids(&field.unwrap_or_default()) {
            Ok(ids) => ids,
            Err(()) => return Err(Error::bad_file(&path, format!("`{key}` is not a token id or a list of them"))),
        };
        check_token_ids(&path, key, &ids, architecture.vocab_size())?;
    }
    Ok(architecture)
}

/// The ids of a config's `*_token_id` field: absent, one id, or a list.
fn token_ids(value: &serde_json::Value) -> std::result::Result<Vec<u64>, ()> {
    match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Number(n) => n.as_u64().map(|id| vec![id]).ok_or(()),
        serde_json::Value::Array(items) => items.iter().map(|v| v.as_u64().ok_or(())).collect(),
        _ => Err(()),
    }
}

/// The safetensors files of a folder: `model.safetensors`, or the shards named by its index, each inside the
/// folder.
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
    let mut files = Vec::new();
    let folder = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    for name in map.values() {
        let name = name.as_str().ok_or_else(|| Error::bad_file(&index, "a `weight_map` value is not a file name"))?;
        let file = dir.join(name);
        let inside = std::path::Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)))
            && std::fs::canonicalize(&file).map_or(true, |f| f.starts_with(&folder));
        if !inside {
            return Err(Error::bad_file(&index, format!("names the file `{name}`, which is outside the model folder")));
        }
        files.push(file);
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Opens a Hugging Face folder: `config.json`, the weights (single file or shards), `tokenizer.json`.
pub fn load(dir: &Path) -> Result<Model> {
    let architecture = read_config(dir)?;
    let mut tensors = BTreeMap::new();
    let mut stored_dtypes = BTreeMap::new();
    for file in weight_files(dir)? {
        for (key, (tensor, dtype)) in map_safetensors(&file)? {
            if let Some(name) = architecture.from_hf_key(&key) {
                stored_dtypes.insert(name, dtype);
            }
            if let Some((_, first)) = tensors.insert(key.clone(), (tensor, file.clone())) {
                return Err(Error::bad_file(
                    dir,
                    format!("tensor `{key}` is stored twice, in {} and in {}", first.display(), file.display()),
                ));
            }
        }
    }
    let tensors = normalize_names(&architecture, tensors)?;
    let weights = validate(dir, &architecture, tensors)?;
    let tokenizer = load_tokenizer(dir)?;
    check_tokenizer(&dir.join("tokenizer.json"), &tokenizer, architecture.vocab_size())?;
    let bos_token_id = architecture.bos_token_id();
    Ok(Model {
        source: dir.to_path_buf(),
        format: SourceFormat::HuggingFace,
        architecture,
        weights,
        tokenizer: Arc::new(tokenizer),
        bos_token_id,
        stored_dtypes,
        made: Default::default(),
    })
}

/// Checkpoint keys as we name them (prefixes, buffers and a tied head dropped), transposed weights in `[out, in]`.
fn normalize_names(architecture: &Architecture, tensors: Sourced) -> Result<Sourced> {
    let mut out = BTreeMap::new();
    for (key, (tensor, file)) in tensors {
        let Some(name) = architecture.from_hf_key(&key) else { continue };
        let tensor =
            if architecture.stored_transposed(&name) && tensor.rank() == 2 { tensor.transposed()? } else { tensor };
        out.insert(name, (tensor, file));
    }
    Ok(out)
}

pub fn load_tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Err(Error::bad_file(dir, "tokenizer.json is missing"));
    }
    tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::bad_file(&path, format!("invalid tokenizer: {e}")))
}

/// `config.json` for our loader (and Hugging Face's) from an architecture.
pub fn config_json(architecture: &Architecture) -> Vec<u8> {
    serde_json::to_vec_pretty(&architecture.config_json()).expect("JSON serializes")
}

pub fn write_tokenizer(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    tokenizer.save(path, false).map_err(|e| Error::bad_file(path, format!("cannot write the tokenizer: {e}")))
}
