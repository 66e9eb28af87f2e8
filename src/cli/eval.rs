use std::path::PathBuf;

use clap::{Args, ValueEnum};
use nash_swarm::eval::{self, Kld};
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
pub enum Protocol {
    /// Perplexity over non-overlapping windows of --ctx tokens.
    Ppl,
    /// The original prototype's loss: 50 texts truncated to 64 tokens.
    Seed,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Hugging Face folder, .gguf file or packed export folder.
    #[arg(long)]
    pub model: PathBuf,
    /// UTF-8 evaluation text (e.g. WikiText-2's wiki.test.raw).
    #[arg(long)]
    pub text: PathBuf,
    #[command(flatten)]
    pub windows: super::WindowArgs,
    #[arg(long, value_enum, default_value = "ppl")]
    pub protocol: Protocol,
    /// Texts for --protocol seed.
    #[arg(long, allow_hyphen_values = true, default_value_t = nash_swarm::eval::seed::SEED_TEXTS, value_parser = super::count(1, 1_000_000))]
    pub seed_texts: usize,
    /// Also report KL divergence, top-1 agreement against this (unquantized) model.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let model = nash_swarm::load(&args.model)?;
    let text = eval::read_text(&args.text)?;
    let (job, bar) = super::progress_job("eval");
    let mut out = json!({
        "model": args.model, "architecture": model.architecture.name(), "params": model.param_count(),
        "text": args.text,
    });
    match args.protocol {
        Protocol::Ppl => {
            let spec = args.windows.spec();
            let windows = eval::windows(&model, &eval::tokens_for(&model, &text, spec)?, spec, &args.text)?;
            let reference = match &args.reference {
                Some(path) => {
                    let reference = nash_swarm::load(path)?;
                    eval::check_same_vocabulary(&model, &reference)?;
                    Some(eval::evaluate_ppl(&reference, &windows, Kld::Record, &job)?.1.expect("recorded"))
                }
                None => None,
            };
            let kld = reference.as_ref().map_or(Kld::Skip, Kld::Against);
            let (report, _) = eval::evaluate_ppl(&model, &windows, kld, &job)?;
            bar.finish_and_clear();
            let extra = json!({"protocol": "ppl", "ctx": spec.ctx, "bos": spec.bos, "windows": report.windows,
                "tokens_scored": report.tokens_scored, "nll": report.nll, "nll_stderr": report.nll_stderr,
                "ppl": report.ppl, "tokens_per_second": report.tokens_per_second, "seconds": report.seconds,
                "kld_mean": report.kld.map(|k| k.mean), "kld_p99": report.kld.map(|k| k.p99),
                "top1_agreement": report.kld.map(|k| k.top1_agreement)});
            merge(&mut out, extra);
        }
        Protocol::Seed => {
            let texts = eval::seed_texts(&model, &text, args.seed_texts, args.windows.bos)?;
            let report = eval::evaluate_seed(&model, &texts, &job)?;
            bar.finish_and_clear();
            let extra = json!({"protocol": "seed", "texts": report.texts, "tokens_scored": report.tokens_scored,
                "nll": report.loss, "nll_stderr": report.loss_stderr, "ppl": report.loss.exp(),
                "tokens_per_second": report.tokens_per_second, "seconds": report.seconds});
            merge(&mut out, extra);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print_human(&out);
    }
    Ok(())
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from.into_iter().filter(|(_, v)| !v.is_null()));
    }
}

fn print_human(out: &serde_json::Value) {
    let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "model:          {} ({}, {} parameters)",
        out["model"].as_str().unwrap_or("?"),
        out["architecture"].as_str().unwrap_or("?"),
        out["params"]
    );
    println!("protocol:       {}", out["protocol"].as_str().unwrap_or("?"));
    println!("tokens scored:  {}", out["tokens_scored"]);
    println!("mean NLL:       {:.4} ± {:.4}", f("nll"), f("nll_stderr"));
    println!("perplexity:     {:.3}", f("ppl"));
    if out.get("kld_mean").is_some() {
        println!("KLD mean / p99: {:.5} / {:.5}", f("kld_mean"), f("kld_p99"));
        println!("top-1 agree:    {:.2}%", 100.0 * f("top1_agreement"));
    }
    println!("speed:          {:.1} tokens/s ({:.1} s)", f("tokens_per_second"), f("seconds"));
}
