//! Configuration -> per-tensor plan -> tier assignment -> quantized model. The chain the CLI and GUI share.

use std::collections::BTreeMap;
use std::time::Instant;

use half::f16;
use rayon::prelude::*;

use super::bits::{BitReport, TensorBits};
use super::config::{QuantConfig, Scope};
use super::method::{self, InputStats, TierSource};
use super::spec::TensorPlan;
use super::stored::QuantizedTensor;
use super::tiers::{thresholds, tier_of};
use crate::error::{Error, Result};
use crate::importance::{self, CalibrationStats, Scores};
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Model, TensorRole, Weights, cpu};

/// What happens to one weight tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Treatment {
    /// Quantized with this plan; `follows_tiers` when the plan is the configuration's tiers (global thresholds
    /// apply to these together).
    Quantize {
        plan: TensorPlan,
        follows_tiers: bool,
    },
    Fp16,
}

pub fn treatments(model: &Model, config: &QuantConfig) -> BTreeMap<String, Treatment> {
    model
        .weights
        .0
        .iter()
        .map(|(name, tensor)| {
            let role = model.architecture.tensor_role(name);
            let treatment = if tensor.rank() != 2 || role == TensorRole::Other {
                Treatment::Fp16
            } else if let Some(plan) = config.overrides.get(name) {
                Treatment::Quantize { plan: plan.clone(), follows_tiers: false }
            } else if config.quantize.includes(role) {
                Treatment::Quantize { plan: config.tier_plan(), follows_tiers: true }
            } else if config.keep_bits == 16 {
                Treatment::Fp16
            } else {
                let plan = TensorPlan::uniform(config.keep_bits, config.group_size, config.grid)
                    .with_quantizer(config.quantizer);
                Treatment::Quantize { plan, follows_tiers: false }
            };
            (name.clone(), treatment)
        })
        .collect()
}

/// Tensors whose plan has several tiers, so they need importance scores.
pub fn needs_scores(treatments: &BTreeMap<String, Treatment>) -> Vec<String> {
    treatments
        .iter()
        .filter(|(_, t)| matches!(t, Treatment::Quantize { plan, .. } if plan.tiers.len() > 1))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The result of quantizing a model: packed tensors, fp16 tensors, and the bill.
pub struct Quantized {
    pub config: QuantConfig,
    pub tensors: BTreeMap<String, QuantizedTensor>,
    pub fp16: BTreeMap<String, (Vec<usize>, Vec<f16>)>,
    pub bits: BitReport,
    pub quantize_seconds: f64,
}

impl Quantized {
    /// Dequantized f32 weights for evaluation ("fake quantization"), keeping the result.
    pub fn weights(&self) -> Result<Weights> {
        Quantized {
            config: self.config.clone(),
            tensors: self.tensors.clone(),
            fp16: self.fp16.clone(),
            bits: self.bits.clone(),
            quantize_seconds: self.quantize_seconds,
        }
        .into_weights()
    }

    /// Dequantized weights, consuming the result (no copy of the large buffers).
    pub fn into_weights(self) -> Result<Weights> {
        let mut weights = fp16_weights(self.fp16)?;
        // Tensor by tensor across threads; each tensor's codes are freed once it is dequantized.
        let dequantized: Vec<(String, candle_core::Tensor)> = self
            .tensors
            .into_par_iter()
            .map(|(name, q)| {
                let tensor = q.to_tensor(&name)?;
                Ok((name, tensor))
            })
            .collect::<Result<_>>()?;
        for (name, tensor) in dequantized {
            weights.insert(name, tensor);
        }
        Ok(weights)
    }
}

/// The fp16 tensors of a result as f32 weights.
pub fn fp16_weights(fp16: BTreeMap<String, (Vec<usize>, Vec<f16>)>) -> Result<Weights> {
    let mut weights = Weights::default();
    for (name, (shape, values)) in fp16 {
        let values: Vec<f32> = values.iter().map(|v| v.to_f32()).collect();
        weights.insert(name, candle_core::Tensor::from_vec(values, shape.as_slice(), &cpu())?);
    }
    Ok(weights)
}

/// Importance (with calibration when the method needs it), then quantization. With per-tensor thresholds each
/// tensor goes importance -> tiers -> quantizer on its own, so the scores of the whole model never sit in memory.
pub fn quantize_model(
    model: &Model,
    config: &QuantConfig,
    calibration: Option<&CalibrationStats>,
    job: &Job,
) -> Result<Quantized> {
    config.validate()?;
    check_overrides(model, config)?;
    importance::check_inputs(&config.importance, calibration)?;
    let start = Instant::now();
    let treatments = treatments(model, config);
    let scores = if config.scope == Scope::Global && config.tiers.len() > 1 {
        Some(importance::compute(model, &needs_scores(&treatments), &config.importance, calibration, job)?)
    } else {
        None
    };
    let mut quantized = apply(model, config, &treatments, scores.as_ref(), calibration, job)?;
    quantized.quantize_seconds = start.elapsed().as_secs_f64();
    Ok(quantized)
}

/// Assigns tiers and quantizes every tensor. Scores missing from `scores` are computed on the way.
pub fn apply(
    model: &Model,
    config: &QuantConfig,
    treatments: &BTreeMap<String, Treatment>,
    scores: Option<&Scores>,
    calibration: Option<&CalibrationStats>,
    job: &Job,
) -> Result<Quantized> {
    let start = Instant::now();
    let global = match scores {
        Some(scores) => global_thresholds(model, config, treatments, scores)?,
        None => None,
    };
    let total = treatments.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let results = treatments
        .par_iter()
        .map(|(name, treatment)| {
            job.checkpoint()?;
            let tensor = model.weights.get(name)?.contiguous()?;
            // The weights are read in place: a copy of the 28M-weight embedding alone costs ~0.1 s of page faults.
            let outcome = with_f32_slice(&tensor, |values| -> Result<Treated> {
                Ok(match treatment {
                    Treatment::Fp16 => {
                        Treated::Fp16(tensor.dims().to_vec(), values.iter().map(|v| f16::from_f32(*v)).collect())
                    }
                    Treatment::Quantize { plan, follows_tiers } => {
                        let (rows, cols) = tensor.dims2()?;
                        let given = scores.and_then(|s| s.0.get(name)).map(Vec::as_slice);
                        let computed = (given.is_none() && plan.tiers.len() > 1)
                            .then(|| importance::tensor_scores(&config.importance, name, values, rows, calibration));
                        let tensor_scores = given.or(computed.as_deref());
                        let th = if *follows_tiers { global.as_deref() } else { None };
                        let tiers = assign(plan, rows, cols, tensor_scores, th)?;
                        let inputs = InputStats::of(calibration, name, cols);
                        Treated::Quantized(method::for_plan(plan).quantize(values, rows, cols, plan, &tiers, inputs))
                    }
                })
            })??;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            job.report("quantize", n, total, None);
            Ok((name.clone(), outcome))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut tensors = BTreeMap::new();
    let mut fp16 = BTreeMap::new();
    for (name, outcome) in results {
        match outcome {
            Treated::Quantized(q) => {
                tensors.insert(name, q);
            }
            Treated::Fp16(shape, values) => {
                fp16.insert(name, (shape, values));
            }
        }
    }
    check_storable(&tensors, &fp16)?;
    let bits = bit_report(model.param_count(), &tensors, &fp16);
    Ok(Quantized { config: config.clone(), tensors, fp16, bits, quantize_seconds: start.elapsed().as_secs_f64() })
}

/// One tensor after `apply`.
enum Treated {
    Quantized(QuantizedTensor),
    Fp16(Vec<usize>, Vec<f16>),
}

/// Every per-tensor plan of the configuration names a matrix of this model that can be quantized.
pub fn check_overrides(model: &Model, config: &QuantConfig) -> Result<()> {
    for name in config.overrides.keys() {
        let problem = match model.weights.0.get(name) {
            None => "the model has no such tensor",
            Some(t) if t.rank() != 2 || model.architecture.tensor_role(name) == TensorRole::Other => {
                "it is not a weight matrix that can be quantized"
            }
            Some(_) => continue,
        };
        return Err(Error::InvalidArgument(format!("the configuration has a plan for `{name}`, but {problem}")));
    }
    Ok(())
}

/// Values beyond f16's range (|w| > 65504) become infinite in f16 block parameters and 16-bit weights, and a
/// model written with them would not load again: refused here, before anything is written.
fn check_storable(
    tensors: &BTreeMap<String, QuantizedTensor>,
    fp16: &BTreeMap<String, (Vec<usize>, Vec<f16>)>,
) -> Result<()> {
    let bad_quantized = tensors
        .iter()
        .find(|(_, q)| !q.squared_error.is_finite() || q.params.iter().any(|p| !p.is_finite()))
        .map(|(n, _)| n);
    let bad_fp16 = || fp16.iter().find(|(_, (_, v))| v.iter().any(|x| !x.is_finite())).map(|(n, _)| n);
    match bad_quantized.or_else(bad_fp16) {
        Some(name) => Err(Error::InvalidArgument(format!(
            "tensor `{name}` holds values beyond f16's range (|w| > 65504), which this plan stores in f16 \
             (block parameters or 16-bit weights): the result would not load again, so nothing is written"
        ))),
        None => Ok(()),
    }
}

pub fn bit_report(
    params: usize,
    tensors: &BTreeMap<String, QuantizedTensor>,
    fp16: &BTreeMap<String, (Vec<usize>, Vec<f16>)>,
) -> BitReport {
    let per_tensor: Vec<(usize, TensorBits)> = tensors.values().map(|q| (q.rows * q.cols, TensorBits::of(q))).collect();
    let fp16_params = fp16.values().map(|(_, v)| v.len()).sum();
    BitReport::new(params, &per_tensor, fp16_params)
}

/// Where each weight's tier comes from: per-weight plans compare scores with thresholds while quantizing,
/// coarser granularities assign each unit here.
pub fn assign<'a>(
    plan: &TensorPlan,
    rows: usize,
    cols: usize,
    scores: Option<&'a [f32]>,
    global: Option<&[f32]>,
) -> Result<TierSource<'a>> {
    if plan.tiers.len() == 1 {
        return Ok(TierSource::Single);
    }
    let scores = scores.ok_or_else(|| Error::InvalidArgument("a multi-tier plan needs importance scores".into()))?;
    let units = plan.granularity.unit_scores(scores, cols);
    debug_assert_eq!(units.len(), plan.granularity.units(rows, cols));
    let th = match global {
        Some(th) => th.to_vec(),
        None => thresholds(&units, &plan.tiers),
    };
    Ok(match units {
        std::borrow::Cow::Borrowed(_) => TierSource::Scores { scores, thresholds: th },
        std::borrow::Cow::Owned(units) => TierSource::Units(units.iter().map(|s| tier_of(*s, &th)).collect()),
    })
}

/// With global scope, one set of thresholds over the units of every tensor that follows the tiers.
fn global_thresholds(
    model: &Model,
    config: &QuantConfig,
    treatments: &BTreeMap<String, Treatment>,
    scores: &Scores,
) -> Result<Option<Vec<f32>>> {
    if config.scope != Scope::Global || config.tiers.len() == 1 {
        return Ok(None);
    }
    let mut all_units: Vec<f32> = Vec::new();
    for (name, t) in treatments {
        if let Treatment::Quantize { follows_tiers: true, .. } = t {
            let (_, cols) = model.weights.dims2(name)?;
            let s = scores.0.get(name).ok_or_else(|| Error::InvalidArgument(format!("no scores for {name}")))?;
            all_units.extend_from_slice(&config.granularity.unit_scores(s, cols));
        }
    }
    if all_units.is_empty() {
        return Ok(None);
    }
    Ok(Some(thresholds(&all_units, &config.tiers)))
}
