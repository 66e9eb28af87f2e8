//! The tokenizer both ways, for the two kinds llama.cpp reads: `gpt2` (byte-level BPE with merges and a named
//! pre-tokenizer) and `llama` (SentencePiece-style BPE over `▁`-joined text with byte fallback, merges implied by
//! token scores). GGUF metadata becomes a Hugging Face tokenizer that splits text as llama.cpp does; a Hugging
//! Face tokenizer becomes the metadata llama.cpp's converter writes.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use super::Metadata;
use crate::error::{Error, Result};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// A Hugging Face tokenizer equivalent of the GGUF's vocabulary.
pub(super) fn from_metadata(meta: &Metadata) -> Result<tokenizers::Tokenizer> {
    let model = meta.string("tokenizer.ggml.model")?;
    let tokens = strings(meta, "tokenizer.ggml.tokens")?;
    let types: Vec<i32> = match meta.array("tokenizer.ggml.token_type") {
        Ok(values) => values.iter().map(|v| v.to_i32().unwrap_or(NORMAL)).collect(),
        Err(_) => vec![NORMAL; tokens.len()],
    };
    let spec = match model.as_str() {
        "gpt2" => byte_level_spec(meta, &tokens, &types)?,
        "llama" => sentencepiece_spec(meta, &tokens, &types)?,
        other => {
            return Err(Error::bad_file(
                meta.path,
                format!(
                    "tokenizer model `{other}` is not supported (gpt2-style BPE and llama-style SentencePiece are)"
                ),
            ));
        }
    };
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&spec).expect("a JSON value serializes"))
        .map_err(|e| Error::bad_file(meta.path, format!("cannot build the tokenizer from GGUF metadata: {e}")))
}

fn strings(meta: &Metadata, key: &str) -> Result<Vec<String>> {
    meta.array(key)?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<candle_core::Result<_>>()
        .map_err(|e| meta.wrong(key, e))
}

/// Control and user-defined tokens are matched whole, never split.
fn added_tokens(tokens: &[String], types: &[i32]) -> Vec<serde_json::Value> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL) | Some(&USER_DEFINED)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == CONTROL})
        })
        .collect()
}

fn vocab_json(tokens: &[String]) -> serde_json::Map<String, serde_json::Value> {
    tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect()
}

/// llama.cpp's SPM tokenizer: text with spaces as `▁` (and one in front when `add_space_prefix`), characters
/// merged pairwise, the pair whose joined token has the highest score first (leftmost on ties), characters
/// without a token as byte tokens. As Hugging Face BPE: every split of a token into two tokens is a merge, ranked
/// by the joined token's score.
fn sentencepiece_spec(meta: &Metadata, tokens: &[String], types: &[i32]) -> Result<serde_json::Value> {
    let scores: Vec<f32> = meta
        .array("tokenizer.ggml.scores")?
        .iter()
        .map(|v| v.to_f32())
        .collect::<candle_core::Result<_>>()
        .map_err(|e| meta.wrong("tokenizer.ggml.scores", e))?;
    if scores.len() != tokens.len() || types.len() != tokens.len() {
        return Err(Error::bad_file(meta.path, "tokenizer scores or token types do not match the tokens in number"));
    }
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize, [&str; 2])> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if types[id] != NORMAL && types[id] != USER_DEFINED {
            continue;
        }
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push((scores[id], id, split, [left, right]));
            }
        }
    }
    // Highest score first; the file's order (id, then split point) breaks ties.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<[&str; 2]> = merges.into_iter().map(|m| m.3).collect();
    let add_space_prefix = match meta.map.get("tokenizer.ggml.add_space_prefix") {
        Some(Value::Bool(b)) => *b,
        _ => true,
    };
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let unk = types.iter().position(|t| *t == UNKNOWN).map(|i| tokens[i].clone());
    let strip = if add_space_prefix { 1 } else { 0 };
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": strip, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab_json(tokens), "merges": merges},
    }))
}

/// GPT-2-style byte-level BPE with the merges and the pre-tokenizer the metadata names.
fn byte_level_spec(meta: &Metadata, tokens: &[String], types: &[i32]) -> Result<serde_json::Value> {
    let merges = strings(meta, "tokenizer.ggml.merges")?;
    let pre = meta.string("tokenizer.ggml.pre").unwrap_or_else(|_| "default".into());
    let Some(pre_tokenizer) = pre_tokenizer(&pre) else {
        return Err(Error::bad_file(meta.path, format!("tokenizer pre-tokenizer `{pre}` is not supported")));
    };
    // llama.cpp takes a whole word that is a token as it is, before any merge, for Llama 3's vocabulary.
    let ignore_merges = matches!(pre.as_str(), "llama-bpe" | "llama3");
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens(tokens, types),
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": ignore_merges,
                  "vocab": vocab_json(tokens), "merges": merges},
    }))
}

/// The pre-tokenizers we know, by llama.cpp's `tokenizer.ggml.pre` name (the first name of each is what we
/// write).
const PRE_TOKENIZERS: &[&[&str]] =
    &[&["gpt-2", "gpt2"], &["smollm"], &["llama-bpe", "llama3"], &["qwen2"], &["default"]];

/// The Hugging Face pre-tokenizer llama.cpp's `tokenizer.ggml.pre` name stands for.
fn pre_tokenizer(name: &str) -> Option<serde_json::Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let splits_then_bytes = |regexes: &[&str]| {
        let mut steps: Vec<serde_json::Value> = regexes
            .iter()
            .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
            .collect();
        steps.push(byte_level(false));
        json!({"type": "Sequence", "pretokenizers": steps})
    };
    let canonical = PRE_TOKENIZERS.iter().find(|names| names.contains(&name))?[0];
    Some(match canonical {
        "gpt-2" => byte_level(true),
        // SmolLM: every digit on its own, then GPT-2's split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" => splits_then_bytes(&[LLAMA3_SPLIT]),
        "qwen2" => splits_then_bytes(&[QWEN2_SPLIT]),
        // llama.cpp's BPE default (a missing or `default` name): four splits, each over the last one's pieces.
        _ => splits_then_bytes(&DEFAULT_SPLITS),
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

/// The `tokenizer.ggml.*` metadata of a Hugging Face BPE tokenizer, as llama.cpp reads it. Byte-level BPE
/// (GPT-2, SmolLM, Llama 3, Qwen2) becomes `gpt2` with its merges and the pre-tokenizer's name; SentencePiece-style
/// BPE with byte fallback (Llama 2, TinyLlama, Mistral) becomes `llama`, each token scored by the rank of the first
/// merge that makes it, so that llama.cpp merges in the order `tokenizers` does. Token types: control for special
/// added tokens, user-defined for the other added tokens, byte for `<0xNN>`, unknown for the unknown token.
pub(super) fn to_metadata(
    tokenizer: &tokenizers::Tokenizer,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
) -> std::result::Result<Vec<(String, Value)>, String> {
    let spec: serde_json::Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let model = &spec["model"];
    if model["type"] != "BPE" {
        return Err(format!("its tokenizer is {} and only BPE tokenizers can be written as GGUF yet", model["type"]));
    }
    let byte_fallback = model["byte_fallback"] == true;
    let (tokens, mut types) = tokens_by_id(&spec, vocab_size)?;
    let merges = merge_pairs(model)?;
    let mut keys = if byte_fallback {
        sentencepiece_keys(&spec, &tokens, &mut types, &merges)?
    } else {
        let pre = pre_tokenizer_name(&spec["pre_tokenizer"]).ok_or_else(|| {
            format!("its tokenizer's pre-tokenizer is not one llama.cpp names ({})", spec["pre_tokenizer"])
        })?;
        let merges = merges.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect();
        vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String(pre.into())),
            ("tokenizer.ggml.merges", Value::Array(merges)),
        ]
    };
    let tokens = tokens.into_iter().map(Value::String).collect();
    keys.push(("tokenizer.ggml.tokens", Value::Array(tokens)));
    keys.push(("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())));
    keys.extend(bos.map(|id| ("tokenizer.ggml.bos_token_id", Value::U32(id))));
    keys.extend(eos.map(|id| ("tokenizer.ggml.eos_token_id", Value::U32(id))));
    Ok(keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Every id's token and type. Ids the tokenizer never produces (embedding rows beyond its vocabulary) get
/// placeholders of the unused type, as llama.cpp's converter writes for padded vocabularies.
fn tokens_by_id(spec: &serde_json::Value, vocab_size: usize) -> std::result::Result<(Vec<String>, Vec<i32>), String> {
    let mut tokens = vec![None; vocab_size];
    let mut types = vec![NORMAL; vocab_size];
    let vocab = spec["model"]["vocab"].as_object().ok_or("its tokenizer has no vocabulary")?;
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
            types[id] = if special { CONTROL } else { USER_DEFINED };
        }
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();
    Ok((tokens, types))
}

/// The merges as pairs, whether written "a b" or [a, b].
fn merge_pairs(model: &serde_json::Value) -> std::result::Result<Vec<(String, String)>, String> {
    let merges = model["merges"].as_array().ok_or("its tokenizer has no merges")?;
    merges
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => {
                s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| format!("merge `{s}`"))
            }
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                Ok((pair[0].as_str().unwrap_or("").to_string(), pair[1].as_str().unwrap_or("").to_string()))
            }
            other => Err(format!("a merge is neither \"a b\" nor [a, b]: {other}")),
        })
        .collect()
}

/// The `llama` (SPM) keys: scores from merge ranks, byte and unknown types, whether a `▁` is put in front.
fn sentencepiece_keys(
    spec: &serde_json::Value,
    tokens: &[String],
    types: &mut [i32],
    merges: &[(String, String)],
) -> std::result::Result<Vec<(&'static str, Value)>, String> {
    let normalizers = match spec["normalizer"]["type"].as_str() {
        Some("Sequence") => spec["normalizer"]["normalizers"].as_array().cloned().unwrap_or_default(),
        Some(_) => vec![spec["normalizer"].clone()],
        None => Vec::new(),
    };
    let prepends_space = normalizers.iter().any(|n| n["type"] == "Prepend" && n["prepend"] == "▁");
    let replaces_spaces =
        normalizers.iter().any(|n| n["type"] == "Replace" && n["pattern"]["String"] == " " && n["content"] == "▁");
    let metaspace = spec["pre_tokenizer"]["type"] == "Metaspace";
    let other_pre_tokenizer = spec["pre_tokenizer"].is_object() && !metaspace;
    if !(replaces_spaces || metaspace) || other_pre_tokenizer {
        return Err("its SentencePiece-style tokenizer does not write spaces as `▁` the way llama.cpp does".into());
    }
    let prepends_space = prepends_space || metaspace && spec["pre_tokenizer"]["prepend_scheme"] != "never";
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    // A token made by merge r scores -r: llama.cpp joins the highest-scoring pair first, as BPE applies the
    // lowest-ranked merge first. Tokens no merge makes (characters, bytes, specials) score below every merge, so
    // a join BPE would not make comes last, if at all.
    let mut scores = vec![-(merges.len() as f32) - 1.0; tokens.len()];
    let mut scored = vec![false; tokens.len()];
    for (rank, (a, b)) in merges.iter().enumerate() {
        if let Some(&id) = ids.get(format!("{a}{b}").as_str())
            && !scored[id]
        {
            scores[id] = -(rank as f32) - 1.0;
            scored[id] = true;
        }
    }
    let unk = spec["model"]["unk_token"].as_str();
    for (i, token) in tokens.iter().enumerate() {
        if types[i] == NORMAL && is_byte_token(token) {
            types[i] = BYTE;
        }
        if Some(token.as_str()) == unk {
            types[i] = UNKNOWN;
        }
    }
    let mut keys = vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        ("tokenizer.ggml.scores", Value::Array(scores.into_iter().map(Value::F32).collect())),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(prepends_space)),
    ];
    if let Some(id) = unk.and_then(|u| ids.get(u)) {
        keys.push(("tokenizer.ggml.unknown_token_id", Value::U32(*id as u32)));
    }
    Ok(keys)
}

/// `<0x0A>`-style tokens stand for one byte.
fn is_byte_token(token: &str) -> bool {
    token.len() == 6
        && token.starts_with("<0x")
        && token.ends_with('>')
        && token[3..5].chars().all(|c| c.is_ascii_hexdigit())
}

const DEFAULT_SPLITS: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
