//! The pre-norm decoder layer that Llama, Mistral, Qwen2/3, Phi-3 and Gemma 3 share, composed from the options
//! in which they differ (`BlockSpec`), with the RoPE variants and norms they use. Tensor names are Hugging
//! Face's under the layer prefix: `self_attn.{q,k,v,o}_proj` or `self_attn.qkv_proj`, `mlp.{gate,up,down}_proj`
//! or `mlp.gate_up_proj`, `input_layernorm`, `post_attention_layernorm` (and Gemma's `pre_feedforward_layernorm`,
//! `post_feedforward_layernorm`), `self_attn.{q,k}_norm`.

use candle_core::Tensor;
use serde_json::Value;

use super::attention::causal_attention;
use crate::error::Result;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Linears, cpu};

/// How a norm applies its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    /// x / rms(x) · w.
    Rms,
    /// x / rms(x) · (1 + w) (Gemma).
    RmsPlusOne,
}

/// The MLP's gate activation: `down(act(gate(x)) · up(x))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// What one decoder layer is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpec {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub norm: Norm,
    /// One `qkv_proj` (rows q, then k, then v) instead of three projections (Phi-3).
    pub fused_qkv: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Per-head norms of q and k before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Norms after attention and after the MLP too, before each residual add (Gemma 3).
    pub sandwich_norms: bool,
    /// One `gate_up_proj` (rows gate, then up) instead of two (Phi-3).
    pub fused_gate_up: bool,
    pub activation: Activation,
    /// Multiplies q·k before the softmax.
    pub attention_scale: f64,
    /// Sliding-window attention: a position sees this many keys, itself included.
    pub window: Option<usize>,
    pub rope: Rope,
}

/// Rotary position embedding (rotate-half convention) over the first `rotary_dim` dimensions of each head.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

/// The frequency scalings in use.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: usize,
    },
    /// NTK-aware: the base grows once a sequence is longer than `original_max_positions`.
    Dynamic {
        factor: f64,
        original_max_positions: usize,
    },
}

impl Rope {
    /// Reads a RoPE from a config: transformers 5's `rope_parameters` (per layer type when it is keyed by
    /// `layer_type`, as Gemma 3's is), else the legacy top-level `rope_theta` and `rope_scaling`.
    pub fn from_config(
        config: &Value,
        layer_type: Option<&str>,
        default_theta: f64,
        rotary_dim: usize,
        max_positions: usize,
    ) -> std::result::Result<Rope, String> {
        let parameters = config.get("rope_parameters").filter(|v| v.is_object());
        let (params, key) = match (parameters, layer_type) {
            (Some(p), Some(layer)) if p.get(layer).is_some_and(Value::is_object) => {
                (p.get(layer).cloned(), format!("rope_parameters.{layer}"))
            }
            (Some(p), _) => (Some(p.clone()), "rope_parameters".to_string()),
            (None, _) => (None, String::new()),
        };
        let (theta, scaling, key) = match params {
            Some(p) => (p.get("rope_theta").and_then(Value::as_f64), Some(p), key),
            None => (
                config.get("rope_theta").and_then(Value::as_f64),
                config.get("rope_scaling").filter(|v| v.is_object()).cloned(),
                "rope_scaling".to_string(),
            ),
        };
        let theta = theta.unwrap_or(default_theta);
        crate::model::arch::positive("rope_theta", theta)?;
        let scaling = match scaling {
            Some(s) => RopeScaling::from_json(&s, &key, max_positions)?,
            None => RopeScaling::None,
        };
        Ok(Rope { theta, rotary_dim, scaling })
    }

    /// cos/sin tables `[T, rotary_dim / 2]`.
    pub fn tables(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let dim = self.rotary_dim;
        let theta = match self.scaling {
            RopeScaling::Dynamic { factor, original_max_positions } if t > original_max_positions => {
                let grown = factor * t as f64 / original_max_positions as f64 - (factor - 1.0);
                self.theta * grown.powf(dim as f64 / (dim as f64 - 2.0))
            }
            _ => self.theta,
        };
        let inv_freq: Vec<f64> =
            (0..dim / 2).map(|i| self.scaling.scale(1.0 / theta.powf(2.0 * i as f64 / dim as f64))).collect();
        let angles: Vec<f64> = (0..t).flat_map(|p| inv_freq.iter().map(move |f| p as f64 * f)).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        Ok((Tensor::from_vec(cos, (t, dim / 2), &cpu())?, Tensor::from_vec(sin, (t, dim / 2), &cpu())?))
    }
}

impl RopeScaling {
    /// From a `rope_scaling` / `rope_parameters` object; errors name `key`.
    pub fn from_json(v: &Value, key: &str, max_positions: usize) -> std::result::Result<Self, String> {
        let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(Value::as_str).unwrap_or("default");
        let number = |field: &str, default: Option<f64>| -> std::result::Result<f64, String> {
            let value = v.get(field).and_then(Value::as_f64).or(default);
            let value = value.ok_or_else(|| format!("{key}.{field} is missing"))?;
            crate::model::arch::positive(&format!("{key}.{field}"), value)?;
            Ok(value)
        };
        let original = || -> std::result::Result<usize, String> {
            let n = v.get("original_max_position_embeddings").and_then(Value::as_u64).unwrap_or(max_positions as u64);
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{key}.original_max_position_embeddings is {n}, but must be a positive count"))
        };
        Ok(match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: number("factor", None)? },
            "dynamic" => RopeScaling::Dynamic { factor: number("factor", None)?, original_max_positions: original()? },
            "llama3" => {
                let (low, high) = (number("low_freq_factor", Some(1.0))?, number("high_freq_factor", Some(4.0))?);
                if high <= low {
                    return Err(format!("{key}.high_freq_factor {high} must exceed low_freq_factor {low}"));
                }
                RopeScaling::Llama3 {
                    factor: number("factor", None)?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_positions: original()?,
                }
            }
            other => {
                return Err(format!("{key}.rope_type `{other}` is not supported (default, linear, dynamic, llama3)"));
            }
        })
    }

    /// One inverse frequency as this scaling changes it.
    pub fn scale(&self, freq: f64) -> f64 {
        match *self {
            RopeScaling::None | RopeScaling::Dynamic { .. } => freq,
            RopeScaling::Linear { factor } => freq / factor,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
                let original = original_max_positions as f64;
                let (low_wavelen, high_wavelen) = (original / low_freq_factor, original / high_freq_factor);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    freq
                } else if wavelen > low_wavelen {
                    freq / factor
                } else {
                    let smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * freq / factor + smooth * freq
                }
            }
        }
    }
}

/// A norm over the last dimension with weight `w`.
pub fn norm(kind: Norm, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(match kind {
        Norm::Rms => candle_nn::ops::rms_norm(x, w, eps as f32)?,
        Norm::RmsPlusOne => candle_nn::ops::rms_norm(x, &(w + 1.0)?, eps as f32)?,
    })
}

/// One decoder layer (`p` is its name prefix) over the hidden states `x` `[T, hidden]` of one window, with
/// RoPE tables from `spec.rope.tables(T)`.
pub fn block(spec: &BlockSpec, w: &Linears, p: &str, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let weight = |leaf: &str| w.get(&format!("{p}.{leaf}"));
    let h = norm(spec.norm, x, &weight("input_layernorm.weight")?, spec.eps)?;
    let attn = attention(spec, w, p, &h, cos, sin)?;
    let attn = w.linear(&format!("{p}.self_attn.o_proj.weight"), &attn)?;
    let attn = match spec.sandwich_norms {
        true => norm(spec.norm, &attn, &weight("post_attention_layernorm.weight")?, spec.eps)?,
        false => attn,
    };
    let x = (x + attn)?;
    let pre_mlp = if spec.sandwich_norms { "pre_feedforward_layernorm" } else { "post_attention_layernorm" };
    let h = norm(spec.norm, &x, &weight(&format!("{pre_mlp}.weight"))?, spec.eps)?;
    let mlp = mlp(spec, w, p, &h)?;
    let mlp = match spec.sandwich_norms {
        true => norm(spec.norm, &mlp, &weight("post_feedforward_layernorm.weight")?, spec.eps)?,
        false => mlp,
    };
    Ok((x + mlp)?)
}

/// Causal self-attention of the normed states `h`, before the output projection: `[T, heads * head_dim]`.
fn attention(spec: &BlockSpec, w: &Linears, p: &str, h: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let t = h.dim(0)?;
    let (heads, kv_heads, hd) = (spec.heads, spec.kv_heads, spec.head_dim);
    let (q, k, v) = if spec.fused_qkv {
        let qkv = w.linear(&format!("{p}.self_attn.qkv_proj.weight"), h)?;
        let (q_out, kv_out) = (heads * hd, kv_heads * hd);
        (qkv.narrow(1, 0, q_out)?, qkv.narrow(1, q_out, kv_out)?, qkv.narrow(1, q_out + kv_out, kv_out)?)
    } else {
        let project = |name: &str| -> Result<Tensor> {
            let y = w.linear(&format!("{p}.self_attn.{name}.weight"), h)?;
            match spec.qkv_bias {
                true => Ok(y.broadcast_add(&w.get(&format!("{p}.self_attn.{name}.bias"))?)?),
                false => Ok(y),
            }
        };
        (project("q_proj")?, project("k_proj")?, project("v_proj")?)
    };
    let heads_of = |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((1, t, n, hd))?.transpose(1, 2)?) };
    let (mut q, mut k, v) = (heads_of(q, heads)?, heads_of(k, kv_heads)?, heads_of(v, kv_heads)?.contiguous()?);
    if spec.qk_norm {
        q = norm(spec.norm, &q.contiguous()?, &w.get(&format!("{p}.self_attn.q_norm.weight"))?, spec.eps)?;
        k = norm(spec.norm, &k.contiguous()?, &w.get(&format!("{p}.self_attn.k_norm.weight"))?, spec.eps)?;
    }
    let (q, k) = (rotate(&q, spec.rope.rotary_dim, cos, sin)?, rotate(&k, spec.rope.rotary_dim, cos, sin)?);
    causal_attention(&q, &k, &v, spec.attention_scale, spec.window)
}

/// RoPE on the first `rotary_dim` dimensions of each head of `x` `[1, H, T, hd]`; the rest pass through.
fn rotate(x: &Tensor, rotary_dim: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(3)?;
    if rotary_dim >= hd {
        return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?);
    }
    let rotated = candle_nn::rotary_emb::rope(&x.narrow(3, 0, rotary_dim)?.contiguous()?, cos, sin)?;
    Ok(Tensor::cat(&[&rotated, &x.narrow(3, rotary_dim, hd - rotary_dim)?], 3)?.contiguous()?)
}

/// The gated MLP of the normed states `h`.
fn mlp(spec: &BlockSpec, w: &Linears, p: &str, h: &Tensor) -> Result<Tensor> {
    let (gate, up) = if spec.fused_gate_up {
        let both = w.linear(&format!("{p}.mlp.gate_up_proj.weight"), h)?;
        let ff = both.dim(1)? / 2;
        (both.narrow(1, 0, ff)?, both.narrow(1, ff, ff)?.contiguous()?)
    } else {
        (w.linear(&format!("{p}.mlp.gate_proj.weight"), h)?, w.linear(&format!("{p}.mlp.up_proj.weight"), h)?)
    };
    let gated = match spec.activation {
        Activation::Silu => swiglu(&gate, &up)?,
        Activation::GeluTanh => (gate.gelu()? * up)?,
    };
    w.linear(&format!("{p}.mlp.down_proj.weight"), &gated)
}

/// `silu(gate) * up`, fused into one pass with the vectorized exp.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let mut out = gate.flatten_all()?.to_vec1::<f32>()?;
    with_f32_slice(&up.contiguous()?, |up| crate::math::silu_mul_in_place(&mut out, up))?;
    Ok(Tensor::from_vec(out, gate.shape(), &cpu())?)
}

/// The weights a layer built to `spec` holds, as (leaf name under the layer prefix, shape).
pub fn layer_tensors(spec: &BlockSpec, hidden: usize, intermediate: usize) -> Vec<(String, Vec<usize>)> {
    let (q_out, kv_out, ff, d) = (spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, intermediate, hidden);
    let mut leaves: Vec<(String, Vec<usize>)> = vec![("input_layernorm.weight".into(), vec![d])];
    leaves.push(("post_attention_layernorm.weight".into(), vec![d]));
    if spec.sandwich_norms {
        leaves.push(("pre_feedforward_layernorm.weight".into(), vec![d]));
        leaves.push(("post_feedforward_layernorm.weight".into(), vec![d]));
    }
    if spec.fused_qkv {
        leaves.push(("self_attn.qkv_proj.weight".into(), vec![q_out + 2 * kv_out, d]));
    } else {
        for (name, out) in [("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)] {
            leaves.push((format!("self_attn.{name}.weight"), vec![out, d]));
            if spec.qkv_bias {
                leaves.push((format!("self_attn.{name}.bias"), vec![out]));
            }
        }
    }
    if spec.qk_norm {
        leaves.push(("self_attn.q_norm.weight".into(), vec![spec.head_dim]));
        leaves.push(("self_attn.k_norm.weight".into(), vec![spec.head_dim]));
    }
    leaves.push(("self_attn.o_proj.weight".into(), vec![d, q_out]));
    if spec.fused_gate_up {
        leaves.push(("mlp.gate_up_proj.weight".into(), vec![2 * ff, d]));
    } else {
        leaves.push(("mlp.gate_proj.weight".into(), vec![ff, d]));
        leaves.push(("mlp.up_proj.weight".into(), vec![ff, d]));
    }
    leaves.push(("mlp.down_proj.weight".into(), vec![d, ff]));
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_reads_both_config_formats_and_per_layer_parameters() {
        let legacy = serde_json::json!({"rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "original_max_position_embeddings": 16}});
        let r = Rope::from_config(&legacy, None, 10_000.0, 16, 256).unwrap();
        assert_eq!(r.theta, 500000.0);
        assert!(matches!(r.scaling, RopeScaling::Llama3 { factor: 32.0, original_max_positions: 16, .. }));
        let v5 = serde_json::json!({"rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "linear", "factor": 2.0}}});
        let full = Rope::from_config(&v5, Some("full_attention"), 1.0, 32, 256).unwrap();
        assert_eq!((full.theta, full.scaling), (1e6, RopeScaling::None));
        let sliding = Rope::from_config(&v5, Some("sliding_attention"), 1.0, 32, 256).unwrap();
        assert_eq!((sliding.theta, sliding.scaling), (1e4, RopeScaling::Linear { factor: 2.0 }));
        assert_eq!(Rope::from_config(&serde_json::json!({}), None, 1e4, 8, 64).unwrap().theta, 1e4);
        let yarn = serde_json::json!({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0}});
        let err = Rope::from_config(&yarn, None, 1e4, 8, 64).unwrap_err();
        assert!(err.contains("rope_parameters.rope_type `yarn`"), "{err}");
        let bad = serde_json::json!({"rope_theta": -1.0});
        assert!(Rope::from_config(&bad, None, 1e4, 8, 64).unwrap_err().contains("rope_theta"));
    }

    #[test]
    fn dynamic_scaling_changes_nothing_within_the_original_context_and_slows_rotation_beyond() {
        let rope = |scaling| Rope { theta: 10_000.0, rotary_dim: 8, scaling };
        let plain = rope(RopeScaling::None).tables(32).unwrap().0.to_vec2::<f32>().unwrap();
        let dynamic = rope(RopeScaling::Dynamic { factor: 2.0, original_max_positions: 32 });
        assert_eq!(dynamic.tables(32).unwrap().0.to_vec2::<f32>().unwrap(), plain);
        let long = dynamic.tables(64).unwrap().0.to_vec2::<f32>().unwrap();
        let long_plain = rope(RopeScaling::None).tables(64).unwrap().0.to_vec2::<f32>().unwrap();
        // The lowest frequency turns less at the last position once the base has grown.
        assert!(long[63][3] > long_plain[63][3]);
    }
}
