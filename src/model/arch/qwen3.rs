//! Qwen3 (Qwen3ForCausalLM): Llama's layer with a per-head RMSNorm of q and k before RoPE, a head dimension of
//! its own (`head_dim`, not hidden / heads), and optional attention biases.

use serde_json::Value;

use super::decoder::{Common, Family, activation, count, field};
use super::decoder_gguf::{GgufForm, config_from_gguf, names};
use super::{Architecture, GgufMetadata};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family =
    Family { model_type: "qwen3", kinds: &["q", "k", "v", "o", "gate", "up", "down"], gguf: Some(&GGUF) };

static GGUF: GgufForm = GgufForm {
    arch: "qwen3",
    names: names(&[
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
    ]),
    norm_shift: 0.0,
    permute_qk: false,
    sliding_window: false,
};

pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    let mut config = config_from_gguf(meta, "qwen3", "qwen3")?;
    config["attention_bias"] = meta.has_tensor("blk.0.attn_q.bias").into();
    from_hf_config(config)
}

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, false)?;
    let window = match field(&config, "use_sliding_window", Some(false))? {
        true => Some(count(&config, "sliding_window", None)?),
        false => None,
    };
    let window_from: usize = field(&config, "max_window_layers", Some(common.layers))?;
    let rope = Rope::from_config(&config, None, 10_000.0, common.head_dim, common.max_positions)?;
    let (act, bias) = (activation(&config, "hidden_act", "silu")?, field(&config, "attention_bias", Some(false))?);
    let blocks = (0..common.layers)
        .map(|i| BlockSpec {
            qk_norm: true,
            qkv_bias: bias,
            activation: act,
            window: window.filter(|_| i >= window_from),
            ..common.llama_block(rope.clone())
        })
        .collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
