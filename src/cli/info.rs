use std::path::PathBuf;

use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct InfoArgs {
    /// Hugging Face folder, .gguf file or packed export folder.
    #[arg(long)]
    model: PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let model = nash_swarm::load(&args.model)?;
    let tensors: Vec<_> = model
        .weights
        .0
        .iter()
        .map(|(name, t)| {
            let stored = model.stored_dtypes.get(name).cloned().unwrap_or_else(|| "F32".into());
            json!({"name": name, "shape": t.dims(), "dtype": "F32", "stored_dtype": stored,
                   "role": model.architecture.tensor_role(name)})
        })
        .collect();
    let gguf_bpw = match model.format {
        nash_swarm::model::SourceFormat::Gguf => Some(nash_swarm::formats::gguf::bits_per_weight(&args.model)?),
        _ => None,
    };
    if args.json {
        let info = json!({
            "model": args.model, "architecture": model.architecture.name(), "params": model.param_count(),
            "layers": model.architecture.num_layers(), "max_context": model.architecture.max_context(),
            "vocab_size": model.tokenizer.get_vocab_size(true), "tensors": tensors,
            "gguf_tensor_bpw": gguf_bpw.map(|b| b.0), "gguf_file_bpw": gguf_bpw.map(|b| b.1),
        });
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("model:        {}", args.model.display());
    println!("architecture: {}", model.architecture.name());
    println!("parameters:   {}", model.param_count());
    println!("layers:       {}", model.architecture.num_layers());
    println!("max context:  {}", model.architecture.max_context());
    if let Some((tensors, file)) = gguf_bpw {
        println!("bits/weight:  {tensors:.3} in tensors ({file:.3} for the whole file)");
    }
    println!("{:<48} {:>16} {:>6} {:>8} role", "tensor", "shape", "dtype", "stored");
    for t in &tensors {
        let shape: Vec<String> = t["shape"].as_array().unwrap().iter().map(|d| d.to_string()).collect();
        println!(
            "{:<48} {:>16} {:>6} {:>8} {}",
            t["name"].as_str().unwrap(),
            shape.join("x"),
            "F32",
            t["stored_dtype"].as_str().unwrap(),
            t["role"].as_str().unwrap()
        );
    }
    Ok(())
}
