//! Phi-3 (Phi3ForCausalLM): Llama's layer with q, k and v in one `qkv_proj` and gate and up in one
//! `gate_up_proj`, and RoPE on the first `partial_rotary_factor` of each head where set.

use serde_json::Value;

use super::decoder::{Common, Family, activation, field};
use super::decoder_gguf::{GgufForm, config_from_gguf, names};
use super::{Architecture, GgufMetadata};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family = Family { model_type: "phi3", kinds: &["qkv", "o", "gate_up", "down"], gguf: Some(&GGUF) };

static GGUF: GgufForm = GgufForm {
    arch: "phi3",
    names: names(&[
        ("attn_norm.weight", "input_layernorm.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("attn_qkv.weight", "self_attn.qkv_proj.weight"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("ffn_up.weight", "mlp.gate_up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ]),
    norm_shift: 0.0,
    permute_qk: false,
    sliding_window: true,
};

pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    from_hf_config(config_from_gguf(meta, "phi3", "phi3")?)
}

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, false)?;
    let window: Option<usize> = field(&config, "sliding_window", Some(None))?;
    if window == Some(0) {
        return Err("`sliding_window` must be positive".into());
    }
    // transformers 5 keeps the factor in `rope_parameters`, older configs at the top level.
    let in_parameters = config.get("rope_parameters").and_then(|p| p.get("partial_rotary_factor")).cloned();
    let factor: f64 = match in_parameters.filter(|v| !v.is_null()) {
        Some(v) => serde_json::from_value(v).map_err(|e| format!("`rope_parameters.partial_rotary_factor`: {e}"))?,
        None => field(&config, "partial_rotary_factor", Some(1.0))?,
    };
    if !(factor > 0.0 && factor <= 1.0) {
        return Err(format!("`partial_rotary_factor` is {factor}, but must be in (0, 1]"));
    }
    let rotary_dim = (common.head_dim as f64 * factor) as usize;
    let rope = Rope::from_config(&config, None, 10_000.0, rotary_dim, common.max_positions)?;
    let act = activation(&config, "hidden_act", "silu")?;
    let blocks = (0..common.layers)
        .map(|_| BlockSpec {
            fused_qkv: true,
            fused_gate_up: true,
            activation: act,
            window,
            ..common.llama_block(rope.clone())
        })
        .collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
