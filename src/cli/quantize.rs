use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{ArgGroup, Args};
use nash_swarm::eval::{self, Kld};
use nash_swarm::formats;
use nash_swarm::importance::ImportanceMethod;
use nash_swarm::output::{Input, Kind, Output};
use nash_swarm::pipeline::{self, CalibrationText};
use nash_swarm::quant::{QuantConfig, QuantizerKind};
use serde_json::json;

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["preset", "target_bpw", "config"])))]
pub struct QuantizeArgs {
    /// Hugging Face folder, .gguf file or packed export folder.
    #[arg(long)]
    pub(super) model: PathBuf,
    /// Packed: seed (the original 10/20/70 -> 8/4/2), uniform4, uniform3 (g128), uniform4-tensor. GGUF: a
    /// llama-quantize file type (q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, q4_1, q4_0, iq4_nl,
    /// q3_k_l, q3_k_m, q3_k_s, q2_k, q2_k_s, f16, bf16, f32) with llama.cpp's per-tensor types.
    #[arg(long)]
    pub(super) preset: Option<String>,
    /// Output format: packed (our safetensors folder) or gguf (one file llama.cpp runs). Default: gguf when
    /// --out ends in .gguf, else packed.
    #[arg(long, value_enum)]
    pub(super) format: Option<Format>,
    /// Nash allocation of attention and MLP matrices to this true bits per weight (over all parameters).
    #[arg(long, allow_hyphen_values = true, value_parser = super::real(0.0, 32.0))]
    pub(super) target_bpw: Option<f64>,
    /// Price the Nash allocation by importance-weighted weight error instead of measured sensitivity (the change
    /// in KL divergence quantizing each tensor causes on the calibration text, measured when --calib-text is given).
    #[arg(long)]
    pub(super) weight_error_prices: bool,
    /// How block grids are chosen (packed): rtn (min-max, round to nearest), ls (importance-weighted least
    /// squares, weighted by E[x²] of each input column when there is a calibration text) or gptq (error feedback
    /// through the inverse of the inputs' E[x xᵀ] on least-squares grids; single-tier plans, needs a calibration
    /// text, else least squares). Default: ls for --target-bpw, the preset's or file's otherwise (the presets are
    /// RTN, as the original).
    #[arg(long)]
    pub(super) quantizer: Option<QuantizerKind>,
    /// A quantization.toml (or .json), e.g. from an earlier export.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Importance method, replacing the preset's or file's.
    #[arg(long, value_enum)]
    pub(super) importance: Option<super::ImportanceArg>,
    /// Output: with --format gguf, a .gguf file (an existing one is replaced only when we wrote it, or with
    /// --force). Packed: a folder (model.safetensors, quantization.toml, config.json, tokenizer.json).
    /// It is created in an existing parent folder; an existing folder is written into only when it is empty or
    /// an earlier export of ours, or with --force, and then only those four files are replaced. It may never be,
    /// contain or lie inside the model or any other input or output.
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Also write dequantized fp16 weights in plain Hugging Face layout to this folder (same rules as --out).
    #[arg(long)]
    pub(super) export_hf: Option<PathBuf>,
    /// Write our files into an existing non-empty folder that is not an export of ours (its other files stay).
    #[arg(long)]
    pub(super) force: bool,
    /// Calibration text: E[x²] of every matrix's inputs (activation importance, least-squares grids, GGUF's
    /// imatrix-weighted block search), E[x xᵀ] for GPTQ, and the measured Nash prices. Default: windows from the
    /// end of --eval-text, which evaluation then leaves out. With neither, grids are unweighted and GGUF blocks
    /// use llama-quantize's reference encoders.
    #[arg(long)]
    pub(super) calib_text: Option<PathBuf>,
    /// Evaluate the quantized model on this text.
    #[arg(long)]
    pub(super) eval_text: Option<PathBuf>,
    #[command(flatten)]
    pub(super) windows: super::WindowArgs,
    #[arg(long)]
    pub(super) json: bool,
}

/// The tokens of --calib-text and --eval-text, as the model reads them.
pub(super) struct Texts {
    pub calib: Option<Vec<u32>>,
    pub eval: Option<Vec<u32>>,
}

impl Texts {
    pub fn read(model: &nash_swarm::Model, args: &QuantizeArgs) -> anyhow::Result<Texts> {
        let read = |path: &Option<PathBuf>| -> anyhow::Result<Option<Vec<u32>>> {
            Ok(match path {
                Some(path) => Some(model.encode(&eval::read_text(path)?)?),
                None => None,
            })
        };
        Ok(Texts { calib: read(&args.calib_text)?, eval: read(&args.eval_text)? })
    }

    /// Where calibration comes from: --calib-text, else the end of --eval-text (which evaluation then leaves out).
    pub fn calibration<'a>(&'a self, args: &'a QuantizeArgs) -> Option<CalibrationText<'a>> {
        match (&self.calib, &args.calib_text, &self.eval, &args.eval_text) {
            (Some(tokens), Some(path), _, _) => Some(CalibrationText::Own { tokens, path }),
            (_, _, Some(tokens), Some(path)) => Some(CalibrationText::EndOf { tokens, path }),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Packed,
    Gguf,
}

impl QuantizeArgs {
    fn format(&self) -> Format {
        let gguf_name = self.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        self.format.unwrap_or(if gguf_name { Format::Gguf } else { Format::Packed })
    }
}

pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    if args.format == Some(Format::Packed) && args.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        anyhow::bail!(
            "--out {}: a packed export is a folder; name it without .gguf, or use --format gguf",
            args.out.display()
        );
    }
    check_outputs(&args)?;
    if args.format() == Format::Gguf {
        return super::quantize_gguf::run(&args);
    }
    let model = nash_swarm::load(&args.model)?;
    let (job, bar) = super::progress_job("quantize");
    let texts = Texts::read(&model, &args)?;
    let start = Instant::now();
    let mut config = match (&args.preset, &args.config) {
        (Some(name), _) => QuantConfig::preset(name)?,
        (_, Some(path)) => QuantConfig::read(path)?,
        _ => QuantConfig::uniform(4, nash_swarm::quant::GroupSize::G(128)),
    };
    if let Some(importance) = args.importance {
        config.importance = importance.method();
    }
    config.quantizer = match (args.quantizer, args.target_bpw) {
        (Some(quantizer), _) => quantizer,
        (None, Some(_)) => QuantizerKind::LeastSquares,
        (None, None) => config.quantizer,
    };
    // `--importance` was copied into the configuration above, so this covers `--target-bpw` too.
    let calibration_text = texts.calibration(&args);
    if matches!(config.importance, ImportanceMethod::Activation) && calibration_text.is_none() {
        anyhow::bail!(
            "activation importance needs --calib-text PATH or --eval-text PATH (calibration then uses its end)"
        );
    }
    let calibration =
        pipeline::calibrate(&model, &config.importance, config.quantizer, config.calibration, calibration_text, &job)?;
    let (mut allocation, mut sensitivity) = (None, None);
    if let Some(target) = args.target_bpw {
        let pricing = match calibration_text {
            Some(text) if !args.weight_error_prices => pipeline::Pricing::Measured(text),
            _ => pipeline::Pricing::WeightError,
        };
        let (allocated, solved, measured) =
            pipeline::allocate(&model, &config, target, calibration.stats.as_ref(), pricing, &job)?;
        config = allocated;
        allocation = Some(solved);
        sensitivity = measured;
    }
    let allocation_seconds = start.elapsed().as_secs_f64();
    // Each tensor is written as it is made; evaluation and the fp16 export read the folder written.
    let written = formats::packed::quantize_to(&model, &config, calibration.stats.as_ref(), &job, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let needs_result = args.export_hf.is_some() || texts.eval.is_some();
    let result = if needs_result { Some(nash_swarm::load(&args.out)?) } else { None };
    if let (Some(hf), Some(result)) = (&args.export_hf, &result) {
        formats::hf_fp16::export(result, &config, &result.weights, hf)?;
    }
    let (b, size_bytes) = (&written.bits, written.size_bytes);
    let mut out = json!({
        "model": args.model, "out": args.out, "configuration": config.summary(), "params": b.params,
        "quantized_weights": b.quantized_weights, "payload_bpw": b.payload_bpw, "true_bpw": b.true_bpw,
        "true_bpw_entropy_coded_map": b.true_bpw_entropy_coded_map, "size_bytes": size_bytes,
        "compression_vs_fp32": b.compression_vs_fp32, "compression_vs_fp16": b.compression_vs_fp16,
        "quantize_seconds": written.quantize_seconds,
        "bits": {"payload": b.payload_bits, "block_params": b.param_bits, "tier_map": b.tier_map_bits, "fp16": b.fp16_bits},
    });
    if let Some(a) = &allocation {
        out["nash"] = json!({"target_bpw": a.target_bpw, "true_bpw": a.true_bpw, "price": a.price,
            "total_error": a.total_error, "allocation_seconds": allocation_seconds});
        add_pricing(&mut out["nash"], sensitivity.as_ref());
    }
    if let (Some(tokens), Some(path), Some(result)) = (&texts.eval, &args.eval_text, &result) {
        let usable = &tokens[..calibration.usable_tokens.unwrap_or(tokens.len())];
        let windows = eval::windows(&model, usable, args.windows.spec(), path)?;
        let (report, _) = eval::evaluate_ppl(result, &windows, Kld::Skip, &job)?;
        add_perplexity(&mut out, &report);
    }
    bar.finish_and_clear();
    emit(&out, args.json, print_human)
}

/// The evaluation's figures in a quantize result.
pub(super) fn add_perplexity(out: &mut serde_json::Value, report: &eval::PplReport) {
    out["ppl"] = report.ppl.into();
    out["nll"] = report.nll.into();
    out["nll_stderr"] = report.nll_stderr.into();
    out["tokens_scored"] = report.tokens_scored.into();
}

/// One JSON line, or the human form.
pub(super) fn emit(out: &serde_json::Value, json: bool, human: fn(&serde_json::Value)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(out)?);
    } else {
        human(out);
    }
    Ok(())
}

/// The allocation line of a quantize result, when a target bpw was given.
pub(super) fn print_nash(out: &serde_json::Value) {
    if let Some(nash) = out.get("nash") {
        println!(
            "nash           price lambda = {:.3e} ({}), {:.3} bpw for a target of {:.3}",
            nash["price"].as_f64().unwrap_or(0.0),
            nash["prices"].as_str().unwrap_or("weight error"),
            nash["true_bpw"].as_f64().unwrap_or(0.0),
            nash["target_bpw"].as_f64().unwrap_or(0.0)
        );
        let s = &nash["sensitivity"];
        if s.is_object() {
            let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "sensitivity    {} tensor x strategy pairs measured in {:.0} s{}; held out {}: Spearman {:.3} \
                 (weight error alone: {:.3})",
                s["fitted_pairs"],
                f("seconds"),
                if s["from_cache"] == true { " (cached)" } else { "" },
                s["holdout_pairs"],
                f("spearman"),
                f("spearman_weight_error")
            );
        }
    }
}

/// How a Nash allocation was priced, added to its JSON: measured ΔKLD (with the measurement) or weight error.
pub(super) fn add_pricing(
    nash: &mut serde_json::Value,
    sensitivity: Option<&nash_swarm::alloc::sensitivity::Sensitivity>,
) {
    nash["prices"] = (if sensitivity.is_some() { "measured ΔKLD" } else { "weight error" }).into();
    nash["sensitivity"] = sensitivity.map(sensitivity_summary).into();
}

/// What the sensitivity measurement reports in --json and on the terminal.
pub(super) fn sensitivity_summary(s: &nash_swarm::alloc::sensitivity::Sensitivity) -> serde_json::Value {
    serde_json::json!({
        "fitted_pairs": s.fitted.len(), "holdout_pairs": s.holdout.len(), "spearman": s.spearman,
        "spearman_weight_error": s.spearman_weight_error, "seconds": s.seconds, "from_cache": s.from_cache,
        "calibration_tokens": s.spec.windows * s.spec.tokens,
    })
}

/// The perplexity line of a quantize result, when it was evaluated.
pub(super) fn print_perplexity(out: &serde_json::Value) {
    if out.get("ppl").is_some() {
        let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "perplexity     {:.3} (mean NLL {:.4} ± {:.4}, {} tokens)",
            f("ppl"),
            f("nll"),
            f("nll_stderr"),
            out["tokens_scored"]
        );
    }
}

/// Every output clear of every input and of each other, and writable, before anything is read or computed.
fn check_outputs(args: &QuantizeArgs) -> anyhow::Result<()> {
    let model_root = nash_swarm::formats::model_root(&args.model);
    let mut inputs = vec![Input { what: "model", path: &model_root }];
    let named =
        [("configuration", &args.config), ("calibration text", &args.calib_text), ("evaluation text", &args.eval_text)];
    inputs.extend(named.iter().filter_map(|(what, p)| p.as_deref().map(|path| Input { what, path })));
    let mut outputs = vec![match args.format() {
        Format::Packed => {
            Output { flag: "--out", path: &args.out, kind: Kind::Folder, ours: formats::packed::is_packed_dir }
        }
        Format::Gguf => {
            Output { flag: "--out", path: &args.out, kind: Kind::File, ours: formats::gguf::export::is_our_gguf }
        }
    }];
    if let Some(hf) = &args.export_hf {
        outputs.push(Output {
            flag: "--export-hf",
            path: hf,
            kind: Kind::Folder,
            ours: formats::hf_fp16::is_hf_export,
        });
    }
    Ok(nash_swarm::output::check(&inputs, &outputs, args.force)?)
}

fn print_human(out: &serde_json::Value) {
    let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    println!("wrote          {}", out["out"].as_str().unwrap_or("?"));
    println!("configuration  {}", out["configuration"].as_str().unwrap_or("?"));
    println!("payload        {:.3} bits per quantized weight", f("payload_bpw"));
    println!(
        "true           {:.3} bits per parameter ({:.3} with an entropy-coded tier map)",
        f("true_bpw"),
        f("true_bpw_entropy_coded_map")
    );
    println!(
        "size           {} bytes ({:.1}% smaller than fp32, {:.1}% than fp16)",
        out["size_bytes"],
        100.0 * f("compression_vs_fp32"),
        100.0 * f("compression_vs_fp16")
    );
    println!("quantized in   {:.2} s", f("quantize_seconds"));
    print_nash(out);
    print_perplexity(out);
}
