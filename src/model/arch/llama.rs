//! Llama (LlamaForCausalLM): RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU, tied or untied head.
//! Covers SmolLM/SmolLM2, TinyLlama, Llama 3.x and stories260k. Weight names mirror Hugging Face; llama.cpp's
//! GGUF names and its q/k row order are translated here too.

use candle_core::Tensor;
use candle_core::quantized::gguf_file::Value;
use serde::{Deserialize, Serialize};

use super::{Arch, Architecture, GgufMetadata, GgufNames, decimal, hf_config_json, positive};
use crate::error::Result;
use crate::model::layers::decoder::{BlockSpec, Rope, RopeScaling, block};
use crate::model::{Linears, TensorRole, cpu};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// As read from config.json (`rope_type` llama3, linear or dynamic); see `layers::decoder::RopeScaling`.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Hugging Face's LlamaConfig defaults to untied; llama-family exports usually say so explicitly.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

impl LlamaConfig {
    /// The heads whose rows llama.cpp reorders for its RoPE, when `name` is a q or k projection.
    fn rope_heads(&self, name: &str) -> Option<usize> {
        match name.rsplit('.').nth(1) {
            Some("q_proj") => Some(self.num_attention_heads),
            Some("k_proj") => Some(self.kv_heads()),
            _ => None,
        }
    }
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// The RoPE this config describes (validated; `rope_theta` is checked by `validate`).
    pub fn rope(&self) -> Result<Rope, String> {
        let scaling = match &self.rope_scaling {
            Some(s) => RopeScaling::from_json(s, "rope_scaling", self.max_position_embeddings)?,
            None => RopeScaling::None,
        };
        Ok(Rope { theta: self.rope_theta, rotary_dim: self.head_dim(), scaling })
    }
    /// The shared decoder layer as Llama builds it.
    fn block_spec(&self) -> Result<BlockSpec, String> {
        Ok(self.common().llama_block(self.rope()?))
    }
    /// The sizes every decoder family shares.
    fn common(&self) -> super::decoder::Common {
        super::decoder::Common {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            layers: self.num_hidden_layers,
            intermediate: self.intermediate_size,
            vocab: self.vocab_size,
            max_positions: self.max_position_embeddings,
            tied: self.tie_word_embeddings,
            bos: self.bos_token_id,
            eps: self.rms_norm_eps,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        let heads = self.num_attention_heads;
        if heads == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return Err("hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(format!("hidden_size {} is not divisible by num_attention_heads {heads}", self.hidden_size));
        }
        if self.kv_heads() == 0 || !heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {}",
                self.kv_heads()
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return Err(format!("head dimension {} must be even and positive for RoPE", self.head_dim()));
        }
        positive("rope_theta", self.rope_theta)?;
        positive("rms_norm_eps", self.rms_norm_eps)?;
        if self.max_position_embeddings == 0 {
            return Err("max_position_embeddings must be positive".into());
        }
        self.rope()?;
        Ok(())
    }
}

impl Arch for LlamaConfig {
    fn name(&self) -> &'static str {
        "llama"
    }
    fn config_json(&self) -> serde_json::Value {
        hf_config_json(self, "llama", "LlamaForCausalLM")
    }
    fn max_context(&self) -> usize {
        self.max_position_embeddings
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn num_layers(&self) -> usize {
        self.num_hidden_layers
    }
    fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }
    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        expected_tensors(self)
    }
    fn head_name(&self) -> &'static str {
        if self.tie_word_embeddings { EMBED } else { LM_HEAD }
    }
    fn tensor_role(&self, name: &str) -> TensorRole {
        super::decoder::tensor_role(name)
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["q", "k", "v", "o", "gate", "up", "down"]
    }
    fn kind_of(&self, name: &str) -> Option<&'static str> {
        let leaf = name.strip_prefix("model.layers.")?.split_once('.')?.1;
        let kind = leaf.strip_suffix("_proj.weight")?.rsplit('.').next()?;
        self.kinds().iter().find(|k| **k == kind).copied()
    }
    fn from_hf_key(&self, key: &str) -> Option<String> {
        let dropped = (self.tie_word_embeddings && key == LM_HEAD) || key.ends_with("rotary_emb.inv_freq");
        (!dropped).then(|| key.to_string())
    }
    fn from_gguf_name(&self, gguf: &str) -> Option<String> {
        NAMES.ours(gguf)
    }
    fn from_gguf_layout(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        match self.rope_heads(name) {
            Some(heads) => unpermute_rows(&tensor, heads),
            None => Ok(tensor),
        }
    }
    fn to_gguf_name(&self, name: &str) -> Option<String> {
        NAMES.gguf(name)
    }
    fn gguf_layout_changes(&self, name: &str) -> bool {
        self.rope_heads(name).is_some()
    }
    fn to_gguf_layout(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        match self.rope_heads(name) {
            Some(heads) => permute_rows(&tensor, heads),
            None => Ok(tensor),
        }
    }
    fn gguf_metadata(&self) -> std::result::Result<(&'static str, Vec<(String, Value)>), String> {
        let scaling = self.rope()?.scaling;
        if !matches!(scaling, RopeScaling::None | RopeScaling::Llama3 { .. }) {
            return Err("llama models with linear or dynamic rope_scaling cannot be written as GGUF yet".into());
        }
        let u32_of = |v: usize| Value::U32(v as u32);
        let mut keys = vec![
            ("context_length", u32_of(self.max_position_embeddings)),
            ("embedding_length", u32_of(self.hidden_size)),
            ("block_count", u32_of(self.num_hidden_layers)),
            ("feed_forward_length", u32_of(self.intermediate_size)),
            ("attention.head_count", u32_of(self.num_attention_heads)),
            ("attention.head_count_kv", u32_of(self.kv_heads())),
            ("rope.freq_base", Value::F32(self.rope_theta as f32)),
            ("attention.layer_norm_rms_epsilon", Value::F32(self.rms_norm_eps as f32)),
            ("vocab_size", u32_of(self.vocab_size)),
            ("rope.dimension_count", u32_of(self.head_dim())),
        ];
        if self.head_dim() * self.num_attention_heads != self.hidden_size {
            keys.extend([
                ("attention.key_length", u32_of(self.head_dim())),
                ("attention.value_length", u32_of(self.head_dim())),
            ]);
        }
        let mut keys: Vec<(String, Value)> = keys.into_iter().map(|(k, v)| (format!("llama.{k}"), v)).collect();
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|_| scaling != RopeScaling::None) {
            // llama.cpp reads the scaling from `rope_freqs.weight`; we keep its parameters to read it back.
            keys.push((ROPE_SCALING_KEY.into(), Value::String(scaling.to_string())));
        }
        Ok(("llama", keys))
    }
    fn gguf_extra_tensors(&self) -> Vec<(String, Tensor)> {
        let Ok(rope) = self.rope() else { return Vec::new() };
        if rope.scaling == RopeScaling::None {
            return Vec::new();
        }
        // llama.cpp divides each frequency by its factor (its converter's `rope_factors`).
        let dim = rope.rotary_dim;
        let factors: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / rope.theta.powf(2.0 * i as f64 / dim as f64))
            .map(|f| (f / rope.scaling.scale(f)) as f32)
            .collect();
        match Tensor::from_vec(factors, dim / 2, &cpu()) {
            Ok(t) => vec![(ROPE_FREQS.to_string(), t)],
            Err(_) => Vec::new(),
        }
    }
    fn query_groups(&self) -> usize {
        self.num_attention_heads / self.kv_heads()
    }
    fn embed(&self, linears: &Linears, ids: &[u32]) -> Result<Tensor> {
        linears.gather(EMBED, ids)
    }
    fn layer(&self, linears: &Linears, index: usize, x: &Tensor) -> Result<Tensor> {
        let spec = self.block_spec().map_err(crate::error::Error::InvalidArgument)?;
        let (cos, sin) = spec.rope.tables(x.dim(0)?)?;
        block(&spec, linears, &format!("model.layers.{index}"), x, &cos, &sin)
    }
    fn final_norm(&self, linears: &Linears, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &linears.get("model.norm.weight")?, self.rms_norm_eps as f32)?)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub fn from_hf_config(mut value: serde_json::Value) -> std::result::Result<Architecture, String> {
    // transformers 5 writes `rope_parameters`; this config keeps the legacy `rope_theta` / `rope_scaling`.
    if let Some(parameters) = value.get("rope_parameters").filter(|v| v.is_object()).cloned() {
        if let Some(theta) = parameters.get("rope_theta") {
            value["rope_theta"] = theta.clone();
        }
        let kind = parameters.get("rope_type").and_then(|v| v.as_str()).unwrap_or("default");
        value["rope_scaling"] = if kind == "default" { serde_json::Value::Null } else { parameters };
    }
    let config: LlamaConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
    config.validate()?;
    Ok(Architecture::new(config))
}

pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    let heads = meta.u32("llama.attention.head_count")? as usize;
    let hidden = meta.u32("llama.embedding_length")? as usize;
    let vocab = match meta.u32("llama.vocab_size") {
        Ok(v) => v as usize,
        Err(_) => meta.array("tokenizer.ggml.tokens")?.len(),
    };
    let config = LlamaConfig {
        hidden_size: hidden,
        intermediate_size: meta.u32("llama.feed_forward_length")? as usize,
        num_hidden_layers: meta.u32("llama.block_count")? as usize,
        num_attention_heads: heads,
        num_key_value_heads: meta.u32("llama.attention.head_count_kv").ok().map(|v| v as usize),
        head_dim: meta.u32("llama.attention.key_length").ok().map(|v| v as usize),
        vocab_size: vocab,
        rms_norm_eps: decimal(meta.f32("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5)),
        rope_theta: decimal(meta.f32("llama.rope.freq_base").unwrap_or(10_000.0)),
        rope_scaling: rope_scaling_of(meta)?,
        max_position_embeddings: meta.u32("llama.context_length").unwrap_or(2048) as usize,
        // A GGUF without `output.weight` ties the head to the embeddings.
        tie_word_embeddings: !meta.has_tensor("output.weight"),
        bos_token_id: meta.u32("tokenizer.ggml.bos_token_id").ok(),
    };
    config.validate().map_err(|e| format!("invalid llama metadata: {e}"))?;
    Ok(Architecture::new(config))
}

/// The RoPE scaling of a GGUF: none without `rope_freqs.weight`, ours from our key with it. llama.cpp's own
/// files hold only the factors, which we do not read yet: refused rather than run unscaled.
fn rope_scaling_of(meta: &GgufMetadata) -> std::result::Result<Option<serde_json::Value>, String> {
    if !meta.has_tensor(ROPE_FREQS) {
        return Ok(None);
    }
    let json = meta.string(ROPE_SCALING_KEY).map_err(|_| {
        format!("`{ROPE_FREQS}` (llama.cpp's form of Llama 3 rope scaling) is read only from files this tool wrote")
    })?;
    serde_json::from_str(&json).map(Some).map_err(|e| format!("`{ROPE_SCALING_KEY}` is not JSON ({e})"))
}

/// llama.cpp's names of our tensors.
const NAMES: GgufNames = super::decoder_gguf::names(super::decoder_gguf::LLAMA_LAYERS);

/// llama.cpp's converter reorders the rows of each q/k head from (2, hd/2) to (hd/2, 2) for its RoPE.
pub(crate) fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, 2, half, inp))?.transpose(1, 2)?.contiguous()?.reshape((out, inp))?)
}

/// Undoes `permute_rows`.
pub(crate) fn unpermute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, half, 2, inp))?.transpose(1, 2)?.contiguous()?.reshape((out, inp))?)
}

pub use super::decoder::EMBED;
/// llama.cpp's per-frequency RoPE divisors (Llama 3 scaling), and our key holding the scaling they came from.
const ROPE_FREQS: &str = "rope_freqs.weight";
const ROPE_SCALING_KEY: &str = "nash_swarm.rope_scaling";
pub use super::decoder::LM_HEAD;

fn expected_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    // Shapes do not depend on the RoPE, which `validate` has checked.
    let rope = Rope { theta: c.rope_theta, rotary_dim: c.head_dim(), scaling: RopeScaling::None };
    let blocks = vec![c.common().llama_block(rope); c.num_hidden_layers];
    super::decoder::expected_tensors(c.vocab_size, c.hidden_size, c.intermediate_size, c.tie_word_embeddings, &blocks)
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}
