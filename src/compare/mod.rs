//! The comparison a result is always shown with (METHOD.md section 6): the unquantized model, uniform RTN
//! baselines, the original's configuration, Nash allocations at the uniform rows' true bpw, and the
//! random-importance ablation, all on the same windows and texts.

pub mod report;

use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;

use crate::alloc;
use crate::eval::{self, Kld, PplReport, ReferenceLogits, WindowSpec};
use crate::formats::gguf::export;
use crate::importance::{CalibrationStats, ImportanceMethod};
use crate::job::Job;
use crate::model::Model;
use crate::pipeline::{self, CalibrationText};
use crate::quant::config::CalibrationSpec;
use crate::quant::ggml::preset::Preset;
use crate::quant::{GroupSize, QuantConfig, Quantized, QuantizerKind, quantize_model};

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub method: String,
    pub configuration: String,
    pub payload_bpw: f64,
    pub true_bpw: f64,
    pub size_bytes: u64,
    pub ppl: f64,
    pub nll: f64,
    pub nll_stderr: f64,
    pub delta_ppl_pct: f64,
    pub seed_loss: f64,
    pub delta_seed_loss_pct: f64,
    pub kld_mean: f64,
    pub kld_p99: f64,
    pub top1_agreement: f64,
    pub quantize_seconds: f64,
}

#[derive(Clone, Debug)]
pub struct CompareSpec {
    pub windows: WindowSpec,
    pub seed_texts: usize,
    /// Importance pricing the Nash rows (activation calibrates on the end of the text).
    pub importance: ImportanceMethod,
    /// llama-quantize presets made by us, each without and with calibration (an imatrix from the end of the text).
    pub gguf_presets: Vec<Preset>,
}

/// The unquantized model's evaluation on some windows, made earlier (the explorer keeps the one its runs use).
/// A comparison over the same windows reuses it instead of evaluating again and holding a second copy of the
/// log-probabilities (200 MB for SmolLM2 at 4 windows).
pub struct KnownReference {
    pub windows: Vec<Vec<u32>>,
    pub logits: Arc<ReferenceLogits>,
    pub report: PplReport,
}

/// What a row's result costs: its description, bits and bytes, and how long it took to make.
pub struct Bill {
    pub configuration: String,
    pub payload_bpw: f64,
    pub true_bpw: f64,
    pub size_bytes: u64,
    pub quantize_seconds: f64,
}

/// Everything every row is evaluated on.
pub struct Bench<'a> {
    pub model: &'a Model,
    pub windows: Vec<Vec<u32>>,
    pub seed_texts: Vec<Vec<u32>>,
    reference: Arc<ReferenceLogits>,
    pub base: Row,
}

impl<'a> Bench<'a> {
    /// Evaluates the unquantized model once and records its log-probabilities as the KLD reference (or takes
    /// `known` when it covers the same windows). `tokens` are the evaluation text's tokens (minus any calibration
    /// part); `text` gives the seed texts.
    pub fn new(
        model: &'a Model,
        tokens: &[u32],
        text: &str,
        text_path: &std::path::Path,
        spec: &CompareSpec,
        known: Option<KnownReference>,
        job: &Job,
    ) -> Result<Self> {
        let windows = eval::windows(model, tokens, spec.windows, text_path)?;
        let seed_texts = eval::seed_texts(model, text, spec.seed_texts, spec.windows.bos)?;
        let (report, reference) = match known {
            Some(known) if known.windows == windows => (known.report, known.logits),
            _ => {
                let (report, reference) = eval::evaluate_ppl(model, &windows, Kld::Record, job)?;
                (report, Arc::new(reference.expect("recorded")))
            }
        };
        let seed = eval::evaluate_seed(model, &seed_texts, job)?;
        let base = Row {
            method: "baseline".into(),
            configuration: "unquantized (f32 as loaded)".into(),
            payload_bpw: 32.0,
            true_bpw: 32.0,
            size_bytes: model.param_count() as u64 * 4,
            ppl: report.ppl,
            nll: report.nll,
            nll_stderr: report.nll_stderr,
            delta_ppl_pct: 0.0,
            seed_loss: seed.loss,
            delta_seed_loss_pct: 0.0,
            // Against itself the divergence is zero and the argmax always agrees.
            kld_mean: 0.0,
            kld_p99: 0.0,
            top1_agreement: 1.0,
            quantize_seconds: 0.0,
        };
        Ok(Bench { model, windows, seed_texts, reference, base })
    }

    /// Evaluates a quantized result against the baseline, consuming it (its weights become the model's).
    pub fn row(&self, method: &str, quantized: Quantized, job: &Job) -> Result<Row> {
        let evaluated = pipeline::evaluate(self.model, quantized, &self.windows, Kld::Against(&self.reference), job)?;
        let bill = Bill {
            configuration: evaluated.summary,
            payload_bpw: evaluated.bits.payload_bpw,
            true_bpw: evaluated.bits.true_bpw,
            size_bytes: evaluated.size_bytes,
            quantize_seconds: evaluated.quantize_seconds,
        };
        self.row_with(method, bill, &evaluated.model, Some(evaluated.report), job)
    }

    /// Evaluates a model made from the baseline's weights (e.g. a GGUF export decoded) against the baseline.
    pub fn row_for_model(&self, method: &str, bill: Bill, quantized: &Model, job: &Job) -> Result<Row> {
        self.row_with(method, bill, quantized, None, job)
    }

    fn row_with(&self, method: &str, bill: Bill, model: &Model, report: Option<PplReport>, job: &Job) -> Result<Row> {
        let report = match report {
            Some(report) => report,
            None => eval::evaluate_ppl(model, &self.windows, Kld::Against(&self.reference), job)?.0,
        };
        let seed = eval::evaluate_seed(model, &self.seed_texts, job)?;
        let quantize_seconds = bill.quantize_seconds;
        let kld = report.kld.expect("evaluated against the reference");
        Ok(Row {
            method: method.to_string(),
            configuration: bill.configuration,
            payload_bpw: bill.payload_bpw,
            true_bpw: bill.true_bpw,
            size_bytes: bill.size_bytes,
            ppl: report.ppl,
            nll: report.nll,
            nll_stderr: report.nll_stderr,
            delta_ppl_pct: 100.0 * (report.ppl - self.base.ppl) / self.base.ppl,
            seed_loss: seed.loss,
            delta_seed_loss_pct: 100.0 * (seed.loss - self.base.seed_loss) / self.base.seed_loss,
            kld_mean: kld.mean,
            kld_p99: kld.p99,
            top1_agreement: kld.top1_agreement,
            quantize_seconds,
        })
    }
}

/// Every row of the comparison, in the order METHOD.md lists them. `on_row` sees each as it is done.
/// How many rows `run` makes (the progress's "row k of n"): the unquantized model, three uniform grids, four
/// least-squares and GPTQ grids, two seeds, two Nash pricings at each uniform grid's size, the random ablation,
/// and two rows per GGUF preset.
pub fn planned_rows(spec: &CompareSpec) -> usize {
    1 + 3 + 4 + 2 + 2 * 3 + 1 + 2 * spec.gguf_presets.len()
}

pub fn run(
    model: &Model,
    text: &str,
    text_path: &std::path::Path,
    spec: &CompareSpec,
    known: Option<KnownReference>,
    job: &Job,
    mut on_row: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    // Calibration (E[x²] per input column: activation importance, least-squares grids, the GGUF rows' imatrix;
    // E[x xᵀ] for GPTQ) runs on the end of the text; evaluation then keeps to the part before it.
    if !spec.gguf_presets.is_empty() {
        export::check_writable(model)?;
    }
    let tokens = model.encode(text)?;
    let end_of_text = CalibrationText::EndOf { tokens: &tokens, path: text_path };
    let calibration = pipeline::calibrate(
        model,
        &ImportanceMethod::Activation,
        QuantizerKind::Gptq,
        CalibrationSpec::default(),
        Some(end_of_text),
        job,
    )?;
    let usable = &tokens[..calibration.usable_tokens.unwrap_or(tokens.len())];
    let calibration = calibration.stats;
    let bench = Bench::new(model, usable, text, text_path, spec, known, job)?;
    on_row(&bench.base);
    let mut rows = vec![bench.base.clone()];
    // `prices` says how a Nash row's strategies were priced (appended to its configuration).
    let mut evaluate_priced = |method: &str, config: &QuantConfig, prices: Option<&str>| -> Result<Row> {
        let quantized = quantize_model(model, config, calibration.as_ref(), job)?;
        let mut row = bench.row(method, quantized, job)?;
        if let Some(prices) = prices {
            row.configuration = format!("{}, {prices}", row.configuration);
        }
        on_row(&row);
        Ok(row)
    };
    let mut evaluate = |method: &str, config: &QuantConfig| evaluate_priced(method, config, None);
    let with = |quantizer: QuantizerKind, config: QuantConfig| QuantConfig { quantizer, ..config };
    let (least_squares, gptq) = (QuantizerKind::LeastSquares, QuantizerKind::Gptq);
    let uniform = [
        evaluate("uniform-4bit-tensor", &QuantConfig::uniform4_per_tensor())?,
        evaluate("uniform-4bit-g128", &QuantConfig::uniform(4, GroupSize::G(128)))?,
        evaluate("uniform-3bit-g128", &QuantConfig::uniform(3, GroupSize::G(128)))?,
    ];
    let targets: Vec<f64> = uniform.iter().map(|row| row.true_bpw).collect();
    rows.extend(uniform);
    for quantizer in [least_squares, gptq] {
        for bits in [4, 3] {
            let method = format!("uniform-{bits}bit-g128-{}", quantizer.label());
            rows.push(evaluate(&method, &with(quantizer, QuantConfig::uniform(bits, GroupSize::G(128))))?);
        }
    }
    rows.push(evaluate("seed-10/20/70-8/4/2", &QuantConfig::seed())?);
    rows.push(evaluate("seed-10/20/70-8/4/2-ls", &with(least_squares, QuantConfig::seed()))?);
    // Nash at each uniform row's true bpw over least-squares grids, priced by weight error and by measured
    // sensitivity (on the calibration end of the text, like the imatrix).
    let quantizer = QuantizerKind::LeastSquares;
    let (game, base) = alloc::standard_game(model, &spec.importance, quantizer, calibration.as_ref(), job)?;
    let (measured, sensitivity) = pipeline::measured_game(model, &game, &base, calibration.as_ref(), end_of_text, job)?;
    let measured_prices = format!("measured ΔKLD prices (held-out Spearman {:.3})", sensitivity.spearman);
    let weight_prices = format!("{} weight-error prices", spec.importance.label());
    for (method, game, prices) in [("nash", &game, &weight_prices), ("nash-measured", &measured, &measured_prices)] {
        for target in &targets {
            let allocation = game.solve(*target)?;
            let config = game.config_for(&base, &allocation);
            rows.push(evaluate_priced(&format!("{method}@{target:.3}"), &config, Some(prices))?);
        }
    }
    let ablation = QuantConfig { importance: ImportanceMethod::Random { seed: 0 }, ..QuantConfig::seed() };
    rows.push(evaluate_priced("random-ablation", &ablation, None)?);
    for preset in &spec.gguf_presets {
        for stats in [None, calibration.as_ref()] {
            let row = gguf_row(&bench, *preset, stats, job)?;
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// A llama-quantize preset made by our encoders (importance-weighted with `stats`), scored as a GGUF reader
/// would decode it; its bits are the tensor bytes.
fn gguf_row(bench: &Bench, preset: Preset, stats: Option<&CalibrationStats>, job: &Job) -> Result<Row> {
    let start = std::time::Instant::now();
    let model = bench.model;
    let plan = export::preset_plan(model, preset, stats.is_some())?;
    let tensors = export::encode_tensors(model, &plan, stats, job)?;
    let report = export::tensor_report(model, &tensors);
    let quantized_weights: usize =
        report.weights_by_type.iter().filter(|(t, _)| t.is_quantized()).map(|(_, n)| n).sum();
    let quantized_bytes: u64 = tensors.iter().filter(|t| t.ty.is_quantized()).map(|t| t.data.len() as u64).sum();
    let quantized = model.with_weights(export::encoded_weights(model, tensors)?);
    let bill = Bill {
        configuration: format!("llama.cpp {} types: {}", preset.name, report.type_shares()),
        payload_bpw: quantized_bytes as f64 * 8.0 / quantized_weights.max(1) as f64,
        true_bpw: report.tensor_bpw(),
        size_bytes: report.tensor_bytes,
        quantize_seconds: start.elapsed().as_secs_f64(),
    };
    let method =
        if stats.is_some() { format!("gguf-{}+imatrix", preset.name) } else { format!("gguf-{}", preset.name) };
    bench.row_for_model(&method, bill, &quantized, job)
}
