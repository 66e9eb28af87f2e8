//! GGUF files of the architectures in `arch`'s GGUF registry: every tensor dequantized to f32 with candle's
//! quantized module, renamed and put in our layout by the architecture, and the tokenizer rebuilt from the
//! `tokenizer.ggml.*` metadata (gpt2-style byte-level BPE).

mod header;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::{Content, Value};
use rayon::prelude::*;
use serde_json::json;

use super::checks::{check_token_ids, check_tokenizer, validate};
use crate::error::{Error, Result};
use crate::model::arch::{self, GgufMetadata};
use crate::model::{Architecture, Model, SourceFormat, cpu};

pub fn load(path: &Path) -> Result<Model> {
    let content = read_content(path)?;
    let meta = Metadata { path, map: &content.metadata };
    let name = meta.string("general.architecture")?;
    let Some(architecture) = arch::from_gguf(&name, &GgufMetadata(&content.metadata)) else {
        let supported = arch::gguf_names();
        return Err(Error::UnsupportedArchitecture { path: path.to_path_buf(), architecture: name, supported });
    };
    let architecture = architecture.map_err(|e| Error::bad_file(path, e))?;
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"] {
        if let Ok(id) = meta.u32(key) {
            check_token_ids(path, key, &[id as u64], architecture.vocab_size())?;
        }
    }
    let (tensors, stored_dtypes) = read_tensors(path, &content, &architecture)?;
    let sourced = tensors.into_iter().map(|(k, t)| (k, (t, path.to_path_buf()))).collect();
    let weights = validate(path, &architecture, sourced)?;
    let tokenizer = tokenizer_from_metadata(&meta)?;
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

/// The header, read by our bounded reader (candle's trusts some of the file's numbers).
fn read_content(path: &Path) -> Result<Content> {
    header::read(path, &super::safetensors::map_file(path)?)
}

/// Errors name the file.
struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn named<T>(&self, got: std::result::Result<T, String>) -> Result<T> {
        got.map_err(|problem| Error::bad_file(self.path, problem))
    }
    fn string(&self, key: &str) -> Result<String> {
        self.named(GgufMetadata(self.map).string(key))
    }
    fn u32(&self, key: &str) -> Result<u32> {
        self.named(GgufMetadata(self.map).u32(key))
    }
    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.named(GgufMetadata(self.map).array(key))
    }
    fn wrong(&self, key: &str, e: candle_core::Error) -> Error {
        Error::bad_file(self.path, format!("GGUF metadata `{key}` has an unexpected type ({e})"))
    }
}

/// Dequantizes every tensor in parallel (one reader per thread), renames it and puts it in our layout.
type Tensors = BTreeMap<String, Tensor>;

fn read_tensors(
    path: &Path,
    content: &Content,
    architecture: &Architecture,
) -> Result<(Tensors, BTreeMap<String, String>)> {
    let names: Vec<&String> = content.tensor_infos.keys().collect();
    let read_one = |name: &&String| -> Result<Option<(String, Tensor, String)>> {
        let Some(ours) = architecture.from_gguf_name(name) else { return Ok(None) };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let truncated = |e: candle_core::Error| Error::bad_file(path, format!("cannot read tensor `{name}` ({e})"));
        let qtensor = content.tensor(&mut BufReader::new(file), name, &cpu()).map_err(truncated)?;
        let tensor = architecture.from_gguf_layout(&ours, qtensor.dequantize(&cpu()).map_err(truncated)?)?;
        Ok(Some((ours, tensor, format!("{:?}", qtensor.dtype()))))
    };
    let tensors = names.par_iter().map(read_one).collect::<Result<Vec<_>>>()?;
    let mut map = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    for (name, tensor, dtype) in tensors.into_iter().flatten() {
        dtypes.insert(name.clone(), dtype);
        map.insert(name, tensor);
    }
    if map.contains_key("lm_head.weight") {
        // An untied head: the config must say so for validation and the forward pass.
        return Err(Error::bad_file(path, "GGUF files with an untied output.weight are not supported yet"));
    }
    Ok((map, dtypes))
}

/// A Hugging Face tokenizer.json equivalent of the GGUF's byte-level BPE vocabulary.
fn tokenizer_from_metadata(meta: &Metadata) -> Result<tokenizers::Tokenizer> {
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::bad_file(
            meta.path,
            format!("tokenizer model `{model}` is not supported (only gpt2-style BPE)"),
        ));
    }
    let tokens: Vec<String> = meta
        .array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<candle_core::Result<_>>()
        .map_err(|e| meta.wrong("tokenizer.ggml.tokens", e))?;
    let merges: Vec<String> = meta
        .array("tokenizer.ggml.merges")?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<candle_core::Result<_>>()
        .map_err(|e| meta.wrong("tokenizer.ggml.merges", e))?;
    let types: Vec<i32> = match meta.array("tokenizer.ggml.token_type") {
        Ok(values) => values.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
        Err(_) => vec![1; tokens.len()],
    };
    let pre = meta.string("tokenizer.ggml.pre").unwrap_or_else(|_| "default".into());
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let pre_tokenizer = match pre.as_str() {
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        // SmolLM: every digit on its own, then GPT-2's split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level(false)]}),
        other => {
            return Err(Error::bad_file(meta.path, format!("tokenizer pre-tokenizer `{other}` is not supported")));
        }
    };
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    // Control (3) and user-defined (4) tokens are matched whole, never split by BPE.
    let added: Vec<_> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == 3})
        })
        .collect();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&spec).expect("a JSON value serializes"))
        .map_err(|e| Error::bad_file(meta.path, format!("cannot build the tokenizer from GGUF metadata: {e}")))
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
