//! The comparison a result is always shown with (METHOD.md section 6): the unquantized model, uniform RTN
//! baselines, the original's configuration, Nash allocations at the uniform rows' true bpw, and the
//! random-importance ablation, all on the same windows and texts.

pub mod report;

use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;

use crate::alloc;
use crate::eval::{self, Kld, PplReport, ReferenceLogits, WindowSpec};
use crate::importance::ImportanceMethod;
use crate::job::Job;
use crate::model::Model;
use crate::pipeline::{self, CalibrationText};
use crate::quant::config::CalibrationSpec;
use crate::quant::{GroupSize, QuantConfig, Quantized, quantize_model};

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
}

/// The unquantized model's evaluation on some windows, made earlier (the explorer keeps the one its runs use).
/// A comparison over the same windows reuses it instead of evaluating again and holding a second copy of the
/// log-probabilities (200 MB for SmolLM2 at 4 windows).
pub struct KnownReference {
    pub windows: Vec<Vec<u32>>,
    pub logits: Arc<ReferenceLogits>,
    pub report: PplReport,
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

    /// Evaluates a quantized result against the baseline.
    /// Evaluates a quantized result against the baseline, consuming it (its weights become the model's).
    pub fn row(&self, method: &str, quantized: Quantized, job: &Job) -> Result<Row> {
        let evaluated = pipeline::evaluate(self.model, quantized, &self.windows, Kld::Against(&self.reference), job)?;
        let seed = eval::evaluate_seed(&evaluated.model, &self.seed_texts, job)?;
        let (configuration, bits, size, report) =
            (evaluated.summary, evaluated.bits, evaluated.size_bytes, evaluated.report);
        let quantize_seconds = evaluated.quantize_seconds;
        let kld = report.kld.expect("evaluated against the reference");
        Ok(Row {
            method: method.to_string(),
            configuration,
            payload_bpw: bits.payload_bpw,
            true_bpw: bits.true_bpw,
            size_bytes: size,
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
pub fn run(
    model: &Model,
    text: &str,
    text_path: &std::path::Path,
    spec: &CompareSpec,
    known: Option<KnownReference>,
    job: &Job,
    mut on_row: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    // Activation importance calibrates on the end of the text; evaluation then keeps to the part before it.
    let tokens = model.encode(text)?;
    let end_of_text = CalibrationText::EndOf { tokens: &tokens, path: text_path };
    let calibration = pipeline::calibrate(model, &spec.importance, CalibrationSpec::default(), Some(end_of_text), job)?;
    let usable = &tokens[..calibration.usable_tokens.unwrap_or(tokens.len())];
    let calibration = calibration.stats;
    let bench = Bench::new(model, usable, text, text_path, spec, known, job)?;
    on_row(&bench.base);
    let mut rows = vec![bench.base.clone()];
    let mut evaluate = |method: &str, config: &QuantConfig| -> Result<Row> {
        let quantized = quantize_model(model, config, calibration.as_ref(), job)?;
        let row = bench.row(method, quantized, job)?;
        on_row(&row);
        Ok(row)
    };
    rows.push(evaluate("uniform-4bit-tensor", &QuantConfig::uniform4_per_tensor())?);
    let uniform4 = evaluate("uniform-4bit-g128", &QuantConfig::uniform(4, GroupSize::G(128)))?;
    let uniform3 = evaluate("uniform-3bit-g128", &QuantConfig::uniform(3, GroupSize::G(128)))?;
    let targets = [uniform4.true_bpw, uniform3.true_bpw];
    rows.extend([uniform4, uniform3]);
    rows.push(evaluate("seed-10/20/70-8/4/2", &QuantConfig::seed())?);
    let (game, base) = alloc::standard_game(model, &spec.importance, calibration.as_ref(), job)?;
    for target in targets {
        let allocation = game.solve(target)?;
        let config = game.config_for(&base, &allocation);
        rows.push(evaluate(&format!("nash@{target:.3}"), &config)?);
    }
    let ablation = QuantConfig { importance: ImportanceMethod::Random { seed: 0 }, ..QuantConfig::seed() };
    rows.push(evaluate("random-ablation", &ablation)?);
    Ok(rows)
}
