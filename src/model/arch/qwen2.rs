//! Qwen2 / Qwen2.5 (Qwen2ForCausalLM): Llama's layer with biases on the q, k and v projections; sliding-window
//! attention from layer `max_window_layers` on when `use_sliding_window` is set.

use serde_json::Value;

use super::decoder::{Common, Family, activation, count, field};
use super::decoder_gguf::{GgufForm, config_from_gguf, names};
use super::{Architecture, GgufMetadata};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family =
    Family { model_type: "qwen2", kinds: &["q", "k", "v", "o", "gate", "up", "down"], gguf: Some(&GGUF) };

static GGUF: GgufForm =
    GgufForm { arch: "qwen2", names: names(QWEN_LAYERS), norm_shift: 0.0, permute_qk: false, sliding_window: false };

/// Qwen2's and Qwen3's layers under llama.cpp's names (biases for Qwen2, q/k norms for Qwen3).
pub(super) const QWEN_LAYERS: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Each layer's sliding window: from layer `max_window_layers` on, when `use_sliding_window` is set.
pub(super) fn windows(config: &Value, layers: usize) -> std::result::Result<Vec<Option<usize>>, String> {
    let window = match field(config, "use_sliding_window", Some(false))? {
        true => Some(count(config, "sliding_window", None)?),
        false => None,
    };
    let window_from: usize = field(config, "max_window_layers", Some(layers))?;
    Ok((0..layers).map(|i| window.filter(|_| i >= window_from)).collect())
}

pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    from_hf_config(config_from_gguf(meta, "qwen2", "qwen2")?)
}

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, false)?;
    let rope = Rope::from_config(&config, None, 10_000.0, common.head_dim, common.max_positions)?;
    let act = activation(&config, "hidden_act", "silu")?;
    let blocks = windows(&config, common.layers)?
        .into_iter()
        .map(|window| BlockSpec { qkv_bias: true, activation: act, window, ..common.llama_block(rope.clone()) })
        .collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
