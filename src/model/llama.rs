//! Llama (LlamaForCausalLM): RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU, tied or untied head.
//! Covers SmolLM/SmolLM2, TinyLlama, Llama 3.x and stories260k. Weight names mirror Hugging Face.

use candle_core::Tensor;

use super::attention::causal_attention;
use super::config::LlamaConfig;
use super::tensor_io::with_f32_slice;
use super::{Linears, TensorRole, cpu};
use crate::error::Result;

pub const EMBED: &str = "model.embed_tokens.weight";
pub const LM_HEAD: &str = "lm_head.weight";

pub fn expected_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (d, hd) = (c.hidden_size, c.head_dim());
    let (q_out, kv_out, ff) = (c.num_attention_heads * hd, c.kv_heads() * hd, c.intermediate_size);
    let mut shapes = vec![(EMBED.to_string(), vec![c.vocab_size, d]), ("model.norm.weight".to_string(), vec![d])];
    if !c.tie_word_embeddings {
        shapes.push((LM_HEAD.to_string(), vec![c.vocab_size, d]));
    }
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        shapes.extend([
            (format!("{p}.input_layernorm.weight"), vec![d]),
            (format!("{p}.post_attention_layernorm.weight"), vec![d]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q_out, d]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv_out, d]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv_out, d]),
            (format!("{p}.self_attn.o_proj.weight"), vec![d, q_out]),
            (format!("{p}.mlp.gate_proj.weight"), vec![ff, d]),
            (format!("{p}.mlp.up_proj.weight"), vec![ff, d]),
            (format!("{p}.mlp.down_proj.weight"), vec![d, ff]),
        ]);
    }
    shapes
}

pub fn tensor_role(name: &str) -> TensorRole {
    if name == EMBED {
        TensorRole::Embedding
    } else if name == LM_HEAD {
        TensorRole::LmHead
    } else if name.contains(".self_attn.") && name.ends_with("_proj.weight") {
        TensorRole::Attention
    } else if name.contains(".mlp.") && name.ends_with("_proj.weight") {
        TensorRole::Mlp
    } else {
        TensorRole::Other
    }
}

/// The final normed hidden state of every position of each window: `[T, hidden]` (the head is applied by
/// `Model`). The windows advance together one layer at a time, so each layer's weights are fetched once.
pub fn forward(c: &LlamaConfig, w: &Linears, windows: &[&[u32]]) -> Result<Vec<Tensor>> {
    let embed = w.get(EMBED)?;
    let mut xs = windows
        .iter()
        .map(|ids| Ok(embed.index_select(&Tensor::new(*ids, &cpu())?, 0)?))
        .collect::<Result<Vec<Tensor>>>()?;
    drop(embed);
    let ropes = windows.iter().map(|ids| rope_tables(c, ids.len())).collect::<Result<Vec<_>>>()?;
    for i in 0..c.num_hidden_layers {
        for (x, (cos, sin)) in xs.iter_mut().zip(&ropes) {
            *x = block(c, w, &format!("model.layers.{i}"), x, cos, sin)?;
        }
    }
    let norm = w.get("model.norm.weight")?;
    xs.iter().map(|x| Ok(candle_nn::ops::rms_norm(x, &norm, c.rms_norm_eps as f32)?)).collect()
}

/// One decoder layer (`p` is its name prefix) over the hidden states `x` `[T, hidden]` of one window.
fn block(c: &LlamaConfig, w: &Linears, p: &str, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let t = x.dim(0)?;
    let (heads, kv_heads, hd) = (c.num_attention_heads, c.kv_heads(), c.head_dim());
    let eps = c.rms_norm_eps as f32;
    let scale = 1.0 / (hd as f64).sqrt();
    let h = candle_nn::ops::rms_norm(x, &w.get(&format!("{p}.input_layernorm.weight"))?, eps)?;
    let heads_of = |name: &str, n: usize| -> Result<Tensor> {
        let y = w.linear(&format!("{p}.self_attn.{name}.weight"), &h)?;
        Ok(y.reshape((1, t, n, hd))?.transpose(1, 2)?.contiguous()?)
    };
    let q = candle_nn::rotary_emb::rope(&heads_of("q_proj", heads)?, cos, sin)?;
    let k = candle_nn::rotary_emb::rope(&heads_of("k_proj", kv_heads)?, cos, sin)?;
    let v = heads_of("v_proj", kv_heads)?;
    let attn = causal_attention(&q, &k, &v, scale)?;
    let x = (x + w.linear(&format!("{p}.self_attn.o_proj.weight"), &attn)?)?;

    let h = candle_nn::ops::rms_norm(&x, &w.get(&format!("{p}.post_attention_layernorm.weight"))?, eps)?;
    let gate = w.linear(&format!("{p}.mlp.gate_proj.weight"), &h)?;
    let up = w.linear(&format!("{p}.mlp.up_proj.weight"), &h)?;
    Ok((x + w.linear(&format!("{p}.mlp.down_proj.weight"), &swiglu(&gate, &up)?)?)?)
}

/// The weight that maps hidden states to logits.
pub fn head_name(c: &LlamaConfig) -> &'static str {
    if c.tie_word_embeddings { EMBED } else { LM_HEAD }
}

/// `silu(gate) * up`, fused into one pass with the vectorized exp.
fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let mut out = gate.flatten_all()?.to_vec1::<f32>()?;
    with_f32_slice(&up.contiguous()?, |up| crate::math::silu_mul_in_place(&mut out, up))?;
    Ok(Tensor::from_vec(out, gate.shape(), &cpu())?)
}

/// cos/sin tables `[T, head_dim / 2]` for rotate-half RoPE, with Llama 3 frequency scaling when configured.
fn rope_tables(c: &LlamaConfig, t: usize) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let inv_freq: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f64 / hd as f64))
        .map(|f| match &c.rope_scaling {
            Some(s) => llama3_scaled(f, s),
            None => f,
        })
        .collect();
    let angles: Vec<f64> = (0..t).flat_map(|p| inv_freq.iter().map(move |f| p as f64 * f)).collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
    Ok((Tensor::from_vec(cos, (t, hd / 2), &cpu())?, Tensor::from_vec(sin, (t, hd / 2), &cpu())?))
}

fn llama3_scaled(freq: f64, s: &super::config::RopeScaling) -> f64 {
    let original = s.original_max_position_embeddings as f64;
    let (low_wavelen, high_wavelen) = (original / s.low_freq_factor, original / s.high_freq_factor);
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}
