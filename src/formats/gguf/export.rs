//! A model written as a GGUF file that llama.cpp runs: every matrix encoded with the block type its plan gives
//! (importance-weighted when calibration statistics are given), vectors in f32, tensors renamed and laid out as
//! llama.cpp's converter does. Metadata comes from the source GGUF (all of it, with the file type updated) or,
//! for Hugging Face inputs, from the architecture and the tokenizer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;

use super::write::{GgufTensor, write};
use crate::error::{Error, Result};
use crate::importance::CalibrationStats;
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Model, SourceFormat, Stored, Weights};
use crate::quant::ggml::preset::{self, ModelFacts, Preset, TensorShape};
use crate::quant::ggml::{self, BlockType};

/// The metadata key that marks a file as ours (and names the plan that made it).
pub const PLAN_KEY: &str = "nash_swarm.plan";

/// A block type for every tensor (our names), and what to call the mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufPlan {
    pub types: BTreeMap<String, BlockType>,
    /// `general.file_type` (llama_ftype).
    pub file_type: u32,
    pub label: String,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct GgufReport {
    pub file_bytes: u64,
    /// Bytes of tensor data alone (no header, no padding).
    pub tensor_bytes: u64,
    pub params: usize,
    /// Weights per block type.
    pub weights_by_type: BTreeMap<BlockType, usize>,
}

impl GgufReport {
    /// Bits per parameter of the tensor data: the figure llama.cpp prints as BPW.
    pub fn tensor_bpw(&self) -> f64 {
        self.tensor_bytes as f64 * 8.0 / self.params as f64
    }
    /// Each type's share of the weights, largest first: "Q5_0 62%, Q8_0 21%, ...".
    pub fn type_shares(&self) -> String {
        let total: usize = self.weights_by_type.values().sum();
        let mut shares: Vec<(&BlockType, &usize)> = self.weights_by_type.iter().collect();
        shares.sort_by(|a, b| b.1.cmp(a.1));
        let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
        shares.iter().map(|(t, n)| format!("{t} {:.0}%", pct(**n))).collect::<Vec<_>>().join(", ")
    }
    /// Bits per parameter of the whole file, header and tokenizer included.
    pub fn file_bpw(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / self.params as f64
    }
}

/// The tensors of `model` in the order llama.cpp writes them (embedding, layers in order, final norm, head),
/// with their GGUF names. Errors name a tensor the architecture cannot write.
fn gguf_order(model: &Model) -> Result<Vec<(String, String)>> {
    model.architecture.gguf_metadata().map_err(|why| refused(model, why))?;
    if model.format == SourceFormat::Gguf {
        // A tensor we do not read (e.g. Llama 3.1's rope_freqs.weight) would be lost, and the file would run as
        // another model.
        let header = super::read_header(&model.source)?;
        let extras = extra_names(model);
        let lost = |name: &str| model.architecture.from_gguf_name(name).is_none() && !extras.iter().any(|e| e == name);
        if let Some(t) = header.tensors.iter().find(|t| lost(&t.name)) {
            return Err(refused(model, format!("its tensor `{}` is not one we read, so it would be lost", t.name)));
        }
    }
    let mut named = Vec::new();
    for name in model.weights.0.keys() {
        let gguf = model.architecture.to_gguf_name(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tensor `{name}` has no GGUF name for the {} architecture",
                model.architecture.name()
            ))
        })?;
        named.push((name.clone(), gguf));
    }
    let rank = |gguf: &str| match gguf.strip_prefix("blk.").and_then(|r| r.split('.').next()?.parse::<usize>().ok()) {
        Some(layer) => (1, layer),
        None if gguf.starts_with("token_embd") => (0, 0),
        None => (2, 0),
    };
    named.sort_by(|a, b| rank(&a.1).cmp(&rank(&b.1)).then_with(|| a.1.cmp(&b.1)));
    Ok(named)
}

/// The GGUF names of the architecture's extra tensors (written for llama.cpp, not weights of ours).
fn extra_names(model: &Model) -> Vec<String> {
    model.architecture.gguf_extra_tensors().into_iter().map(|(name, _)| name).collect()
}

/// Whether every tensor of `model` has a GGUF form (checked before long work).
pub fn check_writable(model: &Model) -> Result<()> {
    gguf_order(model).map(|_| ())
}

/// The plan llama-quantize makes for `preset` on this model.
pub fn preset_plan(model: &Model, preset: Preset, has_imatrix: bool) -> Result<GgufPlan> {
    let order = gguf_order(model)?;
    let shapes: Vec<(String, Vec<usize>)> = order
        .iter()
        .map(|(ours, gguf)| Ok((gguf.clone(), model.weights.dims(ours)?.to_vec())))
        .collect::<Result<_>>()?;
    let tensors: Vec<TensorShape> = shapes.iter().map(|(n, s)| TensorShape { name: n, shape: s }).collect();
    let facts = ModelFacts {
        layers: model.architecture.num_layers(),
        query_groups: model.architecture.query_groups(),
        has_imatrix,
    };
    let types = preset::tensor_types(preset, &tensors, &facts);
    let types = order.into_iter().map(|(ours, _)| ours).zip(types).collect();
    Ok(GgufPlan { types, file_type: preset.file_type, label: preset.name.to_string() })
}

/// Encodes every tensor and writes the file. `stats` (E[x²] per input column) selects importance-weighted
/// encoding for the matrices it covers.
pub fn export(
    model: &Model,
    plan: &GgufPlan,
    stats: Option<&CalibrationStats>,
    out: &Path,
    job: &Job,
) -> Result<GgufReport> {
    let metadata = metadata(model, plan)?;
    let tensors = encode_tensors(model, plan, stats, job)?;
    job.report("write", 0, 1, None);
    let file_bytes = write(out, &metadata, &tensors)?;
    Ok(GgufReport { file_bytes, ..tensor_report(model, &tensors) })
}

/// The tensor bytes of `tensors` against all of `model`'s parameters (no file: `file_bytes` is 0).
pub fn tensor_report(model: &Model, tensors: &[GgufTensor]) -> GgufReport {
    let mut weights_by_type = BTreeMap::new();
    for t in tensors {
        *weights_by_type.entry(t.ty).or_insert(0) += t.shape.iter().product::<usize>();
    }
    let tensor_bytes = tensors.iter().map(|t| t.data.len() as u64).sum();
    GgufReport { file_bytes: 0, tensor_bytes, params: model.param_count(), weights_by_type }
}

/// Every tensor of `model` in GGUF order, name and layout, encoded as `plan` says.
pub fn encode_tensors(
    model: &Model,
    plan: &GgufPlan,
    stats: Option<&CalibrationStats>,
    job: &Job,
) -> Result<Vec<GgufTensor>> {
    let order = gguf_order(model)?;
    let mut tensors = Vec::with_capacity(order.len());
    for (i, (ours, gguf)) in order.iter().enumerate() {
        job.checkpoint()?;
        job.report("encode", i as u64, order.len() as u64, None);
        let tensor = model.architecture.to_gguf_layout(ours, model.weights.get(ours)?.clone())?.contiguous()?;
        let shape = tensor.dims().to_vec();
        let ty = match plan.types.get(ours) {
            Some(ty) => *ty,
            None if shape.len() < 2 => BlockType::F32,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "the GGUF plan `{}` gives no type for `{ours}`",
                    plan.label
                )));
            }
        };
        let cols = *shape.last().unwrap_or(&1);
        let importance = stats.and_then(|s| s.column_weights(ours, cols)).filter(|_| shape.len() == 2);
        let data = with_f32_slice(&tensor, |values| {
            ggml::encode(ty, values, cols, importance)
                .map_err(|e| Error::InvalidArgument(format!("tensor `{ours}` as {ty}: {e}")))
        })??;
        tensors.push(GgufTensor { name: gguf.clone(), shape, ty, data });
    }
    for (name, tensor) in model.architecture.gguf_extra_tensors() {
        let shape = tensor.dims().to_vec();
        let data = with_f32_slice(&tensor, |values| ggml::encode(BlockType::F32, values, values.len(), None))?
            .map_err(|e| Error::InvalidArgument(format!("tensor `{name}`: {e}")))?;
        tensors.push(GgufTensor { name, shape, ty: BlockType::F32, data });
    }
    Ok(tensors)
}

/// The weights a GGUF reader gets from `tensors`: renamed, left encoded and decoded when used (a layer at a time
/// in evaluation), in our layout. What evaluating an export without writing it uses; equal to loading the
/// written file, and never a whole-model f32 copy.
pub fn encoded_weights(model: &Model, tensors: Vec<GgufTensor>) -> Result<Weights> {
    let extras = extra_names(model);
    let mut weights = BTreeMap::new();
    for t in tensors.into_iter().filter(|t| !extras.contains(&t.name)) {
        let range = 0..t.data.len();
        let data: crate::memory::SharedBytes = Arc::new(t.data);
        let made = super::gguf_tensor(&model.architecture, &t.name, t.ty, t.shape, data, range)
            .ok_or_else(|| Error::InvalidArgument(format!("GGUF tensor `{}` has no name of ours", t.name)))?;
        let (ours, mapped) = made?;
        weights.insert(ours, Stored::Mapped(mapped));
    }
    Ok(Weights(weights))
}

/// The file's metadata: the source GGUF's (file type, plan and quantization version replaced, alignment
/// dropped), or the architecture's and the tokenizer's for other sources.
fn metadata(model: &Model, plan: &GgufPlan) -> Result<Vec<(String, Value)>> {
    let replaced = ["general.file_type", "general.quantization_version", "general.alignment", PLAN_KEY];
    let mut metadata: Vec<(String, Value)> = match model.format {
        SourceFormat::Gguf => super::read_header(&model.source)?.metadata,
        SourceFormat::HuggingFace | SourceFormat::Packed => from_architecture(model)?,
    };
    // The source's imatrix keys would describe a calibration this file did not use.
    metadata.retain(|(k, _)| !replaced.contains(&k.as_str()) && !k.starts_with("quantize.imatrix."));
    let general = metadata.iter().take_while(|(k, _)| k.starts_with("general.")).count();
    let ours = [
        ("general.file_type", Value::U32(plan.file_type)),
        ("general.quantization_version", Value::U32(2)),
        (PLAN_KEY, Value::String(plan.label.clone())),
    ];
    metadata.splice(general..general, ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    Ok(metadata)
}

fn refused(model: &Model, why: String) -> Error {
    Error::InvalidArgument(format!("{} cannot be written as GGUF: {why}", model.source.display()))
}

fn from_architecture(model: &Model) -> Result<Vec<(String, Value)>> {
    let refused = |why: String| refused(model, why);
    let (name, keys) = model.architecture.gguf_metadata().map_err(refused)?;
    let mut metadata = vec![("general.architecture".to_string(), Value::String(name.into()))];
    let stem = model.source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    metadata.push(("general.name".into(), Value::String(stem)));
    metadata.extend(keys);
    let eos = source_eos(model);
    let tokenizer =
        super::tokenizer::to_metadata(&model.tokenizer, model.architecture.vocab_size(), model.bos_token_id, eos)
            .map_err(refused)?;
    metadata.extend(tokenizer);
    let tokenizer_config = source_json(model, "tokenizer_config.json");
    for (key, gguf_key) in
        [("add_bos_token", "tokenizer.ggml.add_bos_token"), ("add_eos_token", "tokenizer.ggml.add_eos_token")]
    {
        if let Some(flag) = tokenizer_config.as_ref().and_then(|c| c[key].as_bool()) {
            metadata.push((gguf_key.to_string(), Value::Bool(flag)));
        }
    }
    Ok(metadata)
}

/// A JSON file of a Hugging Face source folder, when it has one that parses.
fn source_json(model: &Model, file: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(model.source.join(file)).ok()?).ok()
}

/// The end-of-sequence token of a Hugging Face folder's `config.json` (the first, when it lists several).
fn source_eos(model: &Model) -> Option<u32> {
    let config = source_json(model, "config.json")?;
    let eos = &config["eos_token_id"];
    eos.as_u64().or_else(|| eos.as_array()?.first()?.as_u64()).and_then(|id| u32::try_from(id).ok())
}

/// Whether `path` is a GGUF file we wrote (replaced by a new export without `--force`).
pub fn is_our_gguf(path: &Path) -> bool {
    super::read_header(path).is_ok_and(|h| h.metadata.iter().any(|(k, _)| k == PLAN_KEY))
}
