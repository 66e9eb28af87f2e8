//! Figures for the speed and memory goals, printed rather than asserted (timed tests lie on a noisy machine).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use nash_swarm::eval::{self, Kld, WindowSpec};
use serde_json::json;

#[derive(Args)]
pub struct BenchArgs {
    /// Model to measure; default: the demo model (fetched if needed).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Evaluation text; default: $NASH_SWARM_TEXT or ../shared/data/wikitext-2-raw/wiki.test.raw.
    #[arg(long)]
    text: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Windows to evaluate for the throughput figure.
    #[arg(long, default_value_t = 4)]
    windows: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let model_path = match args.model {
        Some(p) => p,
        None => nash_swarm::demo::fetch(&mut |line| eprintln!("{line}"))?,
    };
    let text_path = args.text.or_else(super::default_text).ok_or_else(|| anyhow::anyhow!("pass --text PATH"))?;

    let start = Instant::now();
    let model = nash_swarm::load(&model_path)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let f32_bytes = model.weights.f32_bytes();

    let text = eval::read_text(&text_path)?;
    let spec = WindowSpec { ctx: args.ctx, max_windows: Some(args.windows), bos: false };
    let windows = eval::windows(&model, &model.encode(&text)?, spec, &text_path)?;
    // One warm-up window so page faults and thread-pool start-up are not in the figure.
    eval::evaluate_ppl(&model, &windows[..1], Kld::Skip, &nash_swarm::Job::silent())?;
    let (report, _) = eval::evaluate_ppl(&model, &windows, Kld::Skip, &nash_swarm::Job::silent())?;
    let peak_rss = peak_rss_bytes();
    let quant = quantization_figures(&model)?;

    let figures = json!({
        "model": model_path, "params": model.param_count(), "threads": rayon::current_num_threads(),
        "load_seconds": load_seconds, "ctx": args.ctx, "windows": report.windows,
        "eval_tokens_per_second": report.tokens_per_second, "f32_bytes": f32_bytes,
        "peak_rss_bytes": peak_rss, "peak_rss_over_f32": peak_rss.map(|r| r as f64 / f32_bytes as f64),
        "quantize_seed_seconds": quant.quantize_seed_seconds, "importance_index_seconds": quant.index_seconds,
        "threshold_estimate_ms": quant.estimate_ms, "nash_game_seconds": quant.game_seconds,
        "nash_solve_seconds": quant.solve_seconds,
    });
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("model                 {}", model_path.display());
        println!("parameters            {}", model.param_count());
        println!("threads               {}", rayon::current_num_threads());
        println!("load (dequantized)    {load_seconds:.2} s");
        println!(
            "eval throughput       {:.1} tokens/s (ctx {}, {} windows)",
            report.tokens_per_second, args.ctx, report.windows
        );
        if let Some(rss) = peak_rss {
            println!(
                "peak RSS (eval)       {:.0} MiB = {:.2}x the f32 weights ({:.0} MiB)",
                mib(rss),
                rss as f64 / f32_bytes as f64,
                mib(f32_bytes as u64)
            );
        }
        println!("quantize --preset seed {:.2} s (importance + tiers + RTN + packing)", quant.quantize_seed_seconds);
        println!("importance histograms {:.2} s (once per importance setting)", quant.index_seconds);
        println!("threshold change      {:.3} ms (new shares, payload/true bpw, size; mean of 100)", quant.estimate_ms);
        println!("nash strategy errors  {:.2} s ({} strategies per tensor)", quant.game_seconds, quant.menu_size);
        println!("nash allocation       {:.4} s (one target, errors known)", quant.solve_seconds);
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// VmHWM from /proc (Linux): the process's peak resident set.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct QuantFigures {
    quantize_seed_seconds: f64,
    index_seconds: f64,
    estimate_ms: f64,
    game_seconds: f64,
    solve_seconds: f64,
    menu_size: usize,
}

fn quantization_figures(model: &nash_swarm::Model) -> anyhow::Result<QuantFigures> {
    use nash_swarm::quant::estimate::{ImportanceIndex, estimate};
    use nash_swarm::quant::{QuantConfig, Tier, quantize_model};
    let job = nash_swarm::Job::silent();
    let seed = QuantConfig::seed();
    let quantize_seed_seconds = quantize_model(model, &seed, None, &job)?.quantize_seconds;

    let start = Instant::now();
    let names = nash_swarm::quant::plan::needs_scores(&nash_swarm::quant::plan::treatments(model, &seed));
    let scores = nash_swarm::importance::compute(model, &names, &seed.importance, None, &job)?;
    let index = ImportanceIndex::build(model, &scores);
    let index_seconds = start.elapsed().as_secs_f64();
    drop(scores);

    // A drag: 100 threshold positions, each a full-model estimate (global scope reads the histograms).
    let start = Instant::now();
    for step in 0..100 {
        let top = 0.05 + 0.002 * step as f64;
        let config = QuantConfig {
            scope: nash_swarm::quant::Scope::Global,
            tiers: vec![Tier { share: top, bits: 8 }, Tier { share: 0.2, bits: 4 }, Tier { share: 0.8 - top, bits: 2 }],
            ..seed.clone()
        };
        std::hint::black_box(estimate(model, &index, &config));
    }
    let estimate_ms = start.elapsed().as_secs_f64() * 1000.0 / 100.0;

    let start = Instant::now();
    let (game, _) = nash_swarm::compare::nash_game(model, &Default::default(), None, &job)?;
    let game_seconds = start.elapsed().as_secs_f64();
    let (cheapest, richest) = game.range();
    let start = Instant::now();
    game.solve((cheapest + richest) / 2.0)?;
    let solve_seconds = start.elapsed().as_secs_f64();
    Ok(QuantFigures {
        quantize_seed_seconds,
        index_seconds,
        estimate_ms,
        game_seconds,
        solve_seconds,
        menu_size: game.menu.len(),
    })
}
