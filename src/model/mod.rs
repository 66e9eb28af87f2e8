//! A language model as named f32 weights + architecture + tokenizer.
//!
//! Weights keep Hugging Face names and the `[out, in]` layout of `nn.Linear` for every matrix (GPT-2's Conv1D
//! weights are transposed on load), so the quantizer sees one convention whatever the source format.

pub mod arch;
pub mod layers;
pub mod tensor_io;
pub mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};

pub use arch::gpt2::Gpt2Config;
pub use arch::llama::LlamaConfig;
pub use arch::{Arch, Architecture};
pub use layers::gemm;
pub use tensor_io::tensor_to_vec;
pub use weights::{Layout, Mapped, Stored, Weights};

use crate::error::{Error, Result};
use rayon::prelude::*;

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

/// The windows' hidden states that calibration keeps in memory between layers; beyond this they go to a scratch
/// file (64 windows of 128 tokens are 19 MB for SmolLM2 and 134 MB for an 8B model).
const STATES_IN_MEMORY: usize = 256 << 20;

/// Windows' hidden states between layers: in memory, or in an unnamed scratch file in the temporary folder,
/// mapped, where a window's state is copied in and out as its layer runs.
enum States {
    Memory(Vec<Tensor>),
    File { map: memmap2::MmapMut, shapes: Vec<Vec<usize>>, starts: Vec<usize>, end: usize },
}

impl States {
    /// Room for `windows` states of `bytes` in all, in memory when that is at most `in_memory`.
    fn new(windows: usize, bytes: usize, in_memory: usize) -> Result<States> {
        if bytes <= in_memory {
            return Ok(States::Memory(Vec::with_capacity(windows)));
        }
        let scratch =
            |e| Error::scratch(&format!("the scratch file of calibration's hidden states ({bytes} bytes)"), e);
        let file = tempfile::tempfile().map_err(scratch)?;
        file.set_len(bytes as u64).map_err(scratch)?;
        // SAFETY: the file is unnamed and ours alone; nothing else can change its length or contents.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(scratch)?;
        Ok(States::File { map, shapes: Vec::new(), starts: Vec::new(), end: 0 })
    }

    fn get(&self, window: usize) -> Result<Tensor> {
        match self {
            States::Memory(states) => Ok(states[window].clone()),
            States::File { map, shapes, starts, .. } => {
                let count: usize = shapes[window].iter().product();
                let bytes = &map[starts[window]..starts[window] + 4 * count];
                Ok(Tensor::from_slice(bytemuck::cast_slice::<u8, f32>(bytes), shapes[window].as_slice(), &cpu())?)
            }
        }
    }

    /// Sets the state of `window`: the next one in order, or one already set (of the same size).
    fn set(&mut self, window: usize, x: &Tensor) -> Result<()> {
        match self {
            States::Memory(states) if window == states.len() => states.push(x.clone()),
            States::Memory(states) => states[window] = x.clone(),
            States::File { map, shapes, starts, end } => {
                let values = tensor_io::tensor_to_vec(x)?;
                if window == shapes.len() {
                    shapes.push(x.dims().to_vec());
                    starts.push(*end);
                    *end += 4 * values.len();
                }
                let start = starts[window];
                let bytes = map.get_mut(start..start + 4 * values.len()).ok_or_else(|| {
                    Error::Inconsistent(format!("window {window}'s hidden state outgrew its scratch space"))
                })?;
                bytes.copy_from_slice(bytemuck::cast_slice(&values));
            }
        }
        Ok(())
    }
}

/// Sees `(weight name, input [T, in])` for every matrix multiplication of a forward pass.
pub type Observer<'a> = dyn FnMut(&str, &Tensor) -> Result<()> + 'a;

/// Layers whose f32 copy would be larger than this are not cached: each matrix is decoded when used (once per
/// window instead of once per group of windows, about a tenth more time for an 8B model's layer).
const LAYER_CACHE_BYTES: usize = 512 << 20;

/// f32 copies of one layer's weights that are not held in f32, made together (in parallel) when the forward
/// pass first asks for one of them and dropped when it asks for another layer's. Windows that go through the
/// model together (layer by layer) then decode each weight once, while at most one layer exists in f32.
#[derive(Default)]
pub struct LayerCache(Mutex<BTreeMap<String, Tensor>>);

impl LayerCache {
    fn get(&self, name: &str) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(name).cloned()
    }

    pub fn clear(&self) {
        self.replace(Vec::new());
    }

    /// Replaces the cached layer by `made` (made outside the lock: decoding runs in parallel on rayon, and a
    /// thread waiting for it may pick up another task that asks for a weight).
    fn replace(&self, made: Vec<(String, Tensor)>) {
        let mut cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.clear();
        cache.extend(made);
    }
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

    /// The rows `ids` of the matrix `name` (an embedding lookup).
    pub fn gather(&self, name: &str, ids: &[u32]) -> Result<Tensor> {
        self.model.gather(name, ids)
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
    /// The layer being run, in f32 (for weights held otherwise).
    pub made: Arc<LayerCache>,
}

impl Model {
    /// Logits `[ids.len(), vocab]` for every position.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let hidden = self.forward_hidden(&[ids])?.pop().expect("one window");
        self.logits(&hidden, &self.head()?)
    }

    /// The forward pass of `windows` up to the head, showing every matrix's input (the head's too) to `observer`:
    /// calibration statistics, which need no logits. The windows go through a layer at a time, and `after_layer`
    /// hears when each layer is done (so statistics can be finished and let go layer by layer).
    pub fn observe(
        &self,
        windows: &[&[u32]],
        observer: &mut Observer,
        after_layer: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        self.observe_within(windows, observer, after_layer, STATES_IN_MEMORY)
    }

    fn observe_within(
        &self,
        windows: &[&[u32]],
        observer: &mut Observer,
        after_layer: &mut dyn FnMut(usize) -> Result<()>,
        states_in_memory: usize,
    ) -> Result<()> {
        let linears = Linears { model: self, observer: Some(std::cell::RefCell::new(observer)) };
        let states = self.run_layers(&linears, windows, after_layer, states_in_memory)?;
        for i in 0..windows.len() {
            let hidden = self.architecture.final_norm(&linears, &states.get(i)?)?;
            (linears.observer.as_ref().expect("set above").borrow_mut())(self.architecture.head_name(), &hidden)?;
        }
        Ok(())
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
    /// go through the model together, layer by layer, so each layer's weights are decoded once per call.
    pub fn forward_hidden(&self, windows: &[&[u32]]) -> Result<Vec<Tensor>> {
        self.hidden_states(&Linears::of(self), windows, &mut |_| Ok(()))
    }

    /// `forward_hidden`, calling `after_layer` with the number of layers done (for progress, or to stop).
    pub fn forward_hidden_reporting(
        &self,
        windows: &[&[u32]],
        after_layer: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Tensor>> {
        self.hidden_states(&Linears::of(self), windows, after_layer)
    }

    /// The head weight `[vocab, hidden]`.
    pub fn head(&self) -> Result<Tensor> {
        self.weight(self.architecture.head_name())
    }

    /// The weight `name` in f32, held or made (a layer's weights through the layer cache).
    pub fn weight(&self, name: &str) -> Result<Tensor> {
        if let Some(stored) = self.weights.0.get(name)
            && stored.is_f32()
        {
            return stored.to_f32();
        }
        let Some(prefix) = layer_prefix(name) else { return self.weights.get(name) };
        if let Some(made) = self.made.get(name) {
            return Ok(made);
        }
        let layer: Vec<&String> =
            self.weights.iter().filter(|(n, t)| !t.is_f32() && n.starts_with(prefix)).map(|(n, _)| n).collect();
        let f32_bytes: usize = layer.iter().filter_map(|n| self.weights.0.get(*n)).map(|t| t.elem_count() * 4).sum();
        if f32_bytes > LAYER_CACHE_BYTES {
            // A layer this large (an 8B model's is 0.87 GB) is decoded a matrix at a time, each time it is used.
            return self.weights.get(name);
        }
        let made = layer.par_iter().map(|&n| Ok((n.clone(), self.weights.get(n)?))).collect::<Result<Vec<_>>>()?;
        let wanted = made.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
        self.made.replace(made);
        wanted.map_or_else(|| self.weights.get(name), Ok)
    }

    /// The rows `ids` of the matrix `name` (an embedding lookup) in f32, without making the whole matrix when
    /// it is held.
    pub fn gather(&self, name: &str, ids: &[u32]) -> Result<Tensor> {
        self.weights.stored(name)?.gather(ids)
    }

    /// Rows `rows` of the matrix `name` in f32 (the LM head a block of the vocabulary at a time).
    pub fn weight_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Tensor> {
        self.weights.stored(name)?.rows(rows)
    }

    /// Whether the forward pass makes layers' weights as it goes (decoding or dequantizing them): evaluation
    /// then sends windows through together so each layer is made once for all of them.
    pub fn makes_layers(&self) -> bool {
        self.weights.0.iter().any(|(name, t)| !t.is_f32() && layer_of(name).is_some())
    }

    fn hidden_states(
        &self,
        linears: &Linears,
        windows: &[&[u32]],
        after_layer: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Tensor>> {
        let states = self.run_layers(linears, windows, after_layer, usize::MAX)?;
        (0..windows.len()).map(|i| self.architecture.final_norm(linears, &states.get(i)?)).collect()
    }

    /// The windows through every layer, before the final norm. The windows advance together one layer at a time,
    /// so each layer is decoded once; their states stay in memory up to `states_in_memory` bytes, beyond it in a
    /// scratch file.
    fn run_layers(
        &self,
        linears: &Linears,
        windows: &[&[u32]],
        after_layer: &mut dyn FnMut(usize) -> Result<()>,
        states_in_memory: usize,
    ) -> Result<States> {
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
        let tokens: usize = windows.iter().map(|w| w.len()).sum();
        let mut states = States::Memory(Vec::new());
        for (w, ids) in windows.iter().enumerate() {
            let x = arch.embed(linears, ids)?;
            if w == 0 {
                // The first embedding gives the width, and so the size of all the states.
                let bytes = tokens.saturating_mul(x.dims().last().copied().unwrap_or(0)).saturating_mul(4);
                states = States::new(windows.len(), bytes, states_in_memory)?;
            }
            states.set(w, &x)?;
        }
        for i in 0..arch.num_layers() {
            for w in 0..windows.len() {
                let x = arch.layer(linears, i, &states.get(w)?)?;
                states.set(w, &x)?;
            }
            after_layer(i + 1)?;
        }
        // The last layer's f32 copy is of no use to the head, nor to the next call (which starts at layer 0).
        self.made.clear();
        Ok(states)
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
        Model { weights, made: Arc::default(), ..self.clone() }
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

/// The name prefix of the layer a weight belongs to: `model.layers.12.` of `model.layers.12.mlp.up_proj.weight`,
/// `h.3.` of `h.3.attn.c_attn.weight`; None outside the layers (`model.embed_tokens.weight`).
pub fn layer_prefix(name: &str) -> Option<&str> {
    let mut end = 0;
    for part in name.split('.') {
        end += part.len() + 1;
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            return Some(&name[..end]);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    /// Calibration's windows see the same inputs whether their states between layers stay in memory or go
    /// through the scratch file.
    #[test]
    fn states_in_a_scratch_file_are_the_states_in_memory() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/stories260k");
        let model = crate::load(&path).unwrap();
        let windows: Vec<Vec<u32>> = (0..3u32).map(|w| (0..40 + w).map(|i| (i * 13 + w * 7) % 512).collect()).collect();
        let windows: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
        let seen = |states_in_memory: usize| {
            let mut inputs: Vec<(String, Vec<f32>)> = Vec::new();
            let mut observer = |name: &str, x: &candle_core::Tensor| {
                inputs.push((name.to_string(), super::tensor_to_vec(x)?));
                Ok(())
            };
            let mut layers = 0;
            let mut count_layer = |_| {
                layers += 1;
                Ok(())
            };
            model.observe_within(&windows, &mut observer, &mut count_layer, states_in_memory).unwrap();
            assert_eq!(layers, model.architecture.num_layers());
            inputs
        };
        let (in_memory, in_file) = (seen(usize::MAX), seen(0));
        assert!(in_memory.len() > 10 * windows.len());
        assert!(in_memory == in_file, "the inputs differ");
    }

    #[test]
    fn layer_prefixes_follow_the_numbered_part() {
        assert_eq!(super::layer_prefix("model.layers.12.mlp.up_proj.weight"), Some("model.layers.12."));
        assert_eq!(super::layer_prefix("h.3.attn.c_attn.weight"), Some("h.3."));
        assert_eq!(super::layer_prefix("model.embed_tokens.weight"), None);
        assert_eq!(super::layer_prefix("lm_head.weight"), None);
    }
}
