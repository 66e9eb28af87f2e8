//! Writes a Llama model as a GGUF file the way llama.cpp's converter does: llama.cpp tensor names, q/k rows
//! permuted for interleaved RoPE, llama.* metadata and a (toy) gpt2-style vocabulary.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use nash_swarm::Model;
use nash_swarm::model::{LlamaConfig, tensor_to_vec};

pub fn write_like_llama_cpp(model: &Model, path: &Path, architecture: &str) {
    let c = model.architecture.config::<LlamaConfig>().expect("a llama model");
    let mut tensors = Vec::new();
    for (name, tensor) in &model.weights.0 {
        let gguf_name = llama_cpp_name(name);
        let tensor = &tensor.to_f32().unwrap();
        let values = tensor_to_vec(tensor).unwrap();
        let values = match name.rsplit('.').nth(1) {
            Some("q_proj") => permute_like_llama_cpp(&values, c.num_attention_heads, tensor.dims()),
            Some("k_proj") => permute_like_llama_cpp(&values, c.kv_heads(), tensor.dims()),
            _ => values,
        };
        let t = candle_core::Tensor::from_vec(values, tensor.dims(), &candle_core::Device::Cpu).unwrap();
        tensors.push((gguf_name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let tokens: Vec<Value> = (0..c.vocab_size).map(|i| Value::String(format!("t{i}"))).collect();
    let metadata = [
        ("general.architecture", Value::String(architecture.into())),
        ("llama.block_count", Value::U32(c.num_hidden_layers as u32)),
        ("llama.embedding_length", Value::U32(c.hidden_size as u32)),
        ("llama.feed_forward_length", Value::U32(c.intermediate_size as u32)),
        ("llama.attention.head_count", Value::U32(c.num_attention_heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(c.kv_heads() as u32)),
        ("llama.rope.freq_base", Value::F32(c.rope_theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(c.rms_norm_eps as f32)),
        ("llama.context_length", Value::U32(c.max_position_embeddings as u32)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
    ];
    let mut file = std::fs::File::create(path).unwrap();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts).unwrap();
}

fn llama_cpp_name(hf: &str) -> String {
    let fixed = [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight")];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, leaf) = rest.split_once('.').unwrap();
    let leaf = match leaf {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => panic!("unexpected {other}"),
    };
    format!("blk.{layer}.{leaf}")
}

/// llama.cpp's `permute`: within each head, row (j, i) of shape (2, hd/2) moves to (i, j).
fn permute_like_llama_cpp(w: &[f32], heads: usize, dims: &[usize]) -> Vec<f32> {
    let (rows, cols) = (dims[0], dims[1]);
    let half = rows / heads / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let src = h * 2 * half + j * half + i;
                let dst = h * 2 * half + i * 2 + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
