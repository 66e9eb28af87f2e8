//! `bench --synthetic`: random bf16 models with the shapes of Llama-3.2-1B or Llama-3.1-8B (any number of their
//! layers), written once into the cache, for measuring what the pipeline costs as models grow past memory.

use std::io::Write;
use std::path::PathBuf;

use half::bf16;

/// The shapes of a model family member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Llama-3.2-1B: 16 layers, hidden 2048, intermediate 8192, 32/8 heads, vocab 128256, tied head.
    #[value(name = "1b")]
    OneB,
    /// Llama-3.1-8B: 32 layers, hidden 4096, intermediate 14336, 32/8 heads, vocab 128256.
    #[value(name = "8b")]
    EightB,
}

struct Sizes {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    layers: usize,
    tied: bool,
}

impl Shape {
    fn sizes(self) -> Sizes {
        match self {
            Shape::OneB => Sizes {
                hidden: 2048,
                intermediate: 8192,
                heads: 32,
                kv_heads: 8,
                vocab: 128_256,
                layers: 16,
                tied: true,
            },
            Shape::EightB => Sizes {
                hidden: 4096,
                intermediate: 14_336,
                heads: 32,
                kv_heads: 8,
                vocab: 128_256,
                layers: 32,
                tied: false,
            },
        }
    }

    /// The model's full layer count.
    pub fn layers(self) -> usize {
        self.sizes().layers
    }

    fn name(self) -> &'static str {
        match self {
            Shape::OneB => "1b",
            Shape::EightB => "8b",
        }
    }
}

/// Every tensor of the model with `layers` layers, in file order, with its shape.
fn tensors(s: &Sizes, layers: usize) -> Vec<(String, Vec<usize>)> {
    let (h, kv) = (s.hidden, s.kv_heads * (s.hidden / s.heads));
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![s.vocab, h])];
    for i in 0..layers {
        let p = format!("model.layers.{i}.");
        out.push((format!("{p}input_layernorm.weight"), vec![h]));
        out.push((format!("{p}post_attention_layernorm.weight"), vec![h]));
        for (name, rows, cols) in [
            ("self_attn.q_proj", h, h),
            ("self_attn.k_proj", kv, h),
            ("self_attn.v_proj", kv, h),
            ("self_attn.o_proj", h, h),
            ("mlp.gate_proj", s.intermediate, h),
            ("mlp.up_proj", s.intermediate, h),
            ("mlp.down_proj", h, s.intermediate),
        ] {
            out.push((format!("{p}{name}.weight"), vec![rows, cols]));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !s.tied {
        out.push(("lm_head.weight".to_string(), vec![s.vocab, h]));
    }
    out
}

/// The folder of the synthetic model, written on first use (config.json, model.safetensors, and the demo
/// model's tokenizer, whose ids all lie inside the vocabulary). `tokenizer` is only called when writing.
pub fn ensure(
    shape: Shape,
    layers: usize,
    tokenizer: impl FnOnce() -> anyhow::Result<tokenizers::Tokenizer>,
) -> anyhow::Result<PathBuf> {
    let dir = nash_swarm::demo::cache_dir().join("synthetic").join(format!("llama-{}-{layers}-layers", shape.name()));
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let s = shape.sizes();
    eprintln!("writing a random bf16 model with {}'s shapes and {layers} layers to {}", shape.name(), dir.display());
    let tokenizer = tokenizer()?;
    let parent = dir.parent().expect("inside the cache");
    std::fs::create_dir_all(parent).map_err(|e| nash_swarm::Error::io(parent, e))?;
    nash_swarm::output::write_dir(&dir, |out| {
        let config = config_json(&s, layers);
        std::fs::write(out.join("config.json"), config).map_err(|e| nash_swarm::Error::io(out, e))?;
        nash_swarm::formats::hf::write_tokenizer(&tokenizer, &out.join("tokenizer.json"))?;
        let path = out.join("model.safetensors");
        let file = std::fs::File::create(&path).map_err(|e| nash_swarm::Error::io(&path, e))?;
        write_weights(&s, layers, std::io::BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| nash_swarm::Error::io(&path, e))
    })?;
    Ok(dir)
}

fn config_json(s: &Sizes, layers: usize) -> String {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s.hidden,
        "intermediate_size": s.intermediate, "num_hidden_layers": layers, "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads, "head_dim": s.hidden / s.heads, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
        "tie_word_embeddings": s.tied, "bos_token_id": 128000, "torch_dtype": "bfloat16",
    })
    .to_string()
}

/// The safetensors file, written as it is generated: header, then each tensor's bf16 values (norms 1, matrices
/// uniform in ±0.035, about the spread of a trained model's weights), never more than a chunk in memory.
fn write_weights(s: &Sizes, layers: usize, mut out: impl Write) -> std::io::Result<()> {
    let tensors = tensors(s, layers);
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = Vec::with_capacity(1 << 21);
    for (_, shape) in &tensors {
        let mut left = shape.iter().product::<usize>();
        let norm = shape.len() == 1;
        while left > 0 {
            let n = left.min(1 << 20);
            chunk.clear();
            for _ in 0..n {
                let value = if norm { 1.0 } else { uniform(&mut state) * 0.035 };
                chunk.extend_from_slice(&bf16::from_f32(value).to_le_bytes());
            }
            out.write_all(&chunk)?;
            left -= n;
        }
    }
    out.flush()
}

/// A uniform value in [-1, 1) from splitmix64.
fn uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// The peak of RssAnon (anonymous resident memory: mapped file pages do not count) while `f` runs, sampled
/// every 5 ms by a thread; with the seconds `f` took. Memory earlier steps freed is first handed back to the
/// system (glibc keeps freed pages otherwise), so the peak is what this step holds on top of what is still live.
pub fn peak_anon<T>(f: impl FnOnce() -> T) -> (T, u64, f64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(rss_anon().unwrap_or(0));
    let start = std::time::Instant::now();
    let value = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon().unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        let value = f();
        peak.fetch_max(rss_anon().unwrap_or(0), Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        value
    });
    (value, peak.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

fn rss_anon() -> Option<u64> {
    super::bench::proc_status_bytes("RssAnon")
}
