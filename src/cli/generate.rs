use std::path::PathBuf;

use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct GenerateArgs {
    /// Hugging Face folder, .gguf file or packed export folder.
    #[arg(long)]
    model: PathBuf,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    /// How many tokens to add (at most the model's context minus the prompt).
    #[arg(long, allow_hyphen_values = true, default_value_t = 32, value_parser = super::count(1, 4096))]
    tokens: usize,
    /// Start with the BOS token.
    #[arg(long)]
    bos: bool,
    /// One JSON object on stdout (with the token ids).
    #[arg(long)]
    json: bool,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let model = nash_swarm::load(&args.model)?;
    let mut prompt = model.encode(&args.prompt)?;
    if args.bos {
        let bos = model.bos_token_id.ok_or_else(|| anyhow::anyhow!("--bos: the model names no BOS token"))?;
        prompt.insert(0, bos);
    }
    let ids = model.generate_greedy_ids(&prompt, args.tokens)?;
    let text = model.decode(&ids)?;
    if args.json {
        println!("{}", json!({"prompt_ids": prompt, "ids": ids, "text": text}));
    } else {
        println!("{}{text}", args.prompt);
    }
    Ok(())
}
