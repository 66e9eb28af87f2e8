//! Architecture configurations, deserialized from Hugging Face `config.json` (or built from GGUF metadata).

use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Hugging Face's LlamaConfig defaults to untied; llama-family exports usually say so explicitly.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

/// Llama 3.x frequency scaling (`rope_type: llama3`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    pub fn validate(&self) -> Result<(), String> {
        let heads = self.num_attention_heads;
        if heads == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return Err("hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive".into());
        }
        if self.head_dim.is_none() && self.hidden_size % heads != 0 {
            return Err(format!("hidden_size {} is not divisible by num_attention_heads {heads}", self.hidden_size));
        }
        if self.kv_heads() == 0 || heads % self.kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {}",
                self.kv_heads()
            ));
        }
        if self.head_dim() == 0 || self.head_dim() % 2 != 0 {
            return Err(format!("head dimension {} must be even and positive for RoPE", self.head_dim()));
        }
        positive("rope_theta", self.rope_theta)?;
        positive("rms_norm_eps", self.rms_norm_eps)?;
        if self.max_position_embeddings == 0 {
            return Err("max_position_embeddings must be positive".into());
        }
        if let Some(s) = &self.rope_scaling {
            match s.rope_type.as_deref() {
                Some("llama3") => {}
                other => return Err(format!("rope_scaling type {other:?} is not supported (only llama3)")),
            }
            positive("rope_scaling.factor", s.factor)?;
            positive("rope_scaling.low_freq_factor", s.low_freq_factor)?;
            positive("rope_scaling.high_freq_factor", s.high_freq_factor)?;
            if s.high_freq_factor <= s.low_freq_factor {
                return Err(format!(
                    "rope_scaling.high_freq_factor {} must exceed low_freq_factor {}",
                    s.high_freq_factor, s.low_freq_factor
                ));
            }
            if s.original_max_position_embeddings == 0 {
                return Err("rope_scaling.original_max_position_embeddings must be positive".into());
            }
        }
        Ok(())
    }
}

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
        if self.n_embd % self.n_head != 0 {
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

/// A finite number above zero, or an error naming the field.
fn positive(field: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{field} is {value}, but must be a finite number above zero"))
    }
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
fn default_original_max() -> usize {
    8192
}
fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_gelu_new() -> String {
    "gelu_new".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
