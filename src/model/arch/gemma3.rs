//! Gemma 3, text (Gemma3ForCausalLM, `model_type` gemma3_text): the embedding scaled by sqrt(hidden), RMSNorms
//! that multiply by (1 + w), norms before and after both attention and the MLP, per-head q/k norms, a GELU-tanh
//! gated MLP, attention scaled by `query_pre_attn_scalar`, sliding-window and full-attention layers with RoPE
//! bases of their own, and optional soft-capping of the final logits.

use serde_json::Value;

use super::decoder::{Common, Family, activation, count, field};
use super::decoder_gguf::{GgufForm, config_from_gguf, names};
use super::{Architecture, GgufMetadata};
use crate::model::layers::decoder::{BlockSpec, Norm, Rope, RopeScaling};

pub static FAMILY: Family =
    Family { model_type: "gemma3_text", kinds: &["q", "k", "v", "o", "gate", "up", "down"], gguf: Some(&GGUF) };

static GGUF: GgufForm = GgufForm {
    arch: "gemma3",
    names: names(&[
        ("attn_norm.weight", "input_layernorm.weight"),
        ("post_attention_norm.weight", "post_attention_layernorm.weight"),
        ("ffn_norm.weight", "pre_feedforward_layernorm.weight"),
        ("post_ffw_norm.weight", "post_feedforward_layernorm.weight"),
        ("attn_q.weight", "self_attn.q_proj.weight"),
        ("attn_k.weight", "self_attn.k_proj.weight"),
        ("attn_v.weight", "self_attn.v_proj.weight"),
        ("attn_q_norm.weight", "self_attn.q_norm.weight"),
        ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("ffn_gate.weight", "mlp.gate_proj.weight"),
        ("ffn_up.weight", "mlp.up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ]),
    norm_shift: 1.0,
    permute_qk: false,
    sliding_window: true,
};

pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    from_hf_config(config_from_gguf(meta, "gemma3", "gemma3_text")?)
}

const SLIDING: &str = "sliding_attention";
const FULL: &str = "full_attention";

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, true)?;
    for refused in ["attn_logit_softcapping", "use_bidirectional_attention"] {
        if config.get(refused).is_some_and(|v| !v.is_null() && v != &Value::Bool(false)) {
            return Err(format!("`{refused}` is set, which is not supported"));
        }
    }
    let types = layer_types(&config, common.layers)?;
    let window = count(&config, "sliding_window", Some(4096))?;
    let scalar: f64 = field(&config, "query_pre_attn_scalar", Some(common.head_dim as f64))?;
    crate::model::arch::positive("query_pre_attn_scalar", scalar)?;
    let act = activation(&config, "hidden_activation", "gelu_pytorch_tanh")?;
    let (full, sliding) = (rope(&config, FULL, &common)?, rope(&config, SLIDING, &common)?);
    let blocks = types
        .iter()
        .map(|kind| BlockSpec {
            norm: Norm::RmsPlusOne,
            qk_norm: true,
            sandwich_norms: true,
            activation: act,
            attention_scale: 1.0 / scalar.sqrt(),
            window: (kind == SLIDING).then_some(window),
            ..common.llama_block(if kind == SLIDING { sliding.clone() } else { full.clone() })
        })
        .collect();
    let softcap: Option<f64> = field(&config, "final_logit_softcapping", Some(None))?;
    if let Some(cap) = softcap {
        crate::model::arch::positive("final_logit_softcapping", cap)?;
    }
    let embed_scale = (common.hidden as f64).sqrt();
    let decoder = common.decoder(&FAMILY, config, blocks)?;
    Ok(Architecture::new(super::decoder::Decoder {
        embed_scale: Some(embed_scale),
        final_norm: Norm::RmsPlusOne,
        logit_softcap: softcap,
        ..decoder
    }))
}

/// Each layer's attention: `layer_types`, else every `sliding_window_pattern`-th layer full and the rest sliding.
fn layer_types(config: &Value, layers: usize) -> std::result::Result<Vec<String>, String> {
    if config.get("layer_types").is_some_and(|v| !v.is_null()) {
        let types: Vec<String> = field(config, "layer_types", None)?;
        if types.len() != layers {
            return Err(format!("`layer_types` lists {} layers, but num_hidden_layers is {layers}", types.len()));
        }
        if let Some(bad) = types.iter().find(|t| *t != SLIDING && *t != FULL) {
            return Err(format!("`layer_types` holds `{bad}` ({SLIDING} or {FULL} expected)"));
        }
        return Ok(types);
    }
    let key = if config.get("_sliding_window_pattern").is_some() {
        "_sliding_window_pattern"
    } else {
        "sliding_window_pattern"
    };
    let pattern = count(config, key, Some(6))?;
    Ok((0..layers).map(|i| if (i + 1) % pattern == 0 { FULL } else { SLIDING }.to_string()).collect())
}

/// The RoPE of one layer type: transformers 5 keys `rope_parameters` by type; older configs give the full
/// layers `rope_theta` and `rope_scaling` and the sliding ones `rope_local_base_freq`, unscaled.
fn rope(config: &Value, kind: &str, common: &Common) -> std::result::Result<Rope, String> {
    if config.get("rope_parameters").is_some_and(Value::is_object) {
        return Rope::from_config(config, Some(kind), 10_000.0, common.head_dim, common.max_positions);
    }
    let full = Rope::from_config(config, None, 1_000_000.0, common.head_dim, common.max_positions)?;
    if kind == FULL {
        return Ok(full);
    }
    let theta: f64 = field(config, "rope_local_base_freq", Some(10_000.0))?;
    crate::model::arch::positive("rope_local_base_freq", theta)?;
    Ok(Rope { theta, scaling: RopeScaling::None, ..full })
}
