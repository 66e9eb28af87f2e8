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

    let figures = json!({
        "model": model_path, "params": model.param_count(), "threads": rayon::current_num_threads(),
        "load_seconds": load_seconds, "ctx": args.ctx, "windows": report.windows,
        "eval_tokens_per_second": report.tokens_per_second, "f32_bytes": f32_bytes,
        "peak_rss_bytes": peak_rss, "peak_rss_over_f32": peak_rss.map(|r| r as f64 / f32_bytes as f64),
    });
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("model                 {}", model_path.display());
        println!("parameters            {}", model.param_count());
        println!("threads               {}", rayon::current_num_threads());
        println!("load (dequantized)    {load_seconds:.2} s");
        println!("eval throughput       {:.1} tokens/s (ctx {}, {} windows)", report.tokens_per_second, args.ctx, report.windows);
        if let Some(rss) = peak_rss {
            println!("peak RSS              {:.0} MiB = {:.2}x the f32 weights ({:.0} MiB)", mib(rss), rss as f64 / f32_bytes as f64, mib(f32_bytes as u64));
        }
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
