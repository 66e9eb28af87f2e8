//! A language model as named f32 weights + architecture + tokenizer.
//!
//! Weights keep Hugging Face names and the `[out, in]` layout of `nn.Linear` for every matrix (GPT-2's Conv1D
//! weights are transposed on load), so the quantizer sees one convention whatever the source format.

pub mod arch;
pub mod layers;
pub mod tensor_io;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};

pub use arch::gpt2::Gpt2Config;
pub use arch::llama::LlamaConfig;
pub use arch::{Arch, Architecture};
pub use layers::gemm;
pub use tensor_io::tensor_to_vec;

use crate::error::{Error, Result};

/// The role of a weight tensor in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TensorRole {
    Attention,
    Mlp,
    Embedding,
    LmHead,
    /// Norm weights, biases and position tables: kept at 16 bits and counted.
    Other,
}

/// Where a model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    HuggingFace,
    Gguf,
    /// Our packed quantized export (quantized weights are already on their grid).
    Packed,
}

/// Named f32 tensors on the CPU, in a deterministic (sorted) order.
#[derive(Clone, Debug, Default)]
pub struct Weights(pub BTreeMap<String, Tensor>);

impl Weights {
    /// The weight `name` in f32 (a weight stored in bf16/f16 is converted on each call: the model is held in its
    /// stored dtype, and only the tensors being used exist in f32).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let stored =
            self.0.get(name).ok_or_else(|| Error::InvalidArgument(format!("weight `{name}` is not loaded")))?;
        tensor_io::as_f32(stored)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.0.insert(name.into(), tensor);
    }

    pub fn param_count(&self) -> usize {
        self.0.values().map(|t| t.elem_count()).sum()
    }

    pub fn f32_bytes(&self) -> usize {
        self.param_count() * 4
    }
}

/// Sees `(weight name, input [T, in])` for every matrix multiplication of a forward pass.
pub type Observer<'a> = dyn FnMut(&str, &Tensor) -> Result<()> + 'a;

/// Weights made on demand instead of held: a quantized model dequantized layer by layer while it is evaluated,
/// so its f32 copy never exists whole.
pub trait LazyWeights: Send + Sync {
    /// The tensor `name`, or None when this source does not hold it.
    fn tensor(&self, name: &str) -> Result<Option<Tensor>>;
}

/// The weights as the forward pass uses them: `x @ W^T`, with an optional observer of each input.
pub struct Linears<'a> {
    pub model: &'a Model,
    observer: Option<std::cell::RefCell<&'a mut Observer<'a>>>,
}

impl<'a> Linears<'a> {
    /// The model's weights with nobody watching.
    pub fn of(model: &'a Model) -> Self {
        Linears { model, observer: None }
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.model.weight(name)
    }

    /// `x @ W^T` for the `[out, in]` weight `name`.
    pub fn linear(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        if let Some(observer) = &self.observer {
            (observer.borrow_mut())(name, x)?;
        }
        gemm::matmul_t(x, &self.model.weight(name)?)
    }
}

#[derive(Clone)]
pub struct Model {
    pub source: PathBuf,
    pub format: SourceFormat,
    pub architecture: Architecture,
    pub weights: Weights,
    pub tokenizer: Arc<tokenizers::Tokenizer>,
    pub bos_token_id: Option<u32>,
    /// How each weight was stored at the source (F32, BF16, Q4_1, ...), before conversion to f32.
    pub stored_dtypes: BTreeMap<String, String>,
    /// Weights not in `weights`, made when the forward pass asks for them (see `with_lazy_weights`).
    pub lazy: Option<Arc<dyn LazyWeights>>,
}

impl Model {
    /// Logits `[ids.len(), vocab]` for every position.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        self.forward_observed(ids, None)
    }

    /// The forward pass, showing every matrix's input to `observer` (calibration statistics).
    pub fn forward_observed(&self, ids: &[u32], observer: Option<&mut Observer>) -> Result<Tensor> {
        let observer = observer.map(|o| std::cell::RefCell::new(o as &mut Observer));
        let linears = Linears { model: self, observer };
        let hidden = self.hidden_states(&linears, &[ids])?.pop().expect("one window");
        if let Some(observer) = &linears.observer {
            (observer.borrow_mut())(self.architecture.head_name(), &hidden)?;
        }
        self.logits(&hidden, &self.head()?)
    }

    /// Logits `[T, vocab]` of final hidden states (after the final norm) under `head`: the product, then the
    /// architecture's soft-capping where it has one. Every place that makes logits goes through here.
    pub fn logits(&self, hidden: &Tensor, head: &Tensor) -> Result<Tensor> {
        let logits = gemm::matmul_t(hidden, head)?;
        match self.architecture.final_logit_softcap() {
            Some(cap) => Ok(((logits / cap)?.tanh()? * cap)?),
            None => Ok(logits),
        }
    }

    /// The final hidden states `[ids.len(), hidden]` of each window, before the head: evaluation applies the head
    /// block by block so a window's full logits (100 MB for SmolLM2 at ctx 512) never exist at once. The windows
    /// go through the model together, layer by layer, so lazy weights are made once per call.
    pub fn forward_hidden(&self, windows: &[&[u32]]) -> Result<Vec<Tensor>> {
        self.hidden_states(&Linears::of(self), windows)
    }

    /// The head weight `[vocab, hidden]`.
    pub fn head(&self) -> Result<Tensor> {
        self.weight(self.architecture.head_name())
    }

    /// The weight `name`, held or made.
    pub fn weight(&self, name: &str) -> Result<Tensor> {
        if self.weights.0.contains_key(name) {
            return self.weights.get(name);
        }
        let missing = || Error::InvalidArgument(format!("weight `{name}` is not loaded"));
        match &self.lazy {
            Some(lazy) => lazy.tensor(name)?.ok_or_else(missing),
            None => Err(missing()),
        }
    }

    fn hidden_states(&self, linears: &Linears, windows: &[&[u32]]) -> Result<Vec<Tensor>> {
        for ids in windows {
            if ids.is_empty() {
                return Err(Error::InvalidArgument("forward pass over zero tokens".into()));
            }
            if ids.len() > self.architecture.max_context() {
                return Err(Error::InvalidArgument(format!(
                    "{} tokens exceed the model's context of {}",
                    ids.len(),
                    self.architecture.max_context()
                )));
            }
        }
        let arch = &self.architecture;
        let mut xs = windows.iter().map(|ids| arch.embed(linears, ids)).collect::<Result<Vec<_>>>()?;
        // The windows advance together one layer at a time, so lazy weights are made once per layer.
        for i in 0..arch.num_layers() {
            for x in xs.iter_mut() {
                *x = arch.layer(linears, i, x)?;
            }
        }
        xs.iter().map(|x| arch.final_norm(linears, x)).collect()
    }

    pub fn param_count(&self) -> usize {
        self.weights.param_count()
    }

    /// Tokenizes plain text without adding special tokens (BOS is the evaluator's choice).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidArgument(format!("tokenization failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| Error::InvalidArgument(format!("decoding failed: {e}")))
    }

    /// The same model with other weights (a quantized copy): shares the tokenizer.
    pub fn with_weights(&self, weights: Weights) -> Model {
        Model { weights, lazy: None, ..self.clone() }
    }

    /// The same model with `weights` held and every other weight made by `lazy` when needed.
    pub fn with_lazy_weights(&self, weights: Weights, lazy: Arc<dyn LazyWeights>) -> Model {
        Model { weights, lazy: Some(lazy), ..self.clone() }
    }

    /// Greedy continuation as text; used by the smoke test that SmolLM2 knows its capitals.
    pub fn generate_greedy(&self, prompt: &str, new_tokens: usize) -> Result<String> {
        self.decode(&self.generate_greedy_ids(&self.encode(prompt)?, new_tokens)?)
    }

    /// The ids of a greedy continuation of `prompt` (the whole sequence is recomputed per token: no cache).
    pub fn generate_greedy_ids(&self, prompt: &[u32], new_tokens: usize) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt has no tokens to continue".into()));
        }
        let mut ids = prompt.to_vec();
        for _ in 0..new_tokens.min(self.architecture.max_context().saturating_sub(prompt.len())) {
            let logits = self.forward(&ids)?;
            let last = logits.get(ids.len() - 1)?.to_vec1::<f32>()?;
            ids.push(argmax(&last) as u32);
        }
        Ok(ids.split_off(prompt.len()))
    }

    pub fn display_name(&self) -> String {
        display_name(&self.source)
    }
}

/// The layer a weight belongs to: the first all-digit part of its name (`model.layers.12.mlp.up_proj.weight`,
/// `h.3.attn.c_attn.weight`); None outside the layers.
pub fn layer_of(name: &str) -> Option<usize> {
    name.split('.').find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse().ok())
}

pub fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

pub(crate) fn cpu() -> Device {
    Device::Cpu
}
