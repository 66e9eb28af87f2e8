//! Qwen3 (Qwen3ForCausalLM): Llama's layer with a per-head RMSNorm of q and k before RoPE, a head dimension of
//! its own (`head_dim`, not hidden / heads), and optional attention biases.

use serde_json::Value;

use super::decoder::{Common, Family, activation, field};
use super::decoder_gguf::{GgufForm, config_from_gguf, names};
use super::{Architecture, GgufMetadata};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family =
    Family { model_type: "qwen3", kinds: &["q", "k", "v", "o", "gate", "up", "down"], gguf: Some(&GGUF) };

static GGUF: GgufForm = GgufForm {
    arch: "qwen3",
    names: names(super::qwen2::QWEN_LAYERS),
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
    let rope = Rope::from_config(&config, None, 10_000.0, common.head_dim, common.max_positions)?;
    let (act, bias) = (activation(&config, "hidden_act", "silu")?, field(&config, "attention_bias", Some(false))?);
    let blocks = super::qwen2::windows(&config, common.layers)?
        .into_iter()
        .map(|window| BlockSpec {
            qk_norm: true,
            qkv_bias: bias,
            activation: act,
            window,
            ..common.llama_block(rope.clone())
        })
        .collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
