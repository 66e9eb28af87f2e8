//! Opens whatever a path names: a Hugging Face folder, a GGUF file, or our packed export; checks it thoroughly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use rayon::prelude::*;

use super::{Architecture, Model, SourceFormat, Weights, gguf, tensor_io};
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

/// The file or folder that opening `path` reads: the folder when `path` names a file inside a Hugging Face
/// folder, else `path` itself. Outputs must stay clear of it.
pub fn model_root(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let inside_hf_folder = name.ends_with(".safetensors") || name == "config.json";
    if path.is_file() && inside_hf_folder && !is_gguf(path).unwrap_or(false) {
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    }
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
    let token_id_fields = ["bos_token_id", "eos_token_id", "pad_token_id"].map(|k| (k, value.get(k).cloned()));
    if model_type.is_empty() {
        return Err(Error::bad_file(&path, "no `model_type` field"));
    }
    let Some(architecture) = super::arch::from_hf_config(&model_type, value) else {
        let supported = super::arch::hf_names();
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

/// Token ids must name rows of the embedding; `what` says where they came from.
pub fn check_token_ids(path: &Path, what: &str, ids: &[u64], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id >= vocab as u64) {
        Some(id) => Err(Error::bad_file(
            path,
            format!("{what} {id} is outside the vocabulary (the embedding has {vocab} rows)"),
        )),
        None => Ok(()),
    }
}

/// The tokenizer never produces an id the embedding lacks.
pub fn check_tokenizer(path: &Path, tokenizer: &tokenizers::Tokenizer, vocab: usize) -> Result<()> {
    let largest = tokenizer.get_vocab(true).into_values().max().unwrap_or(0) as u64;
    check_token_ids(path, "the tokenizer's largest token id", &[largest], vocab)
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

fn load_hf_dir(dir: &Path) -> Result<Model> {
    let architecture = read_config(dir)?;
    let mut tensors = BTreeMap::new();
    let mut stored_dtypes = BTreeMap::new();
    for file in weight_files(dir)? {
        for (key, (tensor, dtype)) in tensor_io::read_safetensors_f32(&file)? {
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
        lazy: None,
    })
}

type Sourced = BTreeMap<String, (Tensor, PathBuf)>;

/// Checkpoint keys as we name them (prefixes, buffers and a tied head dropped), transposed weights in `[out, in]`.
fn normalize_names(architecture: &Architecture, tensors: Sourced) -> Result<Sourced> {
    let mut out = BTreeMap::new();
    for (key, (tensor, file)) in tensors {
        let Some(name) = architecture.from_hf_key(&key) else { continue };
        let tensor = if architecture.stored_transposed(&name) && tensor.rank() == 2 {
            tensor.t()?.contiguous()?
        } else {
            tensor
        };
        out.insert(name, (tensor, file));
    }
    Ok(out)
}

/// Every expected tensor present with the shape the config implies, nothing non-finite.
pub fn validate(source: &Path, architecture: &Architecture, mut tensors: Sourced) -> Result<Weights> {
    check_layer_count(source, architecture, tensors.keys())?;
    let mut weights = Weights::default();
    for (name, shape) in architecture.expected_tensors() {
        let (tensor, file) = tensors
            .remove(&name)
            .ok_or_else(|| Error::MissingTensor { path: source.to_path_buf(), name: name.clone() })?;
        if tensor.dims() != shape.as_slice() {
            // GPT-2 Conv1D weights were transposed on load: report shapes as stored in the file.
            let as_stored = |mut dims: Vec<usize>| {
                if architecture.stored_transposed(&name) {
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

/// The weights hold exactly the layers the configuration declares (checked before the expected tensors are
/// listed, so an absurd layer count costs nothing).
pub fn check_layer_count<'a>(
    source: &Path,
    architecture: &Architecture,
    names: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let layers: std::collections::BTreeSet<usize> = names.filter_map(|n| super::layer_of(n)).collect();
    let declared = architecture.num_layers();
    let held = layers.len();
    if held == declared && layers.last().is_none_or(|&last| last + 1 == held) {
        return Ok(());
    }
    let numbers = match (layers.first(), layers.last()) {
        (Some(first), Some(last)) => format!(" (numbered {first} to {last})"),
        _ => String::new(),
    };
    Err(Error::bad_file(
        source,
        format!("the configuration declares {declared} layers, but the weights hold {held}{numbers}"),
    ))
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
