//! Architectures behind one trait. The registries at the end of this file are the only place that lists them:
//! adding an architecture is a new file here (its config, tensor names, roles, heatmap kinds and forward pass)
//! and one line in `HUGGING_FACE` (and in `GGUF` when llama.cpp writes it).

pub mod decoder;
pub mod decoder_gguf;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod mistral;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::Value;

use super::{Linears, TensorRole};
use crate::error::Result;

/// What the rest of the program knows of an architecture. Names are Hugging Face's; matrices are `[out, in]`.
pub trait Arch: Send + Sync + Debug + 'static {
    /// Hugging Face `model_type`.
    fn name(&self) -> &'static str;
    /// A `config.json` that reproduces this architecture, `model_type` and `architectures` included.
    fn config_json(&self) -> serde_json::Value;
    fn max_context(&self) -> usize;
    /// Rows of the token embedding: every token id must be below this.
    fn vocab_size(&self) -> usize;
    fn num_layers(&self) -> usize;
    fn bos_token_id(&self) -> Option<u32>;
    /// Every tensor the forward pass needs, with its shape as implied by the config.
    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)>;
    /// The weight that maps final hidden states to logits (the embedding when tied).
    fn head_name(&self) -> &'static str;
    /// What role a weight plays; decides whether (and how) it is quantized.
    fn tensor_role(&self, name: &str) -> TensorRole;
    /// The heatmap columns, in the order they are drawn.
    fn kinds(&self) -> &'static [&'static str];
    /// The heatmap column of a weight matrix, None for tensors outside the layers' matrices.
    fn kind_of(&self, name: &str) -> Option<&'static str>;
    /// A Hugging Face checkpoint key as we name it; None for keys to drop (buffers, a tied head).
    fn from_hf_key(&self, key: &str) -> Option<String> {
        Some(key.to_string())
    }
    /// Whether a weight is stored `[in, out]` in Hugging Face files (GPT-2's Conv1D) and transposed on load.
    fn stored_transposed(&self, _name: &str) -> bool {
        false
    }
    /// A GGUF tensor name as we name it; None for tensors we do not use.
    fn from_gguf_name(&self, _gguf: &str) -> Option<String> {
        None
    }
    /// A tensor read from GGUF in our layout (llama.cpp permutes the q/k rows of Llama).
    fn from_gguf_layout(&self, _name: &str, tensor: Tensor) -> Result<Tensor> {
        Ok(tensor)
    }
    /// Whether `from_gguf_layout` changes the tensor `name` (a part of it can then only be read from the whole).
    fn gguf_layout_changes(&self, _name: &str) -> bool {
        false
    }
    /// Our tensor name as llama.cpp names it in GGUF; None for tensors it does not write.
    fn to_gguf_name(&self, _name: &str) -> Option<String> {
        None
    }
    /// A tensor in llama.cpp's GGUF layout: the inverse of `from_gguf_layout`.
    fn to_gguf_layout(&self, _name: &str, tensor: Tensor) -> Result<Tensor> {
        Ok(tensor)
    }
    /// `general.architecture` and the hyperparameter keys llama.cpp reads, or why this model cannot be written
    /// as GGUF.
    fn gguf_metadata(&self) -> std::result::Result<(&'static str, Vec<(String, Value)>), String> {
        Err(format!("the {} architecture cannot be written as GGUF yet", self.name()))
    }
    /// Tensors llama.cpp needs that are not weights of ours (Llama 3's `rope_freqs.weight`): written as F32 after
    /// the weights, skipped on reading.
    fn gguf_extra_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Query heads per key/value head (llama.cpp's `n_gqa`; some of its type rules depend on it).
    fn query_groups(&self) -> usize {
        1
    }
    /// The hidden states `[T, hidden]` entering the first layer for one window's token ids.
    fn embed(&self, linears: &Linears, ids: &[u32]) -> Result<Tensor>;
    /// Layer `index` over one window's hidden states `[T, hidden]` (positions 0..T).
    fn layer(&self, linears: &Linears, index: usize, x: &Tensor) -> Result<Tensor>;
    /// The final norm: what the head multiplies.
    fn final_norm(&self, linears: &Linears, x: &Tensor) -> Result<Tensor>;
    /// Logits become cap · tanh(logits / cap) (Gemma's final soft-capping), where set.
    fn final_logit_softcap(&self) -> Option<f64> {
        None
    }
    fn as_any(&self) -> &dyn Any;
}

/// A model's architecture: shared, cheap to clone.
#[derive(Clone, Debug)]
pub struct Architecture(Arc<dyn Arch>);

impl Architecture {
    pub fn new(arch: impl Arch) -> Self {
        Architecture(Arc::new(arch))
    }

    /// The concrete configuration, for code that knows which architecture it holds (tests, GGUF writers).
    pub fn config<T: Arch>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

impl std::ops::Deref for Architecture {
    type Target = dyn Arch;
    fn deref(&self) -> &dyn Arch {
        &*self.0
    }
}

impl PartialEq for Architecture {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.config_json() == other.config_json()
    }
}

/// GGUF metadata as an architecture reads it, with the names of the file's tensors; errors name the key.
pub struct GgufMetadata<'a> {
    map: &'a HashMap<String, Value>,
    tensors: &'a [&'a str],
}

impl<'a> GgufMetadata<'a> {
    pub fn new(map: &'a HashMap<String, Value>) -> Self {
        GgufMetadata { map, tensors: &[] }
    }
    pub fn with_tensors(self, tensors: &'a [&'a str]) -> Self {
        GgufMetadata { tensors, ..self }
    }
    /// Whether the file holds a tensor of this (GGUF) name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains(&name)
    }
    fn get(&self, key: &str) -> std::result::Result<&'a Value, String> {
        self.map.get(key).ok_or_else(|| format!("GGUF metadata `{key}` is missing"))
    }
    fn wrong(key: &str, e: impl std::fmt::Display) -> String {
        format!("GGUF metadata `{key}` has an unexpected type or value ({e})")
    }
    pub fn string(&self, key: &str) -> std::result::Result<String, String> {
        self.get(key)?.to_string().cloned().map_err(|e| Self::wrong(key, e))
    }
    pub fn u32(&self, key: &str) -> std::result::Result<u32, String> {
        let v = self.get(key)?;
        match v.to_u32() {
            Ok(x) => Ok(x),
            Err(e) => v.to_u64().ok().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| Self::wrong(key, e)),
        }
    }
    pub fn f32(&self, key: &str) -> std::result::Result<f32, String> {
        self.get(key)?.to_f32().map_err(|e| Self::wrong(key, e))
    }
    pub fn array(&self, key: &str) -> std::result::Result<&'a Vec<Value>, String> {
        self.get(key)?.to_vec().map_err(|e| Self::wrong(key, e))
    }
}

type FromHf = fn(serde_json::Value) -> std::result::Result<Architecture, String>;
type FromGguf = fn(&GgufMetadata) -> std::result::Result<Architecture, String>;

/// Hugging Face architectures by `model_type`.
const HUGGING_FACE: &[(&str, FromHf)] = &[
    ("llama", llama::from_hf_config),
    ("gpt2", gpt2::from_hf_config),
    ("qwen2", qwen2::from_hf_config),
    ("qwen3", qwen3::from_hf_config),
    ("mistral", mistral::from_hf_config),
    ("phi3", phi3::from_hf_config),
    ("gemma3_text", gemma3::from_hf_config),
];

/// GGUF architectures by `general.architecture`.
const GGUF: &[(&str, FromGguf)] = &[
    ("llama", llama::from_gguf),
    ("gpt2", gpt2::from_gguf),
    ("qwen2", qwen2::from_gguf),
    ("qwen3", qwen3::from_gguf),
    ("phi3", phi3::from_gguf),
    ("gemma3", gemma3::from_gguf),
];

/// The architecture a `config.json` describes: None when its `model_type` is not one we open.
pub fn from_hf_config(
    model_type: &str,
    config: serde_json::Value,
) -> Option<std::result::Result<Architecture, String>> {
    HUGGING_FACE.iter().find(|(name, _)| *name == model_type).map(|(_, make)| make(config))
}

/// The architecture a GGUF file's metadata describes: None when its `general.architecture` is not one we open.
pub fn from_gguf(architecture: &str, meta: &GgufMetadata) -> Option<std::result::Result<Architecture, String>> {
    GGUF.iter().find(|(name, _)| *name == architecture).map(|(_, make)| make(meta))
}

/// The `model_type`s we open, for messages.
pub fn hf_names() -> String {
    HUGGING_FACE.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The GGUF architectures we open, for messages.
pub fn gguf_names() -> String {
    GGUF.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// How an architecture's tensor names map to llama.cpp's: whole-model tensors one to one, per-layer tensors by
/// their leaf under `blk.N.` and under our layer prefix.
#[derive(Debug)]
pub(crate) struct GgufNames {
    /// (GGUF name, ours).
    pub globals: &'static [(&'static str, &'static str)],
    /// (GGUF leaf, our leaf).
    pub layers: &'static [(&'static str, &'static str)],
    /// Our prefix of layer N's tensors, before the number (`model.layers.`, `h.`).
    pub layer_prefix: &'static str,
}

impl GgufNames {
    pub fn ours(&self, gguf: &str) -> Option<String> {
        if let Some((_, ours)) = self.globals.iter().find(|(g, _)| *g == gguf) {
            return Some(ours.to_string());
        }
        let (layer, leaf) = gguf.strip_prefix("blk.")?.split_once('.')?;
        let (_, our_leaf) = self.layers.iter().find(|(g, _)| *g == leaf)?;
        Some(format!("{}{layer}.{our_leaf}", self.layer_prefix))
    }

    pub fn gguf(&self, ours: &str) -> Option<String> {
        if let Some((gguf, _)) = self.globals.iter().find(|(_, o)| *o == ours) {
            return Some(gguf.to_string());
        }
        let (layer, leaf) = ours.strip_prefix(self.layer_prefix)?.split_once('.')?;
        let (gguf_leaf, _) = self.layers.iter().find(|(_, o)| *o == leaf)?;
        Some(format!("blk.{layer}.{gguf_leaf}"))
    }
}

/// GGUF stores these as f32: 1e-5 arrives as 9.99999974e-6. Take the shortest decimal that round-trips.
pub(crate) fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// A finite number above zero, or an error naming the field.
pub(crate) fn positive(field: &str, value: f64) -> std::result::Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{field} is {value}, but must be a finite number above zero"))
    }
}

/// The `config.json` of a serializable config with its `model_type` and Hugging Face class.
pub(crate) fn hf_config_json(config: &impl serde::Serialize, model_type: &str, class: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(config).expect("configs serialize");
    value["model_type"] = model_type.into();
    value["architectures"] = serde_json::json!([class]);
    value
}
