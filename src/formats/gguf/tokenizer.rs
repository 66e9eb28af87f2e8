//! The tokenizer both ways: `tokenizer.ggml.*` metadata (gpt2-style byte-level BPE) as a Hugging Face tokenizer,
//! and a Hugging Face byte-level BPE tokenizer as that metadata, with the pre-tokenizer under llama.cpp's name.

use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use super::Metadata;
use crate::error::{Error, Result};

/// A Hugging Face tokenizer.json equivalent of the GGUF's byte-level BPE vocabulary.
pub(super) fn from_metadata(meta: &Metadata) -> Result<tokenizers::Tokenizer> {
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
    let Some(pre_tokenizer) = pre_tokenizer(&pre) else {
        return Err(Error::bad_file(meta.path, format!("tokenizer pre-tokenizer `{pre}` is not supported")));
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

/// The pre-tokenizers we know, by llama.cpp's `tokenizer.ggml.pre` name (the first name of each is what we
/// write).
const PRE_TOKENIZERS: &[&[&str]] = &[&["gpt-2", "default", "gpt2"], &["smollm"], &["llama-bpe", "llama3"], &["qwen2"]];

/// The Hugging Face pre-tokenizer llama.cpp's `tokenizer.ggml.pre` name stands for.
fn pre_tokenizer(name: &str) -> Option<serde_json::Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split_then_bytes = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false)]})
    };
    let canonical = PRE_TOKENIZERS.iter().find(|names| names.contains(&name))?[0];
    Some(match canonical {
        "gpt-2" => byte_level(true),
        // SmolLM: every digit on its own, then GPT-2's split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" => split_then_bytes(LLAMA3_SPLIT),
        _ => split_then_bytes(QWEN2_SPLIT),
    })
}

/// llama.cpp's name for a Hugging Face pre-tokenizer, compared on the fields that change how text is split.
fn pre_tokenizer_name(pre: &serde_json::Value) -> Option<&'static str> {
    let wanted = semantics(pre);
    PRE_TOKENIZERS
        .iter()
        .map(|names| names[0])
        .find(|name| pre_tokenizer(name).is_some_and(|p| semantics(&p) == wanted))
}

/// A pre-tokenizer without the fields that do not change the split (offsets bookkeeping).
fn semantics(pre: &serde_json::Value) -> serde_json::Value {
    match pre {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "trim_offsets")
            .map(|(k, v)| (k.clone(), semantics(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(semantics).collect(),
        other => other.clone(),
    }
}

/// The `tokenizer.ggml.*` metadata of a Hugging Face byte-level BPE tokenizer, as llama.cpp's converter writes
/// it: tokens by id, their types (control for special added tokens, user-defined for other added tokens), the
/// merges and the pre-tokenizer's name. Other tokenizers (SentencePiece-style BPE with byte fallback, Unigram,
/// WordPiece) are refused, naming what they are.
pub(super) fn to_metadata(
    tokenizer: &tokenizers::Tokenizer,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
) -> std::result::Result<Vec<(String, Value)>, String> {
    let spec: serde_json::Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let model = &spec["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        let kind = if model["type"] == "BPE" { "BPE with byte fallback (SentencePiece-style)" } else { "not BPE" };
        return Err(format!(
            "the tokenizer ({kind}) cannot be written as GGUF yet: only byte-level BPE tokenizers (GPT-2, SmolLM, \
             Llama 3, Qwen2 style) can"
        ));
    }
    let pre = pre_tokenizer_name(&spec["pre_tokenizer"]).ok_or_else(|| {
        format!("the tokenizer's pre-tokenizer is not one llama.cpp names ({})", spec["pre_tokenizer"])
    })?;
    let mut tokens = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    let vocab = model["vocab"].as_object().ok_or("the tokenizer has no vocabulary")?;
    let added = spec["added_tokens"].as_array().cloned().unwrap_or_default();
    let entries = vocab.iter().map(|(t, id)| (t.as_str(), id.as_u64(), None)).chain(
        added.iter().map(|a| (a["content"].as_str().unwrap_or_default(), a["id"].as_u64(), a["special"].as_bool())),
    );
    for (token, id, special) in entries {
        let id = id
            .filter(|&id| (id as usize) < vocab_size)
            .ok_or_else(|| format!("token `{token}` has an id outside the model's {vocab_size} embeddings"))?
            as usize;
        tokens[id] = Some(token.to_string());
        if let Some(special) = special {
            types[id] = if special { 3 } else { 4 };
        }
    }
    // Ids the tokenizer never produces (embedding rows beyond its vocabulary) get placeholders, like llama.cpp's
    // converter writes for padded vocabularies.
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            Value::String(t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            }))
        })
        .collect();
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .ok_or("the tokenizer has no merges")?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                Ok(Value::String(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))))
            }
            other => Err(format!("a merge is neither \"a b\" nor [a, b]: {other}")),
        })
        .collect::<std::result::Result<_, String>>()?;
    let mut keys = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges", Value::Array(merges)),
    ];
    keys.extend(bos.map(|id| ("tokenizer.ggml.bos_token_id", Value::U32(id))));
    keys.extend(eos.map(|id| ("tokenizer.ggml.eos_token_id", Value::U32(id))));
    Ok(keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
