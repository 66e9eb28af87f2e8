//! Work the explorer runs in the background, as plain functions of the library: importance analysis, a
//! quantize + evaluate run against a recorded baseline, and their results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nash_swarm::alloc::sensitivity::Sensitivity;
use nash_swarm::eval::{self, Kld, KldStats, PplReport, ReferenceLogits, WindowSpec};
use nash_swarm::importance::{self, CalibrationStats, ImportanceMethod};
use nash_swarm::model::TensorRole;
use nash_swarm::model::tensor_io::with_f32_slice;
use nash_swarm::pipeline::{self, CalibrationText};
use nash_swarm::quant::config::CalibrationSpec;
use nash_swarm::quant::estimate::{ImportanceIndex, ScoreSummary};
use nash_swarm::quant::summary::{TensorResult, Thumbnail, ThumbnailSums, tensor_result};
use nash_swarm::quant::{BitReport, QuantConfig, QuantizerKind, quantize_model};
use nash_swarm::{Job, Model};
use rayon::prelude::*;

pub const THUMBNAIL_SIDE: usize = 96;

/// Where a tensor sits in the heatmap.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub layer: Option<usize>,
    pub kind: String,
    pub rows: usize,
    pub cols: usize,
    pub mean_importance: f32,
    pub importance_image: Thumbnail,
}

pub struct Analysis {
    pub importance: ImportanceMethod,
    /// The score histograms, once every tensor is scored (None while tensors are still arriving).
    pub index: Option<ImportanceIndex>,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Heatmap columns in architecture order.
    pub kinds: Vec<String>,
    pub layers: usize,
}

impl Analysis {
    /// The tensors scored so far, on the model's full heatmap grid.
    pub fn arriving(model: &Model, importance: &ImportanceMethod, tensors: BTreeMap<String, TensorInfo>) -> Analysis {
        let layers = model.architecture.num_layers();
        Analysis { importance: importance.clone(), index: None, tensors, kinds: kinds(model), layers }
    }
}

/// Every 2-D weight the tiers could apply to.
pub fn matrices(model: &Model) -> Vec<String> {
    model
        .weights
        .0
        .iter()
        .filter(|(n, t)| t.rank() == 2 && model.architecture.tensor_role(n) != TensorRole::Other)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The heatmap's columns: the kinds of the layers' matrices, in the architecture's order.
fn kinds(model: &Model) -> Vec<String> {
    let names = matrices(model);
    let mut kinds: Vec<String> = names
        .iter()
        .map(|n| layer_and_kind(model, n))
        .filter(|(layer, _)| layer.is_some())
        .map(|(_, kind)| kind)
        .collect();
    let order = model.architecture.kinds();
    kinds.sort_by_key(|k| (order.iter().position(|o| o == k).unwrap_or(usize::MAX), k.clone()));
    kinds.dedup();
    kinds
}

/// The heatmap cell of a weight: its layer and the architecture's column (`q`, `c_attn`, ...); tensors outside
/// the layers are named by their last part (`embed_tokens`).
pub fn layer_and_kind(model: &Model, name: &str) -> (Option<usize>, String) {
    let layer = nash_swarm::model::layer_of(name);
    let kind = match model.architecture.kind_of(name) {
        Some(kind) => kind.to_string(),
        None => name.trim_end_matches(".weight").rsplit('.').next().unwrap_or(name).to_string(),
    };
    (layer, kind)
}

/// Scores every matrix in layer order, a piece of rows at a time (a piece's scores are folded into its tensor's
/// thumbnail, mean and histogram, then dropped, so neither the model's scores nor a large tensor's exist at
/// once), putting each tensor's heatmap cell into `arriving` as soon as it is done.
pub fn analyze(
    model: &Model,
    method: &ImportanceMethod,
    calibration: Option<&CalibrationStats>,
    job: &Job,
    arriving: &Mutex<BTreeMap<String, TensorInfo>>,
) -> anyhow::Result<Analysis> {
    importance::check_inputs(method, calibration)?;
    let mut names = matrices(model);
    names.sort_by_key(|n| (nash_swarm::model::layer_of(n), n.clone()));
    let pieces = pieces_of(model, &names)?;
    let total = names.len() as u64;
    job.report("importance", 0, total, None);
    let mut summaries = Vec::with_capacity(names.len());
    let mut open: Option<Scoring> = None;
    for batch in batches(&pieces) {
        job.checkpoint()?;
        let scored = batch
            .par_iter()
            .map(|p| {
                let values = model.weights.stored(p.name)?.rows(p.rows.clone())?;
                let score =
                    |values: &[f32]| importance::row_scores(method, p.name, values, p.rows.start, p.cols, calibration);
                Ok(with_f32_slice(&values, score)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (p, scores) in batch.iter().zip(scored) {
            let scoring = open.get_or_insert_with(|| Scoring::new(p.name, p.of_rows, p.cols));
            scoring.add(p.rows.start, &scores);
            if p.rows.end == p.of_rows {
                let (name, info, summary) = open.take().expect("set above").finish(model);
                arriving.lock().expect("not poisoned").insert(name.clone(), info);
                summaries.push((name, summary));
                job.report("importance", summaries.len() as u64, total, None);
            }
        }
    }
    let tensors = std::mem::take(&mut *arriving.lock().expect("not poisoned"));
    let index = Some(ImportanceIndex::from_summaries(summaries));
    Ok(Analysis { index, ..Analysis::arriving(model, method, tensors) })
}

/// Rows of a matrix scored together.
struct Piece<'a> {
    name: &'a str,
    rows: std::ops::Range<usize>,
    of_rows: usize,
    cols: usize,
}

/// Weights scored per piece, and per batch of pieces run in parallel.
const PIECE_WEIGHTS: usize = 1 << 22;
const BATCH_WEIGHTS: usize = 1 << 24;

fn pieces_of<'a>(model: &Model, names: &'a [String]) -> anyhow::Result<Vec<Piece<'a>>> {
    let mut pieces = Vec::new();
    for name in names {
        let (rows, cols) = model.weights.dims2(name)?;
        let step = (PIECE_WEIGHTS / cols.max(1)).max(1);
        for first in (0..rows).step_by(step) {
            pieces.push(Piece { name, rows: first..(first + step).min(rows), of_rows: rows, cols });
        }
    }
    Ok(pieces)
}

/// Consecutive pieces of about `BATCH_WEIGHTS` weights.
fn batches<'p, 'a>(pieces: &'p [Piece<'a>]) -> impl Iterator<Item = &'p [Piece<'a>]> {
    nash_swarm::quant::plan::batches_of(pieces, |p| p.rows.len() * p.cols, BATCH_WEIGHTS)
}

/// One tensor's scores folded in as its pieces arrive.
struct Scoring {
    name: String,
    sum: f64,
    count: usize,
    image: ThumbnailSums,
    summary: ScoreSummary,
}

impl Scoring {
    fn new(name: &str, rows: usize, cols: usize) -> Scoring {
        let (image, summary) = (ThumbnailSums::new(rows, cols, THUMBNAIL_SIDE), ScoreSummary::new(rows, cols));
        Scoring { name: name.to_string(), sum: 0.0, count: 0, image, summary }
    }

    fn add(&mut self, first_row: usize, scores: &[f32]) {
        self.sum += scores.iter().map(|v| *v as f64).sum::<f64>();
        self.count += scores.len();
        self.image.add_rows(first_row, scores);
        self.summary.add(scores);
    }

    fn finish(self, model: &Model) -> (String, TensorInfo, ScoreSummary) {
        let (layer, kind) = layer_and_kind(model, &self.name);
        let (rows, cols) = (self.summary.rows, self.summary.cols);
        let mean_importance = (self.sum / self.count.max(1) as f64) as f32;
        let info = TensorInfo { layer, kind, rows, cols, mean_importance, importance_image: self.image.finish() };
        (self.name, info, self.summary)
    }
}

/// The unquantized model's evaluation on the chosen windows, and its log-probabilities for KLD.
pub struct Reference {
    pub text: PathBuf,
    pub spec: WindowSpec,
    pub windows: Vec<Vec<u32>>,
    pub logits: Arc<ReferenceLogits>,
    pub base: PplReport,
}

pub fn reference(model: &Model, text: &Path, spec: WindowSpec, job: &Job) -> anyhow::Result<Reference> {
    let tokens = model.encode(&eval::read_text(text)?)?;
    let windows = eval::windows(model, &tokens, spec, text)?;
    let (base, logits) = eval::evaluate_ppl(model, &windows, Kld::Record, job)?;
    Ok(Reference { text: text.to_path_buf(), spec, windows, logits: Arc::new(logits.expect("recorded")), base })
}

impl Reference {
    /// For a comparison on the same text and windows: shares the log-probabilities instead of recording them again.
    pub fn known_for(&self, text: &PathBuf, spec: WindowSpec) -> Option<nash_swarm::compare::KnownReference> {
        (self.text == *text && self.spec == spec).then(|| nash_swarm::compare::KnownReference {
            windows: self.windows.clone(),
            logits: self.logits.clone(),
            report: self.base.clone(),
        })
    }
}

/// The reference, shared between the window and its jobs. A job reads it when its turn comes (not when it is
/// queued), so Baselines clicked while a Run is still recording the reference reuses it instead of recording a
/// second one (192 MB for SmolLM2 at 4 windows of 512).
#[derive(Clone, Default)]
pub struct SharedReference(Arc<std::sync::Mutex<Option<(PathBuf, Arc<Reference>)>>>);

impl SharedReference {
    /// The reference recorded for `model` (by its source path), if any.
    pub fn get(&self, model: &Model) -> Option<Arc<Reference>> {
        let slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref().filter(|(source, _)| *source == model.source).map(|(_, r)| r.clone())
    }

    pub fn set(&self, model: &Model, reference: Arc<Reference>) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((model.source.clone(), reference));
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Calibration statistics when the configuration's importance needs them (a clear error without a text) or its
/// quantizer weighs columns by them and a text is open, from the end of the evaluation text (never scored by the
/// GUI's few windows).
pub fn calibration_if_needed(
    model: &Model,
    config: &QuantConfig,
    text: Option<&PathBuf>,
    job: &Job,
) -> anyhow::Result<Option<CalibrationStats>> {
    let needed = matches!(config.importance, ImportanceMethod::Activation);
    if !needed && !(config.quantizer.uses_calibration() && text.is_some()) {
        return Ok(None);
    }
    let Some(path) = text else { anyhow::bail!("activation importance needs an evaluation text (Open text…)") };
    calibrate_on_end_of(model, path, config.calibration, config.quantizer, job)
}

/// The Nash game, priced by measured sensitivity on the end of the text when one is open (cached after the
/// first time; the measurement is returned too), by weight error otherwise.
pub fn priced_game(
    model: &Model,
    importance: &ImportanceMethod,
    quantizer: QuantizerKind,
    calibration: Option<&CalibrationStats>,
    text: Option<&Path>,
    job: &Job,
) -> anyhow::Result<(nash_swarm::alloc::Game, QuantConfig, Option<Sensitivity>)> {
    let tokens = match text {
        Some(path) => Some(model.encode(&eval::read_text(path)?)?),
        None => None,
    };
    let pricing = match (&tokens, text) {
        (Some(tokens), Some(path)) => pipeline::Pricing::Measured(CalibrationText::EndOf { tokens, path }),
        _ => pipeline::Pricing::WeightError,
    };
    Ok(pipeline::priced_game(model, importance, quantizer, calibration, pricing, job)?)
}

/// Activation statistics (the imatrix) from the end of the text, which evaluation leaves out.
pub fn end_of_text_calibration(model: &Model, text: &Path, job: &Job) -> anyhow::Result<Option<CalibrationStats>> {
    calibrate_on_end_of(model, text, CalibrationSpec::default(), QuantizerKind::Rtn, job)
}

/// E[x²] of every matrix's inputs (and E[x xᵀ] when `quantizer` is GPTQ) on the end of the text at `path`.
fn calibrate_on_end_of(
    model: &Model,
    path: &Path,
    spec: CalibrationSpec,
    quantizer: QuantizerKind,
    job: &Job,
) -> anyhow::Result<Option<CalibrationStats>> {
    let tokens = model.encode(&eval::read_text(path)?)?;
    let text = CalibrationText::EndOf { tokens: &tokens, path };
    Ok(pipeline::calibrate(model, &ImportanceMethod::Activation, quantizer, spec, Some(text), job)?.stats)
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub config: QuantConfig,
    /// How the Nash allocation behind `config` priced its strategies, when it came from one.
    pub prices: Option<String>,
    pub bits: BitReport,
    pub size_bytes: u64,
    pub ppl: f64,
    pub nll_stderr: f64,
    pub delta_ppl_pct: f64,
    pub kld: KldStats,
    pub seconds: f64,
    /// Each tensor's plan, bits and error in this run, for the heatmap and the tensor view.
    pub detail: Arc<BTreeMap<String, TensorResult>>,
}

pub struct RunOutput {
    pub record: RunRecord,
    pub reference: Option<Arc<Reference>>,
}

/// Quantizes with `config` and evaluates against the reference (recording it first when there is none).
pub fn run(
    model: &Model,
    config: &QuantConfig,
    text: &PathBuf,
    spec: WindowSpec,
    reference: Option<Arc<Reference>>,
    job: &Job,
) -> anyhow::Result<RunOutput> {
    let start = std::time::Instant::now();
    let fresh = match &reference {
        Some(r) if r.text == *text && r.spec == spec => None,
        _ => Some(Arc::new(self::reference(model, text, spec, job)?)),
    };
    let reference_ref = fresh.clone().or(reference).expect("one of them");
    let calibration = calibration_if_needed(model, config, Some(text), job)?;
    crate::gui::worker::release_freed_memory(); // the reference's temporaries, before quantization's
    let quantized = quantize_model(model, config, calibration.as_ref(), job)?;
    let detail: BTreeMap<String, TensorResult> =
        quantized.tensors.par_iter().map(|(name, q)| (name.clone(), tensor_result(q, THUMBNAIL_SIDE))).collect();
    let kld = Kld::Against(&reference_ref.logits);
    let evaluated = pipeline::evaluate(model, quantized, &reference_ref.windows, kld, job)?;
    let (report, bits, size_bytes) = (evaluated.report, evaluated.bits, evaluated.size_bytes);
    let base_ppl = reference_ref.base.ppl;
    let record = RunRecord {
        config: config.clone(),
        prices: None,
        bits,
        size_bytes,
        ppl: report.ppl,
        nll_stderr: report.nll_stderr,
        delta_ppl_pct: 100.0 * (report.ppl - base_ppl) / base_ppl,
        kld: report.kld.expect("evaluated against the reference"),
        seconds: start.elapsed().as_secs_f64(),
        detail: Arc::new(detail),
    };
    Ok(RunOutput { record, reference: fresh })
}
