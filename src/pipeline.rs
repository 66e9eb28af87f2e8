//! The one chain the CLI, the GUI and compare call: calibrate -> allocate -> quantize -> evaluate (and the
//! formats write the result). Each step is a function here so that every caller runs the same code.

use std::path::Path;

use crate::alloc::sensitivity::Sensitivity;
use crate::alloc::{self, Allocation};
use crate::error::Result;
use crate::eval::{self, Kld, PplReport};
use crate::importance::{CalibrationStats, ImportanceMethod, activation};
use crate::job::Job;
use crate::model::Model;
use crate::quant::config::CalibrationSpec;
use crate::quant::spec::QuantizerKind;
use crate::quant::{BitReport, QuantConfig, Quantized};

/// Where calibration windows come from. Calibration never sees a scored token.
#[derive(Clone, Copy)]
pub enum CalibrationText<'a> {
    /// A text of its own (`--calib-text`): its first windows.
    Own { tokens: &'a [u32], path: &'a Path },
    /// The end of the evaluation text, which evaluation then leaves out.
    EndOf { tokens: &'a [u32], path: &'a Path },
}

/// Calibration statistics, and how many leading tokens of the evaluation text evaluation may still use.
pub struct Calibration {
    pub stats: Option<CalibrationStats>,
    pub usable_tokens: Option<usize>,
}

/// The calibration windows `spec` asks for, and the evaluation tokens left usable.
pub fn calibration_windows(spec: CalibrationSpec, text: CalibrationText) -> Result<(Option<usize>, Vec<Vec<u32>>)> {
    match text {
        CalibrationText::Own { tokens, path } => {
            let windows: Vec<Vec<u32>> =
                tokens.chunks_exact(spec.tokens).take(spec.windows).map(<[u32]>::to_vec).collect();
            if windows.is_empty() {
                return Err(crate::Error::bad_file(
                    path,
                    format!("fewer than {} tokens for one calibration window", spec.tokens),
                ));
            }
            Ok((None, windows))
        }
        CalibrationText::EndOf { tokens, path } => {
            let (usable, windows) = eval::split_calibration(tokens, spec.windows, spec.tokens, path)?;
            Ok((Some(usable.len()), windows))
        }
    }
}

/// Calibrates when `importance` needs it (activation importance) or `quantizer` can use it and there is a text;
/// otherwise nothing is read or run.
pub fn calibrate(
    model: &Model,
    importance: &ImportanceMethod,
    quantizer: QuantizerKind,
    spec: CalibrationSpec,
    text: Option<CalibrationText>,
    job: &Job,
) -> Result<Calibration> {
    let needed = matches!(importance, ImportanceMethod::Activation);
    let text = match text {
        Some(text) if needed || quantizer.uses_calibration() => text,
        None if needed => {
            return Err(crate::Error::InvalidArgument(
                "activation importance needs a calibration or evaluation text".into(),
            ));
        }
        _ => return Ok(Calibration { stats: None, usable_tokens: None }),
    };
    let (usable_tokens, windows) = calibration_windows(spec, text)?;
    let second_moments = quantizer == QuantizerKind::Gptq;
    Ok(Calibration { stats: Some(activation::calibrate(model, &windows, second_moments, job)?), usable_tokens })
}

/// Measures what quantizing each player of `game` does to the output (`alloc::sensitivity`) over the first
/// calibration windows of `text`, which evaluation never scores.
pub fn measure_sensitivity(
    model: &Model,
    game: &alloc::Game,
    dequantize: &alloc::sensitivity::Dequantize,
    text: CalibrationText,
    job: &Job,
) -> Result<alloc::sensitivity::Sensitivity> {
    let spec = alloc::sensitivity::SensitivitySpec::default();
    let windows = sensitivity_windows(spec, text)?;
    let cache = crate::demo::cache_dir().join("sensitivity");
    alloc::sensitivity::measure(model, game, dequantize, &windows, spec, Some(&cache), job)
}

/// The first `spec.windows` calibration windows of `text` (cut to `spec.tokens`): inside the part that
/// activation calibration takes, so evaluation never scores them.
pub fn sensitivity_windows(spec: alloc::sensitivity::SensitivitySpec, text: CalibrationText) -> Result<Vec<Vec<u32>>> {
    let (_, windows) = calibration_windows(CalibrationSpec::default(), text)?;
    Ok(windows.into_iter().take(spec.windows).map(|w| w[..spec.tokens.min(w.len())].to_vec()).collect())
}

/// What the Nash game's strategies cost.
#[derive(Clone, Copy)]
pub enum Pricing<'a> {
    /// Importance-weighted weight error (no model run).
    WeightError,
    /// Predicted change in KL divergence, measured on this calibration text (`alloc::sensitivity`).
    Measured(CalibrationText<'a>),
}

/// The standard game (`alloc::standard_game`) priced as asked, with the measurement when one was made.
pub fn priced_game(
    model: &Model,
    importance: &ImportanceMethod,
    quantizer: QuantizerKind,
    calibration: Option<&CalibrationStats>,
    pricing: Pricing,
    job: &Job,
) -> Result<(alloc::Game, QuantConfig, Option<Sensitivity>)> {
    let (game, base) = alloc::standard_game(model, importance, quantizer, calibration, job)?;
    let Pricing::Measured(text) = pricing else { return Ok((game, base, None)) };
    let (measured, sensitivity) = measured_game(model, &game, &base, calibration, text, job)?;
    Ok((measured, base, Some(sensitivity)))
}

/// The standard game `game` (built from `base` and `calibration`) repriced by sensitivity measured on `text`.
pub fn measured_game(
    model: &Model,
    game: &alloc::Game,
    base: &QuantConfig,
    calibration: Option<&CalibrationStats>,
    text: CalibrationText,
    job: &Job,
) -> Result<(alloc::Game, Sensitivity)> {
    let weights = |p: usize, o: usize| game.strategy_weights(model, base, calibration, p, o);
    let sensitivity = measure_sensitivity(model, game, &weights, text, job)?;
    Ok((sensitivity.reprice(game)?, sensitivity))
}

/// The configuration that meets `target_bpw` by the Nash allocation over `config`'s importance and quantizer,
/// priced as asked.
pub fn allocate(
    model: &Model,
    config: &QuantConfig,
    target_bpw: f64,
    calibration: Option<&CalibrationStats>,
    pricing: Pricing,
    job: &Job,
) -> Result<(QuantConfig, Allocation, Option<Sensitivity>)> {
    let (game, base, sensitivity) =
        priced_game(model, &config.importance, config.quantizer, calibration, pricing, job)?;
    let allocation = game.solve(target_bpw)?;
    Ok((game.config_for(&base, &allocation), allocation, sensitivity))
}

/// What evaluating a quantized result gives: its bill, its exact packed size and its perplexity report; the
/// quantized model (dequantized layer by layer when used) stays available for more evaluation.
pub struct Evaluated {
    pub summary: String,
    pub bits: BitReport,
    pub size_bytes: u64,
    pub quantize_seconds: f64,
    pub report: PplReport,
    pub model: Model,
}

/// Evaluates a quantized result on `windows`, consuming it: no f32 copy of the whole model is made.
pub fn evaluate(model: &Model, quantized: Quantized, windows: &[Vec<u32>], kld: Kld, job: &Job) -> Result<Evaluated> {
    let size_bytes = crate::formats::packed::packed_size(model, &quantized) as u64;
    let (summary, bits, quantize_seconds) =
        (quantized.config.summary(), quantized.bits.clone(), quantized.quantize_seconds);
    let model = quantized.into_model(model)?;
    let (report, _) = eval::evaluate_ppl(&model, windows, kld, job)?;
    Ok(Evaluated { summary, bits, size_bytes, quantize_seconds, report, model })
}
