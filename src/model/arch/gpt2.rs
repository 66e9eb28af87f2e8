//! GPT-2 (GPT2LMHeadModel): learned positions, LayerNorm, gelu_new, tied head. Conv1D weights arrive `[in, out]`
//! and are transposed on load (see `CONV1D_SUFFIXES`), so the forward pass sees `[out, in]` like every other.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use candle_core::quantized::gguf_file::Value;

use super::{Arch, Architecture, GgufMetadata, GgufNames, decimal, hf_config_json, positive};
use crate::error::Result;
use crate::model::layers::attention::causal_attention;
use crate::model::{Linears, TensorRole};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_gelu_new")]
    pub activation_function: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.n_head == 0 || self.n_embd == 0 || self.n_layer == 0 || self.vocab_size == 0 {
            return Err("n_embd, n_head, n_layer and vocab_size must be positive".into());
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!("n_embd {} is not divisible by n_head {}", self.n_embd, self.n_head));
        }
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh" | "gelu") {
            return Err(format!("activation_function `{}` is not supported", self.activation_function));
        }
        if self.n_positions == 0 {
            return Err("n_positions must be positive".into());
        }
        positive("layer_norm_epsilon", self.layer_norm_epsilon)
    }
}

impl Arch for Gpt2Config {
    fn name(&self) -> &'static str {
        "gpt2"
    }
    fn config_json(&self) -> serde_json::Value {
        hf_config_json(self, "gpt2", "GPT2LMHeadModel")
    }
    fn max_context(&self) -> usize {
        self.n_positions
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn num_layers(&self) -> usize {
        self.n_layer
    }
    fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }
    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        expected_tensors(self)
    }
    fn head_name(&self) -> &'static str {
        EMBED
    }
    fn tensor_role(&self, name: &str) -> TensorRole {
        tensor_role(name)
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["c_attn", "c_proj", "c_fc", "mlp.c_proj"]
    }
    fn kind_of(&self, name: &str) -> Option<&'static str> {
        let leaf = name.strip_prefix("h.")?.split_once('.')?.1;
        match leaf {
            "attn.c_attn.weight" => Some("c_attn"),
            "attn.c_proj.weight" => Some("c_proj"),
            "mlp.c_fc.weight" => Some("c_fc"),
            "mlp.c_proj.weight" => Some("mlp.c_proj"),
            _ => None,
        }
    }
    fn from_hf_key(&self, key: &str) -> Option<String> {
        canonical_name(key)
    }
    fn stored_transposed(&self, name: &str) -> bool {
        is_conv1d(name)
    }
    fn from_gguf_name(&self, gguf: &str) -> Option<String> {
        NAMES.ours(gguf)
    }
    fn to_gguf_name(&self, name: &str) -> Option<String> {
        NAMES.gguf(name)
    }
    fn gguf_metadata(&self) -> std::result::Result<(&'static str, Vec<(String, Value)>), String> {
        if self.activation_function == "gelu" {
            return Err("llama.cpp runs GPT-2 with the tanh GELU only, and this model uses the exact one".into());
        }
        let u32_of = |v: usize| Value::U32(v as u32);
        let keys = [
            ("context_length", u32_of(self.n_positions)),
            ("embedding_length", u32_of(self.n_embd)),
            ("feed_forward_length", u32_of(self.inner())),
            ("block_count", u32_of(self.n_layer)),
            ("attention.head_count", u32_of(self.n_head)),
            ("attention.layer_norm_epsilon", Value::F32(self.layer_norm_epsilon as f32)),
        ];
        Ok(("gpt2", keys.into_iter().map(|(k, v)| (format!("gpt2.{k}"), v)).collect()))
    }
    fn embed(&self, linears: &Linears, ids: &[u32]) -> Result<Tensor> {
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        Ok((linears.gather(EMBED, ids)? + linears.gather(POSITIONS, &positions)?)?)
    }
    fn layer(&self, linears: &Linears, index: usize, x: &Tensor) -> Result<Tensor> {
        block(self, linears, &format!("h.{index}"), x)
    }
    fn final_norm(&self, linears: &Linears, x: &Tensor) -> Result<Tensor> {
        layer_norm(self, linears, x, "ln_f")
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub fn from_hf_config(value: serde_json::Value) -> std::result::Result<Architecture, String> {
    let config: Gpt2Config = serde_json::from_value(value).map_err(|e| e.to_string())?;
    config.validate()?;
    Ok(Architecture::new(config))
}

/// The architecture llama.cpp's `gpt2` metadata describes (the tanh GELU, a tied head).
pub fn from_gguf(meta: &GgufMetadata) -> std::result::Result<Architecture, String> {
    if meta.has_tensor("output.weight") {
        return Err("GPT-2 GGUF files with their own output.weight are not supported (we tie the head)".into());
    }
    let config = Gpt2Config {
        vocab_size: meta.array("tokenizer.ggml.tokens")?.len(),
        n_positions: meta.u32("gpt2.context_length")? as usize,
        n_embd: meta.u32("gpt2.embedding_length")? as usize,
        n_layer: meta.u32("gpt2.block_count")? as usize,
        n_head: meta.u32("gpt2.attention.head_count")? as usize,
        n_inner: Some(meta.u32("gpt2.feed_forward_length")? as usize),
        activation_function: "gelu_new".into(),
        layer_norm_epsilon: decimal(meta.f32("gpt2.attention.layer_norm_epsilon").unwrap_or(1e-5)),
        bos_token_id: meta.u32("tokenizer.ggml.bos_token_id").ok(),
    };
    config.validate().map_err(|e| format!("invalid gpt2 metadata: {e}"))?;
    Ok(Architecture::new(config))
}

/// llama.cpp's names of our tensors.
const NAMES: GgufNames = GgufNames {
    globals: &[
        ("token_embd.weight", EMBED),
        ("position_embd.weight", POSITIONS),
        ("output_norm.weight", "ln_f.weight"),
        ("output_norm.bias", "ln_f.bias"),
    ],
    layers: &[
        ("attn_norm.weight", "ln_1.weight"),
        ("attn_norm.bias", "ln_1.bias"),
        ("attn_qkv.weight", "attn.c_attn.weight"),
        ("attn_qkv.bias", "attn.c_attn.bias"),
        ("attn_output.weight", "attn.c_proj.weight"),
        ("attn_output.bias", "attn.c_proj.bias"),
        ("ffn_norm.weight", "ln_2.weight"),
        ("ffn_norm.bias", "ln_2.bias"),
        ("ffn_up.weight", "mlp.c_fc.weight"),
        ("ffn_up.bias", "mlp.c_fc.bias"),
        ("ffn_down.weight", "mlp.c_proj.weight"),
        ("ffn_down.bias", "mlp.c_proj.bias"),
    ],
    layer_prefix: "h.",
};

pub const EMBED: &str = "wte.weight";
pub const POSITIONS: &str = "wpe.weight";

/// Weights stored by Hugging Face's Conv1D as `[in, out]`.
pub const CONV1D_SUFFIXES: [&str; 4] =
    ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

/// Hugging Face keys of a GPT-2 checkpoint -> ours: no `transformer.` prefix; causal-mask buffers and the tied
/// `lm_head` dropped. Returns None for keys to drop.
fn canonical_name(key: &str) -> Option<String> {
    let name = key.strip_prefix("transformer.").unwrap_or(key);
    let is_buffer = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
    if is_buffer || name == "lm_head.weight" { None } else { Some(name.to_string()) }
}

fn is_conv1d(name: &str) -> bool {
    CONV1D_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn expected_tensors(c: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let (d, inner) = (c.n_embd, c.inner());
    let mut shapes = vec![
        (EMBED.to_string(), vec![c.vocab_size, d]),
        (POSITIONS.to_string(), vec![c.n_positions, d]),
        ("ln_f.weight".to_string(), vec![d]),
        ("ln_f.bias".to_string(), vec![d]),
    ];
    for i in 0..c.n_layer {
        let p = format!("h.{i}");
        shapes.extend([
            (format!("{p}.ln_1.weight"), vec![d]),
            (format!("{p}.ln_1.bias"), vec![d]),
            (format!("{p}.ln_2.weight"), vec![d]),
            (format!("{p}.ln_2.bias"), vec![d]),
            (format!("{p}.attn.c_attn.weight"), vec![3 * d, d]),
            (format!("{p}.attn.c_attn.bias"), vec![3 * d]),
            (format!("{p}.attn.c_proj.weight"), vec![d, d]),
            (format!("{p}.attn.c_proj.bias"), vec![d]),
            (format!("{p}.mlp.c_fc.weight"), vec![inner, d]),
            (format!("{p}.mlp.c_fc.bias"), vec![inner]),
            (format!("{p}.mlp.c_proj.weight"), vec![d, inner]),
            (format!("{p}.mlp.c_proj.bias"), vec![d]),
        ]);
    }
    shapes
}

fn tensor_role(name: &str) -> TensorRole {
    if name == EMBED {
        TensorRole::Embedding
    } else if !name.ends_with(".weight") || name.contains(".ln_") || name == POSITIONS || name == "ln_f.weight" {
        TensorRole::Other
    } else if name.contains(".attn.") {
        TensorRole::Attention
    } else if name.contains(".mlp.") {
        TensorRole::Mlp
    } else {
        TensorRole::Other
    }
}

/// LayerNorm `name` (its weight and bias) over `x`.
fn layer_norm(c: &Gpt2Config, w: &Linears, x: &Tensor, name: &str) -> Result<Tensor> {
    let (weight, bias) = (w.get(&format!("{name}.weight"))?, w.get(&format!("{name}.bias"))?);
    Ok(candle_nn::ops::layer_norm(x, &weight, &bias, c.layer_norm_epsilon as f32)?)
}

/// One transformer block (`p` is its name prefix) over the hidden states `x` `[T, n_embd]` of one window.
fn block(c: &Gpt2Config, w: &Linears, p: &str, x: &Tensor) -> Result<Tensor> {
    let norm = |x: &Tensor, name: &str| layer_norm(c, w, x, name);
    let t = x.dim(0)?;
    let (d, heads) = (c.n_embd, c.n_head);
    let hd = d / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let affine = |x: &Tensor, name: &str| -> Result<Tensor> {
        Ok(w.linear(&format!("{name}.weight"), x)?.broadcast_add(&w.get(&format!("{name}.bias"))?)?)
    };
    let qkv = affine(&norm(x, &format!("{p}.ln_1"))?, &format!("{p}.attn.c_attn"))?;
    let split = |k: usize| -> Result<Tensor> {
        Ok(qkv.narrow(1, k * d, d)?.reshape((1, t, heads, hd))?.transpose(1, 2)?.contiguous()?)
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let attn = causal_attention(&q, &k, &v, scale, None)?;
    let x = (x + affine(&attn, &format!("{p}.attn.c_proj"))?)?;

    let h = affine(&norm(&x, &format!("{p}.ln_2"))?, &format!("{p}.mlp.c_fc"))?.gelu()?;
    Ok((x + affine(&h, &format!("{p}.mlp.c_proj"))?)?)
}

fn default_gelu_new() -> String {
    "gelu_new".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
