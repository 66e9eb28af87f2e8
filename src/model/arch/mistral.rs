//! Mistral (MistralForCausalLM): Llama's layer, with sliding-window attention in every layer where
//! `sliding_window` is set.

use serde_json::Value;

use super::Architecture;
use super::decoder::{Common, Family, activation, field};
use super::decoder_gguf::{GgufForm, LLAMA_LAYERS, names};
use crate::model::layers::decoder::{BlockSpec, Rope};

pub static FAMILY: Family =
    Family { model_type: "mistral", kinds: &["q", "k", "v", "o", "gate", "up", "down"], gguf: Some(&GGUF) };

/// llama.cpp's converter writes Mistral as `llama` (it reads back as a Llama model).
static GGUF: GgufForm =
    GgufForm { arch: "llama", names: names(LLAMA_LAYERS), norm_shift: 0.0, permute_qk: true, sliding_window: false };

pub fn from_hf_config(config: Value) -> std::result::Result<Architecture, String> {
    let common = Common::read(&config, false)?;
    let window: Option<usize> = field(&config, "sliding_window", Some(None))?;
    if window == Some(0) {
        return Err("`sliding_window` must be positive".into());
    }
    let rope = Rope::from_config(&config, None, 10_000.0, common.head_dim, common.max_positions)?;
    let act = activation(&config, "hidden_act", "silu")?;
    let blocks =
        (0..common.layers).map(|_| BlockSpec { activation: act, window, ..common.llama_block(rope.clone()) }).collect();
    Ok(Architecture::new(common.decoder(&FAMILY, config, blocks)?))
}
