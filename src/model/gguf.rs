//! GGUF files with `general.architecture = llama`: every tensor dequantized to f32 with candle's quantized
//! module, renamed to Hugging Face names, q/k rows un-permuted (llama.cpp stores them for interleaved RoPE),
//! and the tokenizer rebuilt from the `tokenizer.ggml.*` metadata (gpt2-style byte-level BPE).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::{Content, Value};
use rayon::prelude::*;
use serde_json::json;

use super::config::LlamaConfig;
use super::{Architecture, Model, SourceFormat, cpu};
use crate::error::{Error, Result};

pub fn load(path: &Path) -> Result<Model> {
    let content = read_content(path)?;
    let meta = Metadata { path, map: &content.metadata };
    let architecture = meta.string("general.architecture")?;
    if architecture != "llama" {
        return Err(Error::UnsupportedArchitecture { path: path.to_path_buf(), architecture, supported: "llama" });
    }
    let config = llama_config(&meta)?;
    config.validate().map_err(|e| Error::bad_file(path, format!("invalid llama metadata: {e}")))?;
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"] {
        if let Ok(id) = meta.u32(key) {
            super::load::check_token_ids(path, key, &[id as u64], config.vocab_size)?;
        }
    }
    let (tensors, stored_dtypes) = read_tensors(path, &content, &config)?;
    let architecture = Architecture::Llama(config);
    let sourced = tensors.into_iter().map(|(k, t)| (k, (t, path.to_path_buf()))).collect();
    let weights = super::load::validate(path, &architecture, sourced)?;
    let tokenizer = tokenizer_from_metadata(&meta)?;
    super::load::check_tokenizer(path, &tokenizer, architecture.vocab_size())?;
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
    super::gguf_header::read(path, &super::tensor_io::map_file(path)?)
}

struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.map.get(key).ok_or_else(|| Error::bad_file(self.path, format!("GGUF metadata `{key}` is missing")))
    }
    fn wrong(&self, key: &str, e: candle_core::Error) -> Error {
        Error::bad_file(self.path, format!("GGUF metadata `{key}` has an unexpected type ({e})"))
    }
    fn string(&self, key: &str) -> Result<String> {
        self.get(key)?.to_string().cloned().map_err(|e| self.wrong(key, e))
    }
    fn u32(&self, key: &str) -> Result<u32> {
        let v = self.get(key)?;
        match v.to_u32() {
            Ok(x) => Ok(x),
            Err(e) => v.to_u64().ok().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| self.wrong(key, e)),
        }
    }
    fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.to_f32().map_err(|e| self.wrong(key, e))
    }
    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.get(key)?.to_vec().map_err(|e| self.wrong(key, e))
    }
}

fn llama_config(meta: &Metadata) -> Result<LlamaConfig> {
    let heads = meta.u32("llama.attention.head_count")? as usize;
    let hidden = meta.u32("llama.embedding_length")? as usize;
    let vocab = match meta.u32("llama.vocab_size") {
        Ok(v) => v as usize,
        Err(_) => meta.array("tokenizer.ggml.tokens")?.len(),
    };
    Ok(LlamaConfig {
        hidden_size: hidden,
        intermediate_size: meta.u32("llama.feed_forward_length")? as usize,
        num_hidden_layers: meta.u32("llama.block_count")? as usize,
        num_attention_heads: heads,
        num_key_value_heads: meta.u32("llama.attention.head_count_kv").ok().map(|v| v as usize),
        head_dim: None,
        vocab_size: vocab,
        rms_norm_eps: decimal(meta.f32("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5)),
        rope_theta: decimal(meta.f32("llama.rope.freq_base").unwrap_or(10_000.0)),
        rope_scaling: None,
        max_position_embeddings: meta.u32("llama.context_length").unwrap_or(2048) as usize,
        // A GGUF without `output.weight` ties the head to the embeddings.
        tie_word_embeddings: true,
        bos_token_id: meta.u32("tokenizer.ggml.bos_token_id").ok(),
    })
}

/// GGUF stores these as f32: 1e-5 arrives as 9.99999974e-6. Take the shortest decimal that round-trips.
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// GGUF tensor name -> Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, leaf) = rest.split_once('.')?;
    let hf_leaf = match leaf {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_leaf}"))
}

/// Dequantizes every tensor in parallel (one reader per thread) and renames it.
type Tensors = BTreeMap<String, Tensor>;

fn read_tensors(path: &Path, content: &Content, config: &LlamaConfig) -> Result<(Tensors, BTreeMap<String, String>)> {
    let names: Vec<&String> = content.tensor_infos.keys().collect();
    let read_one = |name: &&String| -> Result<Option<(String, Tensor, String)>> {
        let Some(hf) = hf_name(name) else { return Ok(None) };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let truncated = |e: candle_core::Error| Error::bad_file(path, format!("cannot read tensor `{name}` ({e})"));
        let qtensor = content.tensor(&mut BufReader::new(file), name, &cpu()).map_err(truncated)?;
        let tensor = qtensor.dequantize(&cpu()).map_err(truncated)?;
        let tensor = match hf.rsplit('.').nth(1) {
            Some("q_proj") => unpermute_rows(&tensor, config.num_attention_heads)?,
            Some("k_proj") => unpermute_rows(&tensor, config.kv_heads())?,
            _ => tensor,
        };
        Ok(Some((hf, tensor, format!("{:?}", qtensor.dtype()))))
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

/// Undoes llama.cpp's `permute`: rows of each head were reordered from (2, hd/2) to (hd/2, 2).
fn unpermute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, half, 2, inp))?.transpose(1, 2)?.contiguous()?.reshape((out, inp))?)
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
