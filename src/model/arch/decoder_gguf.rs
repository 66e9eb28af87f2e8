//! The shared decoder families in GGUF, as llama.cpp's converter writes them: its tensor names per family, its
//! hyperparameter keys, Gemma's norms stored as 1 + w, Mistral's q/k rows permuted like Llama's. Reading goes
//! the other way: the metadata becomes the config.json the family's own reader takes, so there is one parser.

use candle_core::Tensor;
use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use super::decoder::Decoder;
use super::{GgufMetadata, GgufNames, decimal};
use crate::error::Result;
use crate::model::layers::decoder::RopeScaling;

/// How one family is written to GGUF.
#[derive(Debug)]
pub struct GgufForm {
    /// `general.architecture`.
    pub arch: &'static str,
    pub(crate) names: GgufNames,
    /// Added to every norm weight on the way out (Gemma's converter stores 1 + w), taken off on the way in.
    pub norm_shift: f64,
    /// q/k rows reordered for llama.cpp's RoPE (families it runs as `llama`).
    pub permute_qk: bool,
    /// llama.cpp reads `attention.sliding_window` for this architecture.
    pub sliding_window: bool,
}

/// Llama's layer under llama.cpp's names, for families that add nothing to it in GGUF.
pub const LLAMA_LAYERS: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Our key for which layers use a sliding window (llama.cpp fixes Gemma 3's pattern at every sixth layer full;
/// a model saved with other `layer_types` keeps them here).
pub const SLIDING_LAYERS_KEY: &str = "nash_swarm.sliding_layers";

/// The layer names llama.cpp shares across its Llama-like architectures.
pub(crate) const fn names(layers: &'static [(&'static str, &'static str)]) -> GgufNames {
    GgufNames {
        globals: &[
            ("token_embd.weight", super::decoder::EMBED),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", super::decoder::LM_HEAD),
        ],
        layers,
        layer_prefix: "model.layers.",
    }
}

/// How llama.cpp's layout differs from ours for one tensor.
pub(super) enum GgufChange {
    /// Stored as w + shift (Gemma's (1 + w) norms).
    Shift(f64),
    /// Rows reordered per head for llama.cpp's RoPE.
    PermuteRows(usize),
}

impl Decoder {
    fn form(&self) -> std::result::Result<&'static GgufForm, String> {
        self.family
            .gguf
            .ok_or_else(|| format!("the {} architecture cannot be written as GGUF yet", self.family.model_type))
    }

    pub(super) fn gguf_layout(&self, name: &str, tensor: Tensor, outward: bool) -> Result<Tensor> {
        match self.gguf_change(name) {
            None => Ok(tensor),
            Some(GgufChange::Shift(shift)) => Ok((tensor + if outward { shift } else { -shift })?),
            Some(GgufChange::PermuteRows(heads)) if outward => super::llama::permute_rows(&tensor, heads),
            Some(GgufChange::PermuteRows(heads)) => super::llama::unpermute_rows(&tensor, heads),
        }
    }

    /// What llama.cpp's layout does to the tensor `name`, if anything.
    pub(super) fn gguf_change(&self, name: &str) -> Option<GgufChange> {
        let form = self.form().ok()?;
        if form.norm_shift != 0.0 && name.ends_with("norm.weight") {
            return Some(GgufChange::Shift(form.norm_shift));
        }
        match name.rsplit('.').nth(1) {
            Some("q_proj") if form.permute_qk => Some(GgufChange::PermuteRows(self.blocks[0].heads)),
            Some("k_proj") if form.permute_qk => Some(GgufChange::PermuteRows(self.blocks[0].kv_heads)),
            _ => None,
        }
    }

    pub(super) fn gguf_names(&self) -> Option<&'static GgufNames> {
        self.family.gguf.map(|f| &f.names)
    }

    /// `general.architecture` and the keys llama.cpp reads, or why this model cannot be written.
    pub(super) fn gguf_keys(&self) -> std::result::Result<(&'static str, Vec<(String, Value)>), String> {
        let form = self.form()?;
        let first = &self.blocks[0];
        if self.blocks.iter().any(|b| b.rope.scaling != RopeScaling::None) {
            return Err("models with rope scaling cannot be written as GGUF yet".into());
        }
        if (first.attention_scale - 1.0 / (first.head_dim as f64).sqrt()).abs() > 1e-12 {
            return Err("an attention scale other than 1/sqrt(head_dim) cannot be written as GGUF yet".into());
        }
        let full = self.blocks.iter().find(|b| b.window.is_none()).unwrap_or(first);
        let u32_of = |v: usize| Value::U32(v as u32);
        let mut keys = vec![
            ("context_length", u32_of(self.max_positions)),
            ("embedding_length", u32_of(self.hidden)),
            ("block_count", u32_of(self.blocks.len())),
            ("feed_forward_length", u32_of(self.intermediate)),
            ("attention.head_count", u32_of(first.heads)),
            ("attention.head_count_kv", u32_of(first.kv_heads)),
            ("attention.key_length", u32_of(first.head_dim)),
            ("attention.value_length", u32_of(first.head_dim)),
            ("rope.freq_base", Value::F32(full.rope.theta as f32)),
            ("rope.dimension_count", u32_of(first.rope.rotary_dim)),
            ("attention.layer_norm_rms_epsilon", Value::F32(self.eps as f32)),
            ("vocab_size", u32_of(self.vocab)),
        ];
        let mut ours = Vec::new();
        if let Some(window) = self.blocks.iter().find_map(|b| b.window) {
            if !form.sliding_window && window < self.max_positions {
                return Err(format!("llama.cpp runs `{}` without a sliding window", form.arch));
            }
            keys.push(("attention.sliding_window", u32_of(window)));
            let sliding = self.blocks.iter().map(|b| Value::Bool(b.window.is_some())).collect();
            ours.push((SLIDING_LAYERS_KEY.to_string(), Value::Array(sliding)));
            if let Some(local) = self.blocks.iter().find(|b| b.window.is_some()) {
                keys.push(("rope.freq_base_swa", Value::F32(local.rope.theta as f32)));
            }
        }
        if let Some(cap) = self.logit_softcap {
            keys.push(("final_logit_softcapping", Value::F32(cap as f32)));
        }
        let mut all: Vec<(String, Value)> = keys.into_iter().map(|(k, v)| (format!("{}.{k}", form.arch), v)).collect();
        all.extend(ours);
        Ok((form.arch, all))
    }
}

/// The config.json (Hugging Face field names) that GGUF metadata under `arch` describes, for the family's own
/// reader; `model_type` names the family.
pub fn config_from_gguf(
    meta: &GgufMetadata,
    arch: &str,
    model_type: &str,
) -> std::result::Result<serde_json::Value, String> {
    let key = |k: &str| format!("{arch}.{k}");
    let heads = meta.u32(&key("attention.head_count"))?;
    let hidden = meta.u32(&key("embedding_length"))?;
    let vocab = match meta.u32(&key("vocab_size")) {
        Ok(v) => v as usize,
        Err(_) => meta.array("tokenizer.ggml.tokens")?.len(),
    };
    let head_dim = meta.u32(&key("attention.key_length")).unwrap_or(hidden / heads.max(1));
    let mut config = json!({
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": meta.u32(&key("feed_forward_length"))?,
        "num_hidden_layers": meta.u32(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": meta.u32(&key("attention.head_count_kv")).unwrap_or(heads),
        "head_dim": head_dim,
        "vocab_size": vocab,
        "rms_norm_eps": decimal(meta.f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6)),
        "rope_theta": decimal(meta.f32(&key("rope.freq_base")).unwrap_or(10_000.0)),
        "max_position_embeddings": meta.u32(&key("context_length")).unwrap_or(4096),
        // A GGUF without `output.weight` ties the head to the embeddings.
        "tie_word_embeddings": !meta.has_tensor("output.weight"),
        "bos_token_id": meta.u32("tokenizer.ggml.bos_token_id").ok(),
    });
    if let Ok(window) = meta.u32(&key("attention.sliding_window")) {
        config["sliding_window"] = window.into();
    }
    if let Ok(cap) = meta.f32(&key("final_logit_softcapping")) {
        config["final_logit_softcapping"] = decimal(cap).into();
    }
    if let Ok(dims) = meta.u32(&key("rope.dimension_count")) {
        config["partial_rotary_factor"] = (dims as f64 / head_dim.max(1) as f64).into();
    }
    if let Ok(local) = meta.f32(&key("rope.freq_base_swa")) {
        config["rope_local_base_freq"] = decimal(local).into();
    }
    if let Ok(sliding) = meta.array(SLIDING_LAYERS_KEY) {
        let types: Vec<&str> = sliding
            .iter()
            .map(|v| if matches!(v, Value::Bool(true)) { "sliding_attention" } else { "full_attention" })
            .collect();
        config["layer_types"] = json!(types);
    }
    Ok(config)
}
