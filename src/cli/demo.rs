use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct DemoArgs {
    /// Evaluation text; default: $NASH_SWARM_TEXT or ../shared/data/wikitext-2-raw/wiki.test.raw.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Windows of 512 tokens to evaluate (the whole WikiText-2 test set is about 560).
    #[arg(long, allow_hyphen_values = true, default_value_t = 16, value_parser = super::count(1, usize::MAX))]
    max_windows: usize,
    /// Evaluate in the terminal even when a display is available.
    #[arg(long)]
    headless: bool,
}

/// Fetches and verifies the demo model, then opens it in the explorer, or, without a display (or with
/// --headless), evaluates it on WikiText-2 in the terminal.
pub fn run(args: DemoArgs) -> anyhow::Result<Option<super::Window>> {
    let model = nash_swarm::demo::set_up(&mut |line| eprintln!("{line}"))?;
    let has_display = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if has_display && !args.headless {
        eprintln!("opening the explorer on {}", model.display());
        return Ok(Some(super::Window { model: Some(model), text: args.text.or_else(nash_swarm::demo::default_text) }));
    }
    let Some(text) = args.text.or_else(nash_swarm::demo::default_text) else {
        anyhow::bail!(
            "no evaluation text: pass --text PATH (a UTF-8 corpus such as WikiText-2's wiki.test.raw), set \
             NASH_SWARM_TEXT, or place it at {}",
            nash_swarm::demo::shared_wikitext().display()
        );
    };
    eprintln!("evaluating {} on {} (ctx 512, {} windows)", model.display(), text.display(), args.max_windows);
    super::eval::run(super::eval::EvalArgs {
        model,
        text,
        windows: super::WindowArgs { ctx: 512, max_windows: Some(args.max_windows), bos: false },
        protocol: super::eval::Protocol::Ppl,
        seed_texts: nash_swarm::eval::seed::SEED_TEXTS,
        reference: None,
        json: false,
    })?;
    Ok(None)
}
