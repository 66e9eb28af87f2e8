use std::path::PathBuf;

use clap::Args;
use nash_swarm::compare::{self, CompareSpec};
use nash_swarm::eval;
use nash_swarm::importance::{CalibrationStats, ImportanceMethod};
use nash_swarm::quant::QuantConfig;
use nash_swarm::quant::nash::Game;
use nash_swarm::{Job, Model};

#[derive(Args)]
pub struct CompareArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    text: PathBuf,
    #[command(flatten)]
    windows: super::WindowArgs,
    /// Texts for the original's 64-token seed loss.
    #[arg(long, default_value_t = nash_swarm::eval::seed::SEED_TEXTS)]
    seed_texts: usize,
    /// Importance pricing the Nash rows.
    #[arg(long, value_enum, default_value = "swarm")]
    importance: super::quantize::ImportanceArg,
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// A Markdown table (the default output) ...
    #[arg(long)]
    markdown: bool,
    /// ... and also write it, with a CSV beside it, to this path (.md).
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let model = nash_swarm::load(&args.model)?;
    let text = eval::read_text(&args.text)?;
    let spec =
        CompareSpec { windows: args.windows.spec(), seed_texts: args.seed_texts, importance: args.importance.method() };
    let (job, bar) = super::progress_job("compare");
    let rows = compare::run(&model, &text, &args.text, &spec, None, &job, |row| {
        let line = format!(
            "{:<22} true {:.3} bpw  PPL {:.3}  ({:+.2}%)",
            row.method, row.true_bpw, row.ppl, row.delta_ppl_pct
        );
        // Without a terminal the bar is hidden; the rows still show progress on stderr.
        if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
    })?;
    bar.finish_and_clear();
    let markdown = nash_swarm::export::report::markdown(&rows);
    if let Some(path) = &args.report {
        nash_swarm::export::write_file_atomically(path, markdown.as_bytes())?;
        nash_swarm::export::write_file_atomically(
            &path.with_extension("csv"),
            nash_swarm::export::report::csv(&rows).as_bytes(),
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rows": rows }))?);
    } else {
        print!("{markdown}");
    }
    Ok(())
}

/// The Nash game for `quantize --target-bpw`, with calibration when the importance needs it.
pub fn nash_game_for(
    model: &Model,
    importance: &ImportanceMethod,
    calibration: Option<&CalibrationStats>,
    job: &Job,
) -> anyhow::Result<(Game, QuantConfig)> {
    Ok(compare::nash_game(model, importance, calibration, job)?)
}
