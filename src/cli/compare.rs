use std::path::PathBuf;

use clap::Args;
use nash_swarm::compare::{self, CompareSpec};
use nash_swarm::eval;
use nash_swarm::quant::ggml::preset::Preset;

#[derive(Args)]
pub struct CompareArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    text: PathBuf,
    #[command(flatten)]
    windows: super::WindowArgs,
    /// Texts for the original's 64-token seed loss.
    #[arg(long, allow_hyphen_values = true, default_value_t = nash_swarm::eval::seed::SEED_TEXTS, value_parser = super::count(1, 1_000_000))]
    seed_texts: usize,
    /// Importance pricing the Nash rows.
    #[arg(long, value_enum, default_value = "swarm")]
    importance: super::ImportanceArg,
    /// Also rows for llama-quantize presets made by our encoders, each without and with an imatrix from the end
    /// of the text: a comma-separated list (q8_0,q6_k,q5_k_m,q4_k_m,q4_0,iq4_nl,q3_k_m,q2_k), or `standard` for
    /// those eight.
    #[arg(long, value_parser = gguf_presets)]
    gguf_presets: Option<GgufPresets>,
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// A Markdown table (the default output) ...
    #[arg(long)]
    markdown: bool,
    /// ... and also write it, with a CSV beside it, to this path (.md). An existing file is replaced only when it
    /// is a report of ours, or with --force; never an input.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Replace an existing --report file that is not one of ours.
    #[arg(long)]
    force: bool,
}

#[derive(Clone)]
struct GgufPresets(Vec<Preset>);

const STANDARD_PRESETS: &str = "q8_0,q6_k,q5_k_m,q4_k_m,q4_0,iq4_nl,q3_k_m,q2_k";

fn gguf_presets(list: &str) -> Result<GgufPresets, String> {
    let list = if list == "standard" { STANDARD_PRESETS } else { list };
    let presets = list
        .split(',')
        .map(|name| Preset::parse(name.trim()).ok_or_else(|| format!("`{name}` is not one of {}", Preset::names())))
        .collect::<Result<_, _>>()?;
    Ok(GgufPresets(presets))
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    if let Some(report) = &args.report {
        check_report(&args, report)?;
    }
    let model = nash_swarm::load(&args.model)?;
    let text = eval::read_text(&args.text)?;
    let spec = CompareSpec {
        windows: args.windows.spec(),
        seed_texts: args.seed_texts,
        importance: args.importance.method(),
        gguf_presets: args.gguf_presets.clone().map(|p| p.0).unwrap_or_default(),
    };
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
    let markdown = nash_swarm::compare::report::markdown(&rows);
    if let Some(path) = &args.report {
        nash_swarm::output::write_file(path, markdown.as_bytes())?;
        nash_swarm::output::write_file(
            &path.with_extension("csv"),
            nash_swarm::compare::report::csv(&rows).as_bytes(),
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rows": rows }))?);
    } else {
        print!("{markdown}");
    }
    Ok(())
}

/// The report and its CSV clear of the inputs and writable, before any row is computed.
fn check_report(args: &CompareArgs, report: &std::path::Path) -> anyhow::Result<()> {
    use nash_swarm::output::{Input, Kind, Output, check};
    let model_root = nash_swarm::formats::model_root(&args.model);
    let inputs = [Input { what: "model", path: &model_root }, Input { what: "text", path: &args.text }];
    let csv = report.with_extension("csv");
    let ours = nash_swarm::compare::report::is_report;
    let outputs = [
        Output { flag: "--report", path: report, kind: Kind::File, ours },
        Output { flag: "--report (its CSV)", path: &csv, kind: Kind::File, ours },
    ];
    Ok(check(&inputs, &outputs, args.force)?)
}
