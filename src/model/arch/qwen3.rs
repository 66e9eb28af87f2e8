//! Qwen3 (Qwen3ForCausalLM): Llama's layer with a per-head RMSNorm of q and k before RoPE, a head dimension of
//! its own (`head_dim`, not hidden / heads), and optional attention biases.

use serde_json::Value;

use super::Architecture;
use super::decoder::{Common, Family, activation, count, field};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family = Family { model_type: "qwen3", kinds: &["q", "k", "v", "o", "gate", "up", "down"] };

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
