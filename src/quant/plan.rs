//! Configuration -> per-tensor plan -> tier assignment -> quantized model. The chain the CLI and GUI share.

use std::collections::BTreeMap;
use std::time::Instant;

use half::f16;
use rayon::prelude::*;

use super::bits::{BitReport, TensorBits};
use super::config::{QuantConfig, Scope};
use super::method::{self, InputStats, TierSource};
use super::spec::{GroupSize, TensorPlan};
use super::stored::{QuantizedTensor, RowAccess};
use super::tiers::{Granularity, thresholds, thresholds_streamed, tier_of};
use crate::error::{Error, Result};
use crate::importance::{self, CalibrationStats};
use crate::job::Job;
use crate::model::{Model, Stored, TensorRole, Weights, cpu};

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

    /// `model` with these weights: fp16 tensors held as f32, quantized ones as their codes, dequantized a layer at
    /// a time (through the model's layer cache) and the head and embedding a few rows at a time.
    pub fn into_model(self, model: &Model) -> Result<Model> {
        let mut weights = fp16_weights(self.fp16)?;
        for (name, tensor) in self.tensors {
            weights.insert_stored(name, Stored::Packed(std::sync::Arc::new(RowAccess::new(tensor))));
        }
        Ok(model.with_weights(weights))
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
    let mut kept = Collector::default();
    let (bits, seconds) = quantize_each(model, config, calibration, job, |name, treated| {
        kept.take(name, treated);
        Ok(())
    })?;
    let Collector { tensors, fp16, .. } = kept;
    Ok(Quantized { config: config.clone(), tensors, fp16, bits, quantize_seconds: seconds })
}

/// Every tensor whole, as `quantize_model` keeps them: pieces joined as they come.
#[derive(Default)]
struct Collector {
    tensors: BTreeMap<String, QuantizedTensor>,
    fp16: BTreeMap<String, (Vec<usize>, Vec<f16>)>,
    /// The pieces so far of the matrix whose last piece has not come yet.
    open: Vec<QuantizedTensor>,
}

impl Collector {
    fn take(&mut self, name: &str, treated: Treated) {
        match treated {
            Treated::Quantized { tensor, rows, of_rows } => {
                self.open.push(tensor);
                if rows.end == of_rows {
                    let pieces = std::mem::take(&mut self.open);
                    self.tensors.insert(name.to_string(), QuantizedTensor::join_rows(pieces));
                }
            }
            Treated::Fp16 { shape, values, .. } => {
                let entry = self.fp16.entry(name.to_string()).or_insert((shape, Vec::new()));
                entry.1.extend_from_slice(&values);
            }
        }
    }
}

/// `quantize_model`, handing each tensor to `sink` (in name order) as soon as it is made instead of keeping the
/// result: what an export streams to its file. A large single-tier or f16 tensor comes in pieces of rows, in
/// order, each a whole number of bytes of codes but the last. Returns the bit report and the seconds it took.
pub fn quantize_each(
    model: &Model,
    config: &QuantConfig,
    calibration: Option<&CalibrationStats>,
    job: &Job,
    sink: impl FnMut(&str, Treated) -> Result<()>,
) -> Result<(BitReport, f64)> {
    config.validate()?;
    check_overrides(model, config)?;
    importance::check_inputs(&config.importance, calibration)?;
    let start = Instant::now();
    let treatments = treatments(model, config);
    let bits = apply(model, config, &treatments, calibration, job, sink)?;
    Ok((bits, start.elapsed().as_secs_f64()))
}

/// Tensors are quantized in name order, a batch of about this many weights at a time (the batch's tensors in
/// parallel), so only a batch's f32 copies and results exist before `sink` takes them.
const BATCH_WEIGHTS: usize = 1 << 24;

/// Where tensors are cut into pieces of rows (a 128k-token embedding is 1 GB in f32), which happens only where
/// rows quantize independently: every plan but whole-tensor grids, GPTQ, and tiers by mean over the whole tensor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cuts {
    /// Tensors of more weights than this are cut into pieces of about this many weights.
    piece: usize,
    /// A multi-tier tensor whose thresholds are its own is cut only past this many weights: below it, its f32 copy
    /// and scores (8 bytes a weight) cost less than the two extra passes over its scores that cutting needs.
    own_thresholds: usize,
}

const CUTS: Cuts = Cuts { piece: 1 << 22, own_thresholds: 1 << 25 };

/// Assigns tiers and quantizes every tensor, handing each to `sink` in name order. Scores are computed a tensor
/// (or piece) at a time; thresholds that need more than one piece's scores (global scope, a large tensor's own)
/// are found first by streaming passes over the scores, so no more than a piece's scores exist at once.
pub fn apply(
    model: &Model,
    config: &QuantConfig,
    treatments: &BTreeMap<String, Treatment>,
    calibration: Option<&CalibrationStats>,
    job: &Job,
    sink: impl FnMut(&str, Treated) -> Result<()>,
) -> Result<BitReport> {
    apply_cut(CUTS, model, config, treatments, calibration, job, sink)
}

fn apply_cut(
    cuts: Cuts,
    model: &Model,
    config: &QuantConfig,
    treatments: &BTreeMap<String, Treatment>,
    calibration: Option<&CalibrationStats>,
    job: &Job,
    mut sink: impl FnMut(&str, Treated) -> Result<()>,
) -> Result<BitReport> {
    let mut scoring = Scoring {
        model,
        config,
        calibration,
        piece: cuts.piece,
        pool: Default::default(),
        factors: Default::default(),
    };
    let global = scoring.global_thresholds(treatments, job)?;
    let pieces = pieces(cuts, model, treatments, &scoring, global.as_deref(), job)?;
    let moments = pieces.iter().map(|piece| scoring.second_moment(piece)).collect::<Result<Vec<_>>>()?;
    scoring.factors = UpdateFactors::counting(moments.into_iter().flatten());
    let (total, mut done) = (treatments.len() as u64, 0);
    let mut bits = BitTally::default();
    // The pieces made so far of the multi-tier matrix whose last piece has not come yet: its tiers' codes go to
    // several arrays, so it is joined before `sink` takes it.
    let mut open: Vec<QuantizedTensor> = Vec::new();
    for batch in batches(&pieces) {
        job.checkpoint()?;
        let made = batch
            .par_iter()
            .map(|piece| {
                job.checkpoint()?;
                scoring.treat(piece)
            })
            .collect::<Result<Vec<_>>>()?;
        for (piece, treated) in batch.iter().zip(made) {
            job.checkpoint()?;
            let last = piece.rows.end == piece.of_rows;
            let treated = match treated {
                Treated::Quantized { tensor, .. } if tensor.plan.tiers.len() > 1 && !last => {
                    open.push(tensor);
                    continue;
                }
                Treated::Quantized { tensor, rows, of_rows } if tensor.plan.tiers.len() > 1 && !open.is_empty() => {
                    open.push(tensor);
                    let whole = QuantizedTensor::join_rows(std::mem::take(&mut open));
                    Treated::Quantized { tensor: whole, rows: 0..rows.end, of_rows }
                }
                other => other,
            };
            check_storable(piece.name, &treated)?;
            bits.add(&treated);
            sink(piece.name, treated)?;
            if last {
                done += 1;
                job.report("quantize", done, total, None);
            }
        }
    }
    Ok(bits.report(model.param_count()))
}

/// What scoring and quantizing a piece need besides the piece.
struct Scoring<'a> {
    model: &'a Model,
    config: &'a QuantConfig,
    calibration: Option<&'a CalibrationStats>,
    /// Weights scored at once in the streaming passes.
    piece: usize,
    /// Buffers for the pieces' decoded weights and scores, reused from piece to piece.
    pool: crate::memory::Pool,
    factors: UpdateFactors,
}

/// GPTQ's update factors, one per input: made by the first piece that needs one, dropped once the last piece
/// that uses it has it. The pieces of a cut matrix share one, and so do q, k and v (gate and up), so each is
/// factorised once and at most a batch's factors exist at a time.
/// Keyed by the second moment's address, with the number of pieces still to take it.
#[derive(Default)]
struct UpdateFactors(std::sync::Mutex<std::collections::HashMap<usize, (usize, SharedFactor)>>);

type SharedFactor = std::sync::Arc<std::sync::OnceLock<Option<method::gptq::UpdateFactor>>>;

impl UpdateFactors {
    /// Ready for one `take` of each second moment in `uses`.
    fn counting<'h>(uses: impl Iterator<Item = &'h [f32]>) -> Self {
        let mut users = std::collections::HashMap::new();
        for h in uses {
            users.entry(h.as_ptr() as usize).or_insert((0, SharedFactor::default())).0 += 1;
        }
        UpdateFactors(std::sync::Mutex::new(users))
    }

    /// The factor of second moment `h` (`cols × cols`), made now when no piece has made it yet; None when it
    /// cannot be made (GPTQ then falls back to least squares).
    fn take(&self, h: &[f32], cols: usize) -> SharedFactor {
        let shared = {
            let mut users = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // A moment not counted (no piece should ask for one) gets a factor of its own.
            let Some((left, factor)) = users.get_mut(&(h.as_ptr() as usize)) else {
                return std::sync::Arc::new(std::sync::OnceLock::from(method::gptq::update_factor(h, cols)));
            };
            let factor = factor.clone();
            *left -= 1;
            if *left == 0 {
                users.remove(&(h.as_ptr() as usize));
            }
            factor
        };
        // Made outside the lock: other pieces of other inputs go on meanwhile.
        shared.get_or_init(|| method::gptq::update_factor(h, cols));
        shared
    }
}

/// Rows `rows` of a tensor of `of_rows` rows, what happens to them, and the thresholds its tiers use when they
/// were found beforehand (else the piece is the whole tensor and its own scores give them).
struct Piece<'a> {
    name: &'a str,
    treatment: &'a Treatment,
    rows: std::ops::Range<usize>,
    of_rows: usize,
    weights: usize,
    thresholds: Option<std::sync::Arc<Vec<f32>>>,
}

/// Every tensor as one piece, or as pieces of rows when it is large and its rows quantize independently.
fn pieces<'a>(
    cuts: Cuts,
    model: &Model,
    treatments: &'a BTreeMap<String, Treatment>,
    scoring: &Scoring,
    global: Option<&[f32]>,
    job: &Job,
) -> Result<Vec<Piece<'a>>> {
    let mut pieces = Vec::new();
    for (name, treatment) in treatments {
        let dims = model.weights.dims(name)?;
        let rows = dims.first().copied().unwrap_or(1).max(1);
        let count: usize = dims.iter().product();
        let cols = count / rows;
        let large = count > cuts.piece;
        let (cut, thresholds) = match treatment {
            Treatment::Fp16 => (large && dims.len() == 2, None),
            Treatment::Quantize { plan, follows_tiers } => {
                // GPTQ's rows are independent too once its update factor is made (pieces share it).
                let rows_independent = plan.group_size != GroupSize::Tensor
                    && (plan.tiers.len() == 1 || plan.granularity != Granularity::Tensor);
                match (plan.tiers.len(), global.filter(|_| *follows_tiers)) {
                    (1, _) => (large && rows_independent, None),
                    (_, Some(global)) => (large && rows_independent, Some(global.to_vec())),
                    (_, None) if count > cuts.own_thresholds && rows_independent => {
                        (true, Some(scoring.tensor_thresholds(name, plan, job)?.unwrap_or_default()))
                    }
                    _ => (false, None),
                }
            }
        };
        let thresholds = thresholds.map(std::sync::Arc::new);
        // Pieces of a multiple of 8 rows hold whole bytes of codes at any width.
        let step = if cut { (cuts.piece / cols.max(1) / 8 * 8).max(8) } else { rows };
        for first in (0..rows).step_by(step) {
            let piece_rows = first..(first + step).min(rows);
            let weights = piece_rows.len() * cols;
            let thresholds = thresholds.clone();
            pieces.push(Piece { name, treatment, rows: piece_rows, of_rows: rows, weights, thresholds });
        }
    }
    Ok(pieces)
}

/// Consecutive pieces of about `BATCH_WEIGHTS` weights together.
fn batches<'p, 'a>(pieces: &'p [Piece<'a>]) -> impl Iterator<Item = &'p [Piece<'a>]> {
    batches_of(pieces, |p| p.weights, BATCH_WEIGHTS)
}

/// `items` in order, cut into runs whose weights sum to about `budget` (a run starts below it; at least one item
/// each): work done a run at a time, the run's items in parallel.
pub fn batches_of<T>(items: &[T], weight: impl Fn(&T) -> usize, budget: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let before = rest.iter().scan(0, |sum, item| Some(std::mem::replace(sum, *sum + weight(item))));
        let len = before.take_while(|&sum| sum < budget).count();
        let (batch, after) = rest.split_at(len.max(1));
        rest = after;
        Some(batch)
    })
}

impl Scoring<'_> {
    /// Decodes a piece's rows and quantizes them (or stores them in f16).
    fn treat(&self, piece: &Piece) -> Result<Treated> {
        let stored = self.model.weights.stored(piece.name)?;
        stored.with_rows(piece.rows.clone(), &self.pool, |values, dims| self.treat_values(piece, values, dims))?
    }

    /// Quantizes a piece's decoded `values` of shape `dims` (or stores them in f16).
    fn treat_values(&self, piece: &Piece, values: &[f32], dims: &[usize]) -> Result<Treated> {
        Ok(match piece.treatment {
            Treatment::Fp16 => {
                let mut shape = dims.to_vec();
                if let Some(rows) = shape.first_mut() {
                    *rows = piece.of_rows;
                }
                let values = values.iter().map(|v| f16::from_f32(*v)).collect();
                Treated::Fp16 { shape, rows: piece.rows.clone(), values }
            }
            Treatment::Quantize { plan, .. } => {
                let &[rows, cols] = dims else {
                    return Err(Error::InvalidArgument(format!("`{}` of shape {dims:?} is not a matrix", piece.name)));
                };
                let scores = (plan.tiers.len() > 1).then(|| {
                    let mut scores = self.pool.take(values.len());
                    let (method, first) = (&self.config.importance, piece.rows.start);
                    importance::row_scores_into(method, piece.name, values, first, cols, self.calibration, &mut scores);
                    scores
                });
                let tiers = assign(plan, rows, cols, scores.as_deref(), piece.thresholds.as_deref().map(|t| &t[..]))?;
                let mut inputs = InputStats::of(self.calibration, piece.name, cols);
                let factor = self.second_moment(piece)?.map(|h| self.factors.take(h, cols));
                if let Some(factor) = &factor {
                    inputs = inputs.with_update_factor(factor.get().and_then(Option::as_ref));
                }
                let tensor = method::for_plan(plan).quantize(values, rows, cols, plan, &tiers, inputs);
                Treated::Quantized { tensor, rows: piece.rows.clone(), of_rows: piece.of_rows }
            }
        })
    }

    /// The second moment of a piece's inputs when GPTQ will feed errors back through it.
    fn second_moment(&self, piece: &Piece) -> Result<Option<&[f32]>> {
        let Treatment::Quantize { plan, .. } = piece.treatment else { return Ok(None) };
        if !method::gptq::feeds_back_errors(plan) {
            return Ok(None);
        }
        let (_, cols) = self.model.weights.dims2(piece.name)?;
        Ok(InputStats::of(self.calibration, piece.name, cols).second_moment)
    }

    /// Hands every unit score of tensor `name` under `granularity` to `each`, a piece of rows at a time (for
    /// tensor granularity one value, the mean over the whole tensor, summed in the order `unit_scores` sums).
    fn unit_scores(&self, name: &str, granularity: Granularity, each: &mut dyn FnMut(&[f32])) -> Result<()> {
        let stored = self.model.weights.stored(name)?;
        let (rows, cols) = self.model.weights.dims2(name)?;
        let step = (self.piece / cols.max(1)).max(1);
        let mut sum = 0f64;
        for first in (0..rows).step_by(step) {
            let method = &self.config.importance;
            let scores = stored.with_rows(first..(first + step).min(rows), &self.pool, |values, _| {
                let mut scores = self.pool.take(values.len());
                importance::row_scores_into(method, name, values, first, cols, self.calibration, &mut scores);
                scores
            })?;
            match granularity {
                Granularity::Tensor => sum = scores.iter().fold(sum, |s, &x| s + x as f64),
                _ => each(&granularity.unit_scores(&scores, cols)),
            }
        }
        if granularity == Granularity::Tensor {
            each(&[(sum / (rows * cols).max(1) as f64) as f32]);
        }
        Ok(())
    }

    /// The thresholds of one tensor's own units, by two streaming passes over its scores.
    fn tensor_thresholds(&self, name: &str, plan: &TensorPlan, job: &Job) -> Result<Option<Vec<f32>>> {
        job.checkpoint()?;
        let mut pass = |each: &mut dyn FnMut(&[f32])| self.unit_scores(name, plan.granularity, each);
        thresholds_streamed(&plan.tiers, &mut pass)
    }

    /// With global scope, one set of thresholds over the units of every tensor that follows the tiers, found by
    /// two streaming passes over all their scores.
    fn global_thresholds(&self, treatments: &BTreeMap<String, Treatment>, job: &Job) -> Result<Option<Vec<f32>>> {
        let config = self.config;
        if config.scope != Scope::Global || config.tiers.len() == 1 {
            return Ok(None);
        }
        let names: Vec<&String> = treatments
            .iter()
            .filter(|(_, t)| matches!(t, Treatment::Quantize { follows_tiers: true, .. }))
            .map(|(n, _)| n)
            .collect();
        let mut passes = 0;
        let mut pass = |each: &mut dyn FnMut(&[f32])| -> Result<()> {
            passes += 1;
            for (i, name) in names.iter().enumerate() {
                job.checkpoint()?;
                job.report(&format!("global thresholds, pass {passes} of 2"), i as u64, names.len() as u64, None);
                self.unit_scores(name, config.granularity, each)?;
            }
            Ok(())
        };
        thresholds_streamed(&config.tiers, &mut pass)
    }
}

/// Rows `rows` of a tensor after quantization (all of them, or a piece of a large one): their codes, of a matrix
/// of `of_rows` rows, or their values in f16 (`shape` is the whole tensor's).
pub enum Treated {
    Quantized { tensor: QuantizedTensor, rows: std::ops::Range<usize>, of_rows: usize },
    Fp16 { shape: Vec<usize>, rows: std::ops::Range<usize>, values: Vec<f16> },
}

/// The bill, tensor by tensor (a tensor's pieces added up).
#[derive(Default)]
struct BitTally {
    per_tensor: Vec<(usize, TensorBits)>,
    open: Option<(usize, TensorBits)>,
    fp16_params: usize,
}

impl BitTally {
    fn add(&mut self, treated: &Treated) {
        match treated {
            Treated::Quantized { tensor, rows, of_rows } => {
                let piece = (tensor.rows * tensor.cols, TensorBits::of(tensor));
                let sum = match self.open.take() {
                    Some((weights, bits)) => (weights + piece.0, bits.plus(&piece.1)),
                    None => piece,
                };
                if rows.end == *of_rows {
                    self.per_tensor.push(sum);
                } else {
                    self.open = Some(sum);
                }
            }
            Treated::Fp16 { values, .. } => self.fp16_params += values.len(),
        }
    }

    fn report(&self, params: usize) -> BitReport {
        BitReport::new(params, &self.per_tensor, self.fp16_params)
    }
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
fn check_storable(name: &str, treated: &Treated) -> Result<()> {
    let finite = match treated {
        Treated::Quantized { tensor: q, .. } => q.squared_error.is_finite() && q.params.iter().all(|p| p.is_finite()),
        Treated::Fp16 { values, .. } => values.iter().all(|x| x.is_finite()),
    };
    if finite {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "tensor `{name}` holds values beyond f16's range (|w| > 65504), which this plan stores in f16 \
         (block parameters or 16-bit weights): the result would not load again, so nothing is written"
    )))
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
    assert_eq!(units.len(), plan.granularity.units(rows, cols));
    let th = match global {
        Some(th) => th.to_vec(),
        None => thresholds(&units, &plan.tiers),
    };
    Ok(match units {
        std::borrow::Cow::Borrowed(_) => TierSource::Scores { scores, thresholds: th },
        std::borrow::Cow::Owned(units) => TierSource::Units(units.iter().map(|s| tier_of(*s, &th)).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cut into pieces of a few rows, every tensor of the fixture (per-tensor thresholds from streaming passes,
    /// global ones, one tier, GPTQ with its shared update factors) is what it is quantized whole.
    #[test]
    fn cutting_tensors_into_pieces_changes_no_byte() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/stories260k");
        let model = crate::load(&path).unwrap();
        let job = Job::silent();
        let seed = QuantConfig::seed();
        let windows: Vec<Vec<u32>> = (0..4).map(|w| (0..64).map(|i| (i * 7 + w * 31) % 512).collect()).collect();
        let calibration = crate::importance::activation::calibrate(&model, &windows, true, &job).unwrap();
        assert!(calibration.second_moment.len() > 5, "GPTQ feeds errors back through these");
        let gptq =
            QuantConfig { quantizer: crate::quant::QuantizerKind::Gptq, ..QuantConfig::uniform(3, GroupSize::G(32)) };
        let configs = [
            (seed.clone(), None),
            (QuantConfig { scope: Scope::Global, ..seed.clone() }, None),
            (QuantConfig { granularity: Granularity::Channel, ..seed.clone() }, None),
            (QuantConfig::uniform(4, GroupSize::G(32)), None),
            (gptq, Some(&calibration)),
        ];
        for (config, calibration) in configs {
            let treatments = treatments(&model, &config);
            let run = |cuts: Cuts| {
                let mut kept = Collector::default();
                let mut pieces = 0;
                apply_cut(cuts, &model, &config, &treatments, calibration, &job, |name, treated| {
                    pieces += 1;
                    kept.take(name, treated);
                    Ok(())
                })
                .unwrap();
                let quantized: Vec<_> = kept
                    .tensors
                    .iter()
                    .map(|(n, q)| {
                        let codes: Vec<u8> = q.codes.iter().flat_map(|c| c.packed.to_vec()).collect();
                        (n.clone(), codes, q.params.clone(), q.tier_map.packed.to_vec())
                    })
                    .collect();
                (quantized, pieces)
            };
            let (whole, whole_pieces) = run(Cuts { piece: usize::MAX, own_thresholds: usize::MAX });
            let (cut, cut_pieces) = run(Cuts { piece: 1000, own_thresholds: 1000 });
            assert_eq!(cut, whole, "{}", config.summary());
            // Single-tier pieces reach the sink as they are; multi-tier ones joined.
            assert!(whole.len() > 5 && cut_pieces >= whole_pieces);
            assert!(config.tiers.len() > 1 || cut_pieces > whole_pieces);
        }
    }
}
