//! What the Hugging Face decoder-only families (Qwen2, Qwen3, Mistral, Phi-3, Gemma 3) have in common as an
//! `Arch`: `model.embed_tokens`, `model.layers.N.*` built by the shared `layers::decoder::block`, `model.norm`,
//! and `lm_head` unless tied. Each family's own file reads its config.json into a `Decoder`: its block per
//! layer, its embedding scale, its norm, its logit soft-capping.

use candle_core::Tensor;

use super::Arch;
use crate::error::Result;
use crate::model::layers::decoder::{Activation, BlockSpec, Norm, Rope, block, layer_tensors, norm};
use crate::model::{Linears, TensorRole};

pub const EMBED: &str = "model.embed_tokens.weight";
pub const LM_HEAD: &str = "lm_head.weight";
const FINAL_NORM: &str = "model.norm.weight";
const LAYERS: &str = "model.layers.";

/// The role of a weight under Hugging Face's decoder names (Llama's included): norms, biases and q/k norms are
/// `Other`.
pub fn tensor_role(name: &str) -> TensorRole {
    if name == EMBED {
        TensorRole::Embedding
    } else if name == LM_HEAD {
        TensorRole::LmHead
    } else if name.contains(".self_attn.") && name.ends_with("_proj.weight") {
        TensorRole::Attention
    } else if name.contains(".mlp.") && name.ends_with("_proj.weight") {
        TensorRole::Mlp
    } else {
        TensorRole::Other
    }
}

/// Every tensor of a decoder built from `blocks` (one per layer), with its shape: Llama's and the families'.
pub fn expected_tensors(
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    tied: bool,
    blocks: &[BlockSpec],
) -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![(EMBED.to_string(), vec![vocab, hidden]), (FINAL_NORM.into(), vec![hidden])];
    if !tied {
        shapes.push((LM_HEAD.to_string(), vec![vocab, hidden]));
    }
    for (i, spec) in blocks.iter().enumerate() {
        let leaves = layer_tensors(spec, hidden, intermediate);
        shapes.extend(leaves.into_iter().map(|(leaf, shape)| (format!("{LAYERS}{i}.{leaf}"), shape)));
    }
    shapes
}

/// A family's fixed facts.
#[derive(Debug)]
pub struct Family {
    /// Hugging Face `model_type`.
    pub model_type: &'static str,
    /// The heatmap columns: matrix names under `self_attn.` / `mlp.` without `_proj.weight`.
    pub kinds: &'static [&'static str],
    /// How llama.cpp stores it, when it does.
    pub gguf: Option<&'static super::decoder_gguf::GgufForm>,
}

/// One model of a decoder-only family, as its config.json describes it.
#[derive(Debug)]
pub struct Decoder {
    pub family: &'static Family,
    /// The config.json it was read from (written back as is).
    pub config: serde_json::Value,
    pub hidden: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub tied: bool,
    pub bos: Option<u32>,
    /// One per layer (layers differ in attention window and RoPE in Gemma 3).
    pub blocks: Vec<BlockSpec>,
    /// The embedding is multiplied by this (Gemma: sqrt(hidden)).
    pub embed_scale: Option<f64>,
    pub final_norm: Norm,
    pub eps: f64,
    /// Logits become cap · tanh(logits / cap).
    pub logit_softcap: Option<f64>,
}

/// Reads one field of a config, or its default; errors name the field.
pub fn field<T: serde::de::DeserializeOwned>(
    config: &serde_json::Value,
    key: &str,
    default: Option<T>,
) -> std::result::Result<T, String> {
    match config.get(key).filter(|v| !v.is_null()) {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("`{key}`: {e}")),
        None => default.ok_or_else(|| format!("`{key}` is missing")),
    }
}

/// A count that must be above zero.
pub fn count(config: &serde_json::Value, key: &str, default: Option<usize>) -> std::result::Result<usize, String> {
    let n: usize = field(config, key, default)?;
    if n == 0 {
        return Err(format!("`{key}` must be positive"));
    }
    Ok(n)
}

/// Checks what every family needs of its heads: divisible counts, an even rotary part.
pub fn check_heads(spec: &BlockSpec) -> std::result::Result<(), String> {
    if spec.kv_heads == 0 || !spec.heads.is_multiple_of(spec.kv_heads) {
        return Err(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            spec.heads, spec.kv_heads
        ));
    }
    if spec.head_dim == 0 || !spec.rope.rotary_dim.is_multiple_of(2) || spec.rope.rotary_dim > spec.head_dim {
        return Err(format!(
            "head dimension {} with a rotary part of {} (it must be even and fit the head)",
            spec.head_dim, spec.rope.rotary_dim
        ));
    }
    crate::model::arch::positive("rms_norm_eps", spec.eps)
}

impl Arch for Decoder {
    fn name(&self) -> &'static str {
        self.family.model_type
    }
    fn config_json(&self) -> serde_json::Value {
        self.config.clone()
    }
    fn max_context(&self) -> usize {
        self.max_positions
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn num_layers(&self) -> usize {
        self.blocks.len()
    }
    fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }
    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        expected_tensors(self.vocab, self.hidden, self.intermediate, self.tied, &self.blocks)
    }
    fn head_name(&self) -> &'static str {
        if self.tied { EMBED } else { LM_HEAD }
    }
    fn tensor_role(&self, name: &str) -> TensorRole {
        tensor_role(name)
    }
    fn kinds(&self) -> &'static [&'static str] {
        self.family.kinds
    }
    fn kind_of(&self, name: &str) -> Option<&'static str> {
        let leaf = name.strip_prefix(LAYERS)?.split_once('.')?.1;
        let kind = leaf.strip_suffix("_proj.weight")?.rsplit('.').next()?;
        self.family.kinds.iter().find(|k| **k == kind).copied()
    }
    fn from_hf_key(&self, key: &str) -> Option<String> {
        let dropped = (self.tied && key == LM_HEAD) || key.ends_with("rotary_emb.inv_freq");
        (!dropped).then(|| key.to_string())
    }
    fn from_gguf_name(&self, gguf: &str) -> Option<String> {
        self.gguf_names()?.ours(gguf)
    }
    fn from_gguf_layout(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        self.gguf_layout(name, tensor, false)
    }
    fn to_gguf_name(&self, name: &str) -> Option<String> {
        self.gguf_names()?.gguf(name)
    }
    fn gguf_layout_changes(&self, name: &str) -> bool {
        self.gguf_change(name).is_some()
    }
    fn to_gguf_layout(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        self.gguf_layout(name, tensor, true)
    }
    fn gguf_metadata(
        &self,
    ) -> std::result::Result<(&'static str, Vec<(String, candle_core::quantized::gguf_file::Value)>), String> {
        self.gguf_keys()
    }
    fn query_groups(&self) -> usize {
        self.blocks.first().map_or(1, |b| b.heads / b.kv_heads)
    }
    fn embed(&self, linears: &Linears, ids: &[u32]) -> Result<Tensor> {
        let x = linears.gather(EMBED, ids)?;
        Ok(match self.embed_scale {
            Some(scale) => (x * scale)?,
            None => x,
        })
    }
    fn layer(&self, linears: &Linears, index: usize, x: &Tensor) -> Result<Tensor> {
        let spec = &self.blocks[index];
        let (cos, sin) = spec.rope.tables(x.dim(0)?)?;
        block(spec, linears, &format!("{LAYERS}{index}"), x, &cos, &sin)
    }
    fn final_norm(&self, linears: &Linears, x: &Tensor) -> Result<Tensor> {
        norm(self.final_norm, x, &linears.get(FINAL_NORM)?, self.eps)
    }
    fn final_logit_softcap(&self) -> Option<f64> {
        self.logit_softcap
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The numbers every family reads from config.json the same way.
#[derive(Clone, Debug)]
pub struct Common {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// `head_dim` where given, else hidden / heads.
    pub head_dim: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub tied: bool,
    pub bos: Option<u32>,
    pub eps: f64,
}

impl Common {
    /// Reads the shared fields; `tied` is the family's default for `tie_word_embeddings`.
    pub fn read(config: &serde_json::Value, tied: bool) -> std::result::Result<Common, String> {
        // Mixtures of experts and vision towers are other models under the same names: refused by the key.
        for key in ["num_experts", "num_local_experts", "n_routed_experts"] {
            if config.get(key).and_then(serde_json::Value::as_u64).is_some_and(|n| n > 0) {
                return Err(format!("`{key}` is set: mixture-of-experts models are not supported"));
            }
        }
        if config.get("vision_config").is_some_and(|v| !v.is_null()) {
            return Err("`vision_config` is set: vision towers are not supported (the text model alone is)".into());
        }
        let hidden = count(config, "hidden_size", None)?;
        let heads = count(config, "num_attention_heads", None)?;
        let head_dim = match config.get("head_dim").filter(|v| !v.is_null()) {
            Some(_) => count(config, "head_dim", None)?,
            None if hidden % heads == 0 => hidden / heads,
            None => return Err(format!("hidden_size {hidden} is not divisible by num_attention_heads {heads}")),
        };
        Ok(Common {
            hidden,
            heads,
            kv_heads: count(config, "num_key_value_heads", Some(heads))?,
            head_dim,
            layers: count(config, "num_hidden_layers", None)?,
            intermediate: count(config, "intermediate_size", None)?,
            vocab: count(config, "vocab_size", None)?,
            max_positions: count(config, "max_position_embeddings", Some(4096))?,
            tied: field(config, "tie_word_embeddings", Some(tied))?,
            bos: field(config, "bos_token_id", Some(None))?,
            eps: field(config, "rms_norm_eps", Some(1e-6))?,
        })
    }

    /// Llama's layer with this model's sizes and `rope`: the start every family changes what it must in.
    pub fn llama_block(&self, rope: Rope) -> BlockSpec {
        BlockSpec {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            eps: self.eps,
            norm: Norm::Rms,
            fused_qkv: false,
            qkv_bias: false,
            qk_norm: false,
            sandwich_norms: false,
            fused_gate_up: false,
            activation: Activation::Silu,
            attention_scale: 1.0 / (self.head_dim as f64).sqrt(),
            window: None,
            rope,
        }
    }

    /// The model, once every block is checked.
    pub fn decoder(
        self,
        family: &'static Family,
        config: serde_json::Value,
        blocks: Vec<BlockSpec>,
    ) -> std::result::Result<Decoder, String> {
        blocks.iter().try_for_each(check_heads)?;
        Ok(Decoder {
            family,
            config,
            hidden: self.hidden,
            intermediate: self.intermediate,
            vocab: self.vocab,
            max_positions: self.max_positions,
            tied: self.tied,
            bos: self.bos,
            blocks,
            embed_scale: None,
            final_norm: Norm::Rms,
            eps: self.eps,
            logit_softcap: None,
        })
    }
}

/// The MLP activation named by `key`; anything but `allowed` is refused by name.
pub fn activation(config: &serde_json::Value, key: &str, default: &str) -> std::result::Result<Activation, String> {
    let act: String = field(config, key, Some(default.to_string()))?;
    match act.as_str() {
        "silu" | "swish" => Ok(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::GeluTanh),
        other => Err(format!("`{key}` {other} is not supported (silu, gelu_pytorch_tanh)")),
    }
}
