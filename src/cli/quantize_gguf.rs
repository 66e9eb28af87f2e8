//! `quantize --format gguf`: a llama-quantize preset's per-tensor block types, encoded (importance-weighted with
//! `--calib-text`), written as one GGUF file, then read back and evaluated from that file.

use anyhow::Context;
use nash_swarm::alloc;
use nash_swarm::eval::{self, Kld};
use nash_swarm::formats::gguf::export::{self, GgufReport};
use nash_swarm::importance::ImportanceMethod;
use nash_swarm::pipeline;
use nash_swarm::quant::ggml::BlockType;
use nash_swarm::quant::ggml::preset::Preset;
use serde_json::json;

use super::quantize::{self, QuantizeArgs};

pub fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    let preset = gguf_preset(args)?;
    let model = nash_swarm::load(&args.model)?;
    export::check_writable(&model)?;
    warn_if_requantized(&model);
    let (job, bar) = super::progress_job("quantize");
    let texts = quantize::Texts::read(&model, args)?;
    // Float presets store no blocks: calibration would change nothing. Without --calib-text, the end of
    // --eval-text calibrates and evaluation stops before it (as for packed exports).
    let uses_blocks = args.target_bpw.is_some() || preset.default.is_quantized();
    let calib = texts.calibration(args).filter(|_| uses_blocks);
    let (stats, usable_tokens) = match calib {
        Some(text) => {
            let spec = nash_swarm::quant::config::CalibrationSpec::default();
            let calibration = pipeline::calibrate(
                &model,
                &ImportanceMethod::Activation,
                nash_swarm::quant::QuantizerKind::Rtn,
                spec,
                Some(text),
                &job,
            )?;
            (calibration.stats, calibration.usable_tokens)
        }
        None => (None, None),
    };
    let mut nash = None;
    let plan = match args.target_bpw {
        Some(target) => {
            let mut game = alloc::gguf::build(&model, stats.as_ref(), &job)?;
            let mut sensitivity = None;
            if let (Some(text), false) = (calib, args.weight_error_prices) {
                let decoded = |p: usize, o: usize| game.decoded(&model, stats.as_ref(), p, o);
                let measured = pipeline::measure_sensitivity(&model, &game.game, &decoded, text, &job)?;
                game = game.repriced(&measured)?;
                sensitivity = Some(measured);
            }
            let (plan, allocation) = game.plan(target)?;
            let mut fields = json!({"target_bpw": target, "true_bpw": allocation.true_bpw, "price": allocation.price});
            quantize::add_pricing(&mut fields, sensitivity.as_ref());
            nash = Some(fields);
            plan
        }
        None => export::preset_plan(&model, preset, stats.is_some())?,
    };
    let report = export::export(&model, &plan, stats.as_ref(), &args.out, &job)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut out = summary(args, &plan.label, stats.is_some(), &report);
    if let Some(nash) = nash {
        out["nash"] = nash;
    }
    if let Some(path) = &args.eval_text {
        // Scored from the file as written, with its own tokenizer: what llama.cpp would read. The calibration end
        // (counted in the source's tokens, which the written tokenizer reproduces) is left out.
        let written = nash_swarm::load(&args.out)?;
        let tokens = written.encode(&eval::read_text(path)?)?;
        let tokens = &tokens[..usable_tokens.unwrap_or(tokens.len()).min(tokens.len())];
        let windows = eval::windows(&written, tokens, args.windows.spec(), path)?;
        let (report, _) = eval::evaluate_ppl(&written, &windows, Kld::Skip, &job)?;
        quantize::add_perplexity(&mut out, &report);
    }
    bar.finish_and_clear();
    quantize::emit(&out, args.json, print_human)
}

/// llama-quantize refuses to requantize without --allow-requantize; we go on (the demo model is a Q4_1 GGUF) but
/// say that the weights were already rounded once.
fn warn_if_requantized(model: &nash_swarm::Model) {
    use nash_swarm::model::SourceFormat;
    let quantized = |d: &String| BlockType::parse(d).is_some_and(|t| t.is_quantized());
    let stored = model.stored_dtypes.values().find(|d| quantized(d));
    if model.format == SourceFormat::Packed || stored.is_some() {
        let what = stored.map_or("our packed grids".to_string(), |d| d.clone());
        eprintln!(
            "note: {} is already quantized ({what}); its dequantized weights are quantized again",
            model.source.display()
        );
    }
}

/// The preset a GGUF export uses (unused with --target-bpw); what cannot be written as GGUF is refused before
/// any work.
fn gguf_preset(args: &QuantizeArgs) -> anyhow::Result<Preset> {
    if args.config.is_some() {
        anyhow::bail!(
            "--format gguf takes --preset (one of {}) or --target-bpw; a configuration file of our own grids \
             (per-weight tiers, groups of 64 or 128, RTN min-max blocks) cannot be stored in ggml's block types: \
             the nearest GGUF plans are q8_0 for 8-bit, q5_1/q5_k_m for 5-bit, q4_1/q4_k_m for 4-bit, q3_k_m for \
             3-bit and q2_k for 2-bit tiers, or --target-bpw at the configuration's true bpw",
            Preset::names()
        );
    }
    if args.export_hf.is_some() || args.importance.is_some() || args.quantizer.is_some() {
        anyhow::bail!(
            "--format gguf takes neither --export-hf, --importance nor --quantizer (ggml's block types have their \
             own importance-weighted search, which --calib-text feeds)"
        );
    }
    if args.target_bpw.is_some() && args.preset.is_some() {
        anyhow::bail!("--format gguf takes --preset or --target-bpw, not both");
    }
    let name = args.preset.as_deref().unwrap_or("q4_k_m");
    Preset::parse(name).with_context(|| format!("--preset {name} is not a GGUF preset; use one of {}", Preset::names()))
}

fn summary(args: &QuantizeArgs, preset: &str, calibrated: bool, report: &GgufReport) -> serde_json::Value {
    let types: serde_json::Map<String, serde_json::Value> =
        report.weights_by_type.iter().map(|(ty, n)| (ty.name().to_string(), json!(n))).collect();
    json!({
        "model": args.model, "out": args.out, "format": "gguf", "preset": preset, "imatrix": calibrated,
        "params": report.params, "tensor_bytes": report.tensor_bytes, "file_bytes": report.file_bytes,
        "tensor_bpw": report.tensor_bpw(), "file_bpw": report.file_bpw(), "weights_by_type": types,
    })
}

fn print_human(out: &serde_json::Value) {
    let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    println!("wrote          {}", out["out"].as_str().unwrap_or("?"));
    let imatrix = if out["imatrix"] == true { "importance-weighted (calibration)" } else { "reference encoders" };
    println!("plan           {} ({imatrix})", out["preset"].as_str().unwrap_or("?"));
    quantize::print_nash(out);
    println!(
        "size           {} bytes of tensors = {:.3} bits per parameter; whole file {} bytes = {:.3}",
        out["tensor_bytes"],
        f("tensor_bpw"),
        out["file_bytes"],
        f("file_bpw")
    );
    if let Some(types) = out["weights_by_type"].as_object() {
        let list: Vec<String> = types.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("weights        {}", list.join(", "));
    }
    quantize::print_perplexity(out);
}
