//! Figures for the speed and memory goals, printed rather than asserted (timed tests lie on a noisy machine).

use nash_swarm::quant::QuantizerKind;
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
    #[arg(long, allow_hyphen_values = true, default_value_t = 512, value_parser = super::count(2, super::MAX_CONTEXT))]
    ctx: usize,
    /// Windows to evaluate for the throughput figure.
    #[arg(long, allow_hyphen_values = true, default_value_t = 4, value_parser = super::count(1, 100_000))]
    windows: usize,
    #[arg(long)]
    json: bool,
    /// Also run llama.cpp (llama-cpp-python 0.3.36) on the same GGUF and windows, and print the ratio.
    #[arg(long)]
    llama_cpp: bool,
    /// Also time the measured-sensitivity pass of the Nash prices, uncached (about 3 minutes for SmolLM2 on 2
    /// cores).
    #[arg(long)]
    sensitivity: bool,
    /// Instead: a random bf16 model with these shapes (written once into the cache): load, evaluate, quantize to
    /// uniform 4-bit, export and evaluate the result, with time per layer and peak anonymous RSS.
    #[arg(long, value_enum)]
    synthetic: Option<super::synthetic::Shape>,
    /// Layer counts of the synthetic model to measure (default: a quarter, half and all of the real count).
    #[arg(long, value_delimiter = ',', value_parser = super::count(1, 1000))]
    layers: Vec<usize>,
    /// Only the eval throughput (warm-up window, then the windows), as JSON: what `bench` runs in a child
    /// process without `OPENBLAS_CORETYPE`.
    #[arg(long, hide = true)]
    eval_only: bool,
}

/// Rounds of the throughput figures, each ours then llama.cpp's then (when `OPENBLAS_CORETYPE` is set) ours with
/// the CPU's own kernels, so the compared runs lie seconds apart on a machine whose speed drifts; the best of each.
const ROUNDS: usize = 2;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(shape) = args.synthetic {
        return synthetic_figures(shape, &args);
    }
    let model_path = match args.model {
        Some(p) => p,
        None => nash_swarm::demo::set_up(&mut |line| eprintln!("{line}"))?,
    };
    let text_path =
        args.text.or_else(nash_swarm::demo::default_text).ok_or_else(|| anyhow::anyhow!("pass --text PATH"))?;

    let start = Instant::now();
    let model = nash_swarm::load(&model_path)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let f32_bytes = model.weights.f32_bytes();
    let stored_bytes = stored_bytes(&model_path);

    let text = eval::read_text(&text_path)?;
    let spec = WindowSpec { ctx: args.ctx, max_windows: Some(args.windows), bos: false };
    let windows = eval::windows(&model, &eval::tokens_for(&model, &text, spec)?, spec, &text_path)?;
    // One warm-up window so page faults and thread-pool start-up are not in the figure.
    eval::evaluate_ppl(&model, &windows[..1], Kld::Skip, &nash_swarm::Job::silent())?;
    let backend = nash_swarm::model::gemm::backend_name();
    if args.eval_only {
        let (report, _) = eval::evaluate_ppl(&model, &windows, Kld::Skip, &nash_swarm::Job::silent())?;
        let figures = json!({"tokens_per_second": report.tokens_per_second, "gemm_backend": backend});
        println!("{figures}");
        return Ok(());
    }
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(Round {
            ours: eval::evaluate_ppl(&model, &windows, Kld::Skip, &nash_swarm::Job::silent())?.0.tokens_per_second,
            llama_cpp: args.llama_cpp.then(|| llama_cpp_figure(&model_path, &text_path, args.ctx, args.windows)),
            own_kernels: own_kernels_figure(&model_path, &text_path, args.ctx, args.windows),
            gemm_peak: gemm_peak_gflops()?,
        });
    }
    let ours = best(rounds.iter().map(|r| r.ours));
    let gemm_peak = best(rounds.iter().map(|r| r.gemm_peak));
    // llama.cpp's fastest round, with the largest peak RSS of any.
    let llama_cpp = fastest(rounds.iter().map(|r| r.llama_cpp.clone()), |l| l.tokens_per_second).map(|best| {
        let peak_rss = rounds.iter().filter_map(|r| r.llama_cpp.as_ref()?.as_ref().ok()).map(|l| l.peak_rss).max();
        best.map(|l| LlamaCpp { peak_rss: peak_rss.unwrap_or(l.peak_rss), ..l })
    });
    let own_kernels = fastest(rounds.iter().map(|r| r.own_kernels.clone()), |o| o.0);
    let peak_rss = peak_rss_bytes();
    // The same windows on candle's own GEMM, as a reference in this run (skipped when candle's is the one that ran).
    let candle_tps = if backend != "candle" {
        nash_swarm::model::gemm::set_fast_kernels_enabled(false);
        let candle = eval::evaluate_ppl(&model, &windows, Kld::Skip, &nash_swarm::Job::silent());
        nash_swarm::model::gemm::set_fast_kernels_enabled(true);
        Some(candle?.0.tokens_per_second)
    } else {
        None
    };
    let eval_gflops = ours * matrix_flops_per_token(&model)? / 1e9;
    let quant = quantization_figures(&model)?;
    let sensitivity =
        if args.sensitivity { Some(sensitivity_figure(&model, &quant.game, &text, &text_path)?) } else { None };
    let llama_cpp_tps = llama_cpp.as_ref().and_then(|r| r.as_ref().ok()).map(|l| l.tokens_per_second);
    let llama_cpp_rss = llama_cpp.as_ref().and_then(|r| r.as_ref().ok()).map(|l| l.peak_rss);

    let figures = json!({
        "model": model_path, "params": model.param_count(), "threads": rayon::current_num_threads(),
        "load_seconds": load_seconds, "ctx": args.ctx, "windows": windows.len(),
        "eval_tokens_per_second": ours, "rounds": ROUNDS, "gemm_backend": backend,
        "eval_tokens_per_second_candle_gemm": candle_tps,
        "eval_matrix_gflops": eval_gflops, "gemm_peak_gflops": gemm_peak, "f32_bytes": f32_bytes,
        "peak_rss_bytes": peak_rss, "peak_rss_over_f32": peak_rss.map(|r| r as f64 / f32_bytes as f64),
        "quantize_seed_seconds": quant.quantize_seed.min,
        "quantize_seed_seconds_median": quant.quantize_seed.median,
        "quantize_uniform4_seconds": quant.quantize_uniform4.min, "read_pass_seconds": quant.read_pass.min,
        "quantize_seed_ls_seconds": quant.quantize_seed_ls.min,
        "quantize_uniform4_ls_seconds": quant.quantize_uniform4_ls.min,
        "importance_index_seconds": quant.index_seconds,
        "threshold_estimate_ms": quant.estimate_ms, "nash_game_seconds": quant.game_seconds,
        "nash_solve_seconds": quant.solve_seconds,
        "sensitivity": sensitivity.as_ref().map(super::quantize::sensitivity_summary),
        "llama_cpp_tokens_per_second": llama_cpp_tps, "llama_cpp_peak_rss_bytes": llama_cpp_rss,
        "model_file_bytes": stored_bytes, "peak_rss_over_model_file": peak_rss.map(|r| r as f64 / stored_bytes as f64),
        "peak_rss_over_llama_cpp": peak_rss.zip(llama_cpp_rss).map(|(a, b)| a as f64 / b as f64),
        "eval_over_llama_cpp": llama_cpp_tps.map(|t| ours / t),
        "eval_over_llama_cpp_by_round": ratios_by_round(&rounds, |r| Some(r.ours)),
        "eval_tokens_per_second_own_kernels": own_kernels.as_ref().and_then(|r| r.as_ref().ok()).map(|o| o.0),
        "own_kernels_over_llama_cpp": own_kernels.as_ref().and_then(|r| r.as_ref().ok()).zip(llama_cpp_tps)
            .map(|(o, t)| o.0 / t),
        "own_kernels_over_llama_cpp_by_round": ratios_by_round(&rounds, Round::own_kernels_tps),
    });
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("model                 {}", model_path.display());
        println!("parameters            {}", model.param_count());
        println!("threads               {}", rayon::current_num_threads());
        println!("load (mapped)         {load_seconds:.2} s");
        println!(
            "eval throughput       {ours:.1} tokens/s (ctx {}, {} window{}; the best of {ROUNDS} rounds)",
            args.ctx,
            windows.len(),
            if windows.len() == 1 { "" } else { "s" }
        );
        println!("matrix products       {backend}");
        println!(
            "  {eval_gflops:.0} GFLOP/s in eval = {:.0}% of the same kernels' peak here, {gemm_peak:.0} GFLOP/s \
             (512x2048x2048, best of the rounds)",
            100.0 * eval_gflops / gemm_peak
        );
        if let Some(candle) = candle_tps {
            println!("  same run, candle GEMM {candle:.1} tokens/s: ours / candle = {:.2}", ours / candle);
        }
        let by_round = |ratios: Vec<f64>| ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
        match &llama_cpp {
            Some(Ok(l)) => println!(
                "llama.cpp, same GGUF  {:.1} tokens/s (forward only, 2 threads): ours / theirs = {:.2} (by round: {})",
                l.tokens_per_second,
                ours / l.tokens_per_second,
                by_round(ratios_by_round(&rounds, |r| Some(r.ours)))
            ),
            Some(Err(e)) => println!("llama.cpp comparison  skipped: {e}"),
            None => {}
        }
        match &own_kernels {
            Some(Ok((tps, backend))) => println!(
                "  without OPENBLAS_CORETYPE: {tps:.1} tokens/s, {backend} (a child process){}",
                llama_cpp_tps.map_or(String::new(), |t| format!(
                    ": ours / theirs = {:.2} (by round: {})",
                    tps / t,
                    by_round(ratios_by_round(&rounds, Round::own_kernels_tps))
                ))
            ),
            Some(Err(e)) => println!("  without OPENBLAS_CORETYPE: skipped: {e}"),
            None => {}
        }
        if let Some(rss) = peak_rss {
            println!(
                "peak RSS (load+eval)  {:.0} MiB = {:.2}x the model's file ({:.0} MiB), {:.2}x its f32 weights",
                mib(rss),
                rss as f64 / stored_bytes as f64,
                mib(stored_bytes),
                rss as f64 / f32_bytes as f64,
            );
        }
        if let (Some(rss), Some(Ok(l))) = (peak_rss, &llama_cpp) {
            println!(
                "  same run, llama.cpp {:.0} MiB (its Python process; {:.0} MiB before the model): ours / theirs = {:.2}",
                mib(l.peak_rss),
                mib(l.rss_before_model),
                rss as f64 / l.peak_rss as f64
            );
        }
        let (seed, uniform4, read) = (quant.quantize_seed, quant.quantize_uniform4, quant.read_pass);
        let (seed_ls, uniform4_ls) = (quant.quantize_seed_ls, quant.quantize_uniform4_ls);
        let per_read = |s: &Spread| s.min / read.min;
        println!("quantize --preset seed {seed} (importance + tiers + RTN + packing)");
        println!("  same run: uniform4   {uniform4}: seed / uniform4 = {:.2}", seed.min / uniform4.min);
        println!("  same run: read pass  {read}: seed / one read of the weights = {:.1}", per_read(&seed));
        println!(
            "  least squares: seed {seed_ls} = {:.1} reads, uniform4 {uniform4_ls} = {:.1} reads (RTN uniform4: {:.1})",
            per_read(&seed_ls),
            per_read(&uniform4_ls),
            per_read(&uniform4)
        );
        // The search's own cost, against the same preset with min-max grids.
        println!(
            "  least squares / RTN: seed {:.2}, uniform4 {:.2}",
            seed_ls.min / seed.min,
            uniform4_ls.min / uniform4.min
        );
        println!("importance histograms {:.2} s (once per importance setting)", quant.index_seconds);
        println!("threshold change      {:.3} ms (new shares, payload/true bpw, size; mean of 100)", quant.estimate_ms);
        println!("nash strategy errors  {:.2} s ({} strategies per tensor)", quant.game_seconds, quant.menu_size);
        println!("nash allocation       {:.4} s (one target, errors known)", quant.solve_seconds);
        if let Some(s) = &sensitivity {
            println!(
                "sensitivity pass      {:.1} s ({} tensors measured + {} held out over {} calibration tokens; \
                 held-out Spearman {:.3}, weight error alone {:.3})",
                s.seconds,
                s.fitted.len(),
                s.holdout.len(),
                s.spec.windows * s.spec.tokens,
                s.spearman,
                s.spearman_weight_error
            );
        }
    }
    Ok(())
}

/// 2 FLOPs per weight of every matrix a token is multiplied by (the layers' and the head): the work of
/// the matrix products, without attention's own (a few percent at ctx 512).
fn matrix_flops_per_token(model: &nash_swarm::Model) -> anyhow::Result<f64> {
    use nash_swarm::model::TensorRole;
    let arch = &model.architecture;
    let layers: usize = (model.weights.0.iter())
        .filter(|(name, t)| t.rank() == 2 && matches!(arch.tensor_role(name), TensorRole::Attention | TensorRole::Mlp))
        .map(|(_, t)| t.elem_count())
        .sum();
    Ok(2.0 * (layers + model.head()?.elem_count()) as f64)
}

/// The best of five `x @ W^T` at a square-ish shape where every backend runs near its peak.
fn gemm_peak_gflops() -> anyhow::Result<f64> {
    use candle_core::{Device, Tensor};
    let (m, n, k) = (512, 2048, 2048);
    let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        std::hint::black_box(nash_swarm::model::gemm::matmul_t(&x, &w)?);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * n * k) as f64 / best / 1e9)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// VmHWM from /proc (Linux): the process's peak resident set.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// A `kB` field of /proc/self/status (Linux), in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The fastest and the median of repeated timings.
#[derive(Clone, Copy)]
struct Spread {
    min: f64,
    median: f64,
    runs: usize,
}

impl Spread {
    fn of(mut seconds: Vec<f64>) -> Spread {
        seconds.sort_by(f64::total_cmp);
        Spread { min: seconds[0], median: seconds[seconds.len() / 2], runs: seconds.len() }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.2} s (median {:.2} s of {})", self.min, self.median, self.runs)
    }
}

/// Reads every 2-D weight once in f32 (a sum of squares, in parallel): the work no quantizer can avoid. Weights
/// held mapped are decoded into buffers reused from tensor to tensor, as quantization decodes them.
fn read_pass_seconds(model: &nash_swarm::Model) -> anyhow::Result<f64> {
    use rayon::prelude::*;
    let sum_of_squares =
        |values: &[f32]| -> f32 { values.par_chunks(1 << 16).map(|c| c.iter().map(|v| v * v).sum::<f32>()).sum() };
    let pool = nash_swarm::memory::Pool::default();
    let start = Instant::now();
    let matrices: Vec<&nash_swarm::model::Stored> = model.weights.0.values().filter(|t| t.rank() == 2).collect();
    matrices.par_iter().try_for_each(|tensor| -> anyhow::Result<()> {
        std::hint::black_box(tensor.with_rows(0..tensor.dims()[0], &pool, |values, _| sum_of_squares(values))?);
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

struct QuantFigures {
    quantize_seed: Spread,
    quantize_uniform4: Spread,
    quantize_seed_ls: Spread,
    quantize_uniform4_ls: Spread,
    read_pass: Spread,
    index_seconds: f64,
    estimate_ms: f64,
    game_seconds: f64,
    solve_seconds: f64,
    menu_size: usize,
    /// The standard game and its base configuration, for the sensitivity figure.
    game: (nash_swarm::alloc::Game, nash_swarm::quant::QuantConfig),
}

fn quantization_figures(model: &nash_swarm::Model) -> anyhow::Result<QuantFigures> {
    use nash_swarm::quant::estimate::{ImportanceIndex, estimate};
    use nash_swarm::quant::{QuantConfig, Tier, quantize_model};
    let job = nash_swarm::Job::silent();
    let seed = QuantConfig::seed();
    // The machine is shared and noisy: five runs each, and two references timed in the same run (a
    // single-tier quantization, and a bare pass that reads every weight once).
    let runs = |config: &QuantConfig| -> anyhow::Result<Spread> {
        let seconds = (0..5).map(|_| Ok(quantize_model(model, config, None, &job)?.quantize_seconds));
        Ok(Spread::of(seconds.collect::<anyhow::Result<Vec<f64>>>()?))
    };
    let quantize_seed = runs(&seed)?;
    let uniform4 = QuantConfig::uniform(4, nash_swarm::quant::GroupSize::G(128));
    let quantize_uniform4 = runs(&uniform4)?;
    let least_squares = |c: &QuantConfig| QuantConfig { quantizer: QuantizerKind::LeastSquares, ..c.clone() };
    let quantize_seed_ls = runs(&least_squares(&seed))?;
    let quantize_uniform4_ls = runs(&least_squares(&uniform4))?;
    let read_pass = Spread::of((0..5).map(|_| read_pass_seconds(model)).collect::<anyhow::Result<Vec<f64>>>()?);

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
    let (game, base) =
        nash_swarm::alloc::standard_game(model, &Default::default(), QuantizerKind::LeastSquares, None, &job)?;
    let game_seconds = start.elapsed().as_secs_f64();
    let (cheapest, richest) = game.range();
    let start = Instant::now();
    game.solve((cheapest + richest) / 2.0)?;
    let solve_seconds = start.elapsed().as_secs_f64();
    Ok(QuantFigures {
        quantize_seed,
        quantize_uniform4,
        quantize_seed_ls,
        quantize_uniform4_ls,
        read_pass,
        index_seconds,
        estimate_ms,
        game_seconds,
        solve_seconds,
        menu_size: game.menu.len(),
        game: (game, base),
    })
}

/// The measured-sensitivity pass of the standard game, timed without its cache (calibration windows from the
/// end of the text).
fn sensitivity_figure(
    model: &nash_swarm::Model,
    (game, base): &(nash_swarm::alloc::Game, nash_swarm::quant::QuantConfig),
    text: &str,
    text_path: &std::path::Path,
) -> anyhow::Result<nash_swarm::alloc::sensitivity::Sensitivity> {
    use nash_swarm::alloc::sensitivity::{self, SensitivitySpec};
    let job = nash_swarm::Job::silent();
    let tokens = model.encode(text)?;
    let calibration = nash_swarm::pipeline::CalibrationText::EndOf { tokens: &tokens, path: text_path };
    let spec = SensitivitySpec::default();
    let windows = nash_swarm::pipeline::sensitivity_windows(spec, calibration)?;
    let weights = |p: usize, o: usize| game.strategy_weights(model, base, None, p, o);
    Ok(sensitivity::measure(model, game, &weights, &windows, spec, None, &job)?)
}

/// What `scripts/llama_cpp_bench.py` measured.
#[derive(Clone)]
struct LlamaCpp {
    tokens_per_second: f64,
    peak_rss: u64,
    rss_before_model: u64,
}

/// The bytes of the model's file, or of a folder's safetensors files.
fn stored_bytes(path: &std::path::Path) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    if path.is_file() {
        return size(path);
    }
    let files = std::fs::read_dir(path).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path()));
    files.filter(|p| p.extension().is_some_and(|x| x == "safetensors")).map(|p| size(&p)).sum()
}

/// Runs `scripts/llama_cpp_bench.py` on the same model, text and window count.
fn llama_cpp_figure(
    model: &std::path::Path,
    text: &std::path::Path,
    ctx: usize,
    windows: usize,
) -> Result<LlamaCpp, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/llama_cpp_bench.py");
    let python = nash_swarm::pypi::python();
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(["--model", &model.display().to_string(), "--text", &text.display().to_string()])
        .args(["--ctx", &ctx.to_string(), "--windows", &windows.to_string()])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("no result from {script}: {}", String::from_utf8_lossy(&out.stderr).trim()))?;
    let figure =
        |key: &str| value[key].as_f64().ok_or_else(|| value["error"].as_str().unwrap_or("no figure").to_string());
    Ok(LlamaCpp {
        tokens_per_second: figure("tokens_per_second")?,
        peak_rss: figure("peak_rss_bytes")? as u64,
        rss_before_model: figure("rss_before_model_bytes")? as u64,
    })
}

/// One round of the throughput figures (tokens/s), and the matrix-product peak (GFLOP/s, the kernels eval uses) measured beside them.
struct Round {
    ours: f64,
    llama_cpp: Option<Result<LlamaCpp, String>>,
    own_kernels: Option<Result<(f64, String), String>>,
    gemm_peak: f64,
}

impl Round {
    fn own_kernels_tps(&self) -> Option<f64> {
        self.own_kernels.as_ref()?.as_ref().ok().map(|o| o.0)
    }
}

fn best(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// The fastest of the rounds' runs by `speed`, or the first failure; None when no round ran it.
fn fastest<T>(
    runs: impl Iterator<Item = Option<Result<T, String>>>,
    speed: impl Fn(&T) -> f64,
) -> Option<Result<T, String>> {
    let runs: Vec<Result<T, String>> = runs.flatten().collect();
    if runs.is_empty() {
        return None;
    }
    let runs = runs.into_iter().collect::<Result<Vec<T>, String>>();
    Some(runs.map(|runs| runs.into_iter().max_by(|a, b| speed(a).total_cmp(&speed(b))).expect("not empty")))
}

/// Per round, `ours(round)` over llama.cpp's throughput in that round (rounds where either is missing left out).
fn ratios_by_round(rounds: &[Round], ours: impl Fn(&Round) -> Option<f64>) -> Vec<f64> {
    let theirs = |r: &Round| r.llama_cpp.as_ref()?.as_ref().ok().map(|l| l.tokens_per_second);
    rounds.iter().filter_map(|r| Some(ours(r)? / theirs(r)?)).collect()
}

/// When `OPENBLAS_CORETYPE` chose the kernels of the OpenBLAS that runs the products, the same eval in a child
/// process without it, where OpenBLAS picks the CPU's own: both settings' throughput in one run, as the variable can
/// halve it. (Our own AVX-512 kernel, where it runs, does not read the variable.)
fn own_kernels_figure(
    model: &std::path::Path,
    text: &std::path::Path,
    ctx: usize,
    windows: usize,
) -> Option<Result<(f64, String), String>> {
    let asked = std::env::var("OPENBLAS_CORETYPE").is_ok_and(|v| !v.is_empty());
    if !asked || !nash_swarm::model::gemm::openblas_runs_the_products() {
        return None;
    }
    let run = || -> Result<(f64, String), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let out = std::process::Command::new(exe)
            .env_remove("OPENBLAS_CORETYPE")
            .args(["bench", "--eval-only", "--model", &model.display().to_string()])
            .args(["--text", &text.display().to_string(), "--ctx", &ctx.to_string(), "--windows", &windows.to_string()])
            .output()
            .map_err(|e| format!("cannot run this program again: {e}"))?;
        let value: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|_| format!("no result from the child: {}", String::from_utf8_lossy(&out.stderr).trim()))?;
        let tps = value["tokens_per_second"].as_f64().ok_or("the child gave no throughput")?;
        Ok((tps, value["gemm_backend"].as_str().unwrap_or("?").to_string()))
    };
    Some(run())
}

/// `--synthetic`: the pipeline on random models of growing depth, each step's time and peak anonymous RSS.
fn synthetic_figures(shape: super::synthetic::Shape, args: &BenchArgs) -> anyhow::Result<()> {
    use super::synthetic::{ensure, peak_anon};
    use nash_swarm::quant::{GroupSize, QuantConfig};
    let text_path =
        args.text.clone().or_else(nash_swarm::demo::default_text).ok_or_else(|| anyhow::anyhow!("pass --text PATH"))?;
    let text = eval::read_text(&text_path)?;
    let full = shape.layers();
    let layer_counts = if args.layers.is_empty() { vec![full / 4, full / 2, full] } else { args.layers.clone() };
    let job = nash_swarm::Job::silent();
    let mut rows = Vec::new();
    for layers in layer_counts {
        let dir = ensure(shape, layers, || {
            let demo = nash_swarm::demo::set_up(&mut |line| eprintln!("{line}"))?;
            Ok((*nash_swarm::load(&demo)?.tokenizer).clone())
        })?;
        let (model, load_anon, load_s) = peak_anon(|| nash_swarm::load(&dir));
        let model = model?;
        let spec = WindowSpec { ctx: args.ctx, max_windows: Some(args.windows), bos: false };
        let windows = eval::windows(&model, &eval::tokens_for(&model, &text, spec)?, spec, &text_path)?;
        let (report, eval_anon, _) = peak_anon(|| eval::evaluate_ppl(&model, &windows, Kld::Skip, &job));
        let eval_s = report?.0.seconds;
        let config = QuantConfig::uniform(4, GroupSize::G(128));
        let out = nash_swarm::demo::cache_dir().join("synthetic").join(format!(".bench-export-{}", std::process::id()));
        let (written, quant_anon, quant_s) =
            peak_anon(|| nash_swarm::formats::packed::quantize_to(&model, &config, None, &job, &out));
        let steps = written.map_err(anyhow::Error::from).and_then(|_| {
            let (quantized_model, q_load_anon, _) = peak_anon(|| nash_swarm::load(&out));
            let quantized_model = quantized_model?;
            let (report, q_eval_anon, _) =
                peak_anon(|| eval::evaluate_ppl(&quantized_model, &windows, Kld::Skip, &job));
            Ok((q_load_anon, report?.0.seconds, q_eval_anon))
        });
        let _ = std::fs::remove_dir_all(&out);
        let (q_load_anon, q_eval_s, q_eval_anon) = steps?;
        let per_layer = |s: f64| s / layers as f64;
        println!(
            "{layers:>3} layers: load {load_s:.1} s, {la:.0} MiB | eval {eval_s:.1} s ({:.2} s/layer), {ea:.0} MiB | \
             quantize + write {quant_s:.1} s ({:.2} s/layer), {qa:.0} MiB | load it {qla:.0} MiB | \
             eval it {q_eval_s:.1} s, {qea:.0} MiB",
            per_layer(eval_s),
            per_layer(quant_s),
            la = mib(load_anon),
            ea = mib(eval_anon),
            qa = mib(quant_anon),
            qla = mib(q_load_anon),
            qea = mib(q_eval_anon),
        );
        rows.push(json!({"layers": layers, "load_seconds": load_s, "load_peak_anon_bytes": load_anon,
            "eval_seconds": eval_s, "eval_peak_anon_bytes": eval_anon, "quantize_write_seconds": quant_s,
            "quantize_write_peak_anon_bytes": quant_anon, "load_quantized_peak_anon_bytes": q_load_anon,
            "eval_quantized_seconds": q_eval_s, "eval_quantized_peak_anon_bytes": q_eval_anon}));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json!({"synthetic": format!("{shape:?}"), "ctx": args.ctx,
            "windows": args.windows, "rows": rows}))?
        );
    }
    Ok(())
}
