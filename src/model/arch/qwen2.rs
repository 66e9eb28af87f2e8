//! Qwen2 / Qwen2.5 (Qwen2ForCausalLM): Llama's layer with biases on the q, k and v projections; sliding-window
//! attention from layer `max_window_layers` on when `use_sliding_window` is set.

use serde_json::Value;

use super::Architecture;
use super::decoder::{Common, Family, activation, count, field};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family = Family { model_type: "qwen2", kinds: &["q", "k", "v", "o", "gate", "up", "down"] };

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, false)?;
    let window = match field(&config, "use_sliding_window", Some(false))? {
        true => Some(count(&config, "sliding_window", None)?),
        false => None,
    };
    let window_from: usize = field(&config, "max_window_layers", Some(common.layers))?;
    let rope = Rope::from_config(&config, None, 10_000.0, common.head_dim, common.max_positions)?;
    let act = activation(&config, "hidden_act", "silu")?;
    let blocks = (0..common.layers)
        .map(|i| BlockSpec {
            qkv_bias: true,
            activation: act,
            window: window.filter(|_| i >= window_from),
            ..common.llama_block(rope.clone())
        })
        .collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
