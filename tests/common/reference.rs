//! An independent Llama forward pass in plain f64 loops: no candle, no shared code with the library's model,
//! written from the Hugging Face modeling code (rotate-half RoPE, GQA, SwiGLU, RMSNorm).

use std::collections::BTreeMap;

use nash_swarm::model::{LlamaConfig, Model, tensor_to_vec};

struct Mat {
    rows: usize,
    cols: usize,
    v: Vec<f64>,
}

fn mat(model: &Model, name: &str) -> Mat {
    let t = model.weights.get(name).unwrap();
    let dims = t.dims().to_vec();
    let (rows, cols) = if dims.len() == 2 { (dims[0], dims[1]) } else { (1, dims[0]) };
    Mat { rows, cols, v: tensor_to_vec(&t).unwrap().into_iter().map(f64::from).collect() }
}

/// y = W x for W [out, in].
fn matvec(w: &Mat, x: &[f64]) -> Vec<f64> {
    (0..w.rows).map(|r| (0..w.cols).map(|c| w.v[r * w.cols + c] * x[c]).sum()).collect()
}

fn rms_norm(x: &[f64], g: &Mat, eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter().zip(&g.v).map(|(v, g)| v * inv * g).collect()
}

fn rope(x: &mut [f64], pos: usize, hd: usize, theta: f64) {
    let half = hd / 2;
    for head in x.chunks_mut(hd) {
        let orig = head.to_vec();
        for i in 0..half {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / hd as f64);
            let (s, c) = (pos as f64 * freq).sin_cos();
            head[i] = orig[i] * c - orig[i + half] * s;
            head[i + half] = orig[i + half] * c + orig[i] * s;
        }
    }
}

/// Logits `[T][vocab]` of a Llama model (no rope scaling).
pub fn llama_logits(model: &Model, ids: &[u32]) -> Vec<Vec<f64>> {
    let Some(c) = model.architecture.config::<LlamaConfig>() else { panic!("not a llama model") };
    let (d, nh, nkv) = (c.hidden_size, c.num_attention_heads, c.kv_heads());
    let hd = d / nh;
    let all: BTreeMap<String, Mat> = model.weights.0.keys().map(|n| (n.clone(), mat(model, n))).collect();
    let w = |n: &str| -> &Mat { &all[n] };
    let embed = mat(model, "model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> =
        ids.iter().map(|&id| embed.v[id as usize * d..(id as usize + 1) * d].to_vec()).collect();
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let h = rms_norm(x, w(&format!("{p}.input_layernorm.weight")), c.rms_norm_eps);
            let mut q = matvec(w(&format!("{p}.self_attn.q_proj.weight")), &h);
            let mut k = matvec(w(&format!("{p}.self_attn.k_proj.weight")), &h);
            rope(&mut q, pos, hd, c.rope_theta);
            rope(&mut k, pos, hd, c.rope_theta);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(w(&format!("{p}.self_attn.v_proj.weight")), &h));
        }
        for t in 0..xs.len() {
            let mut attn = vec![0.0; d];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let q = &qs[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|s| {
                        q.iter().zip(&ks[s][kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = exps.iter().sum();
                for (s, e) in exps.iter().enumerate() {
                    for i in 0..hd {
                        attn[head * hd + i] += e / z * vs[s][kvh * hd + i];
                    }
                }
            }
            let o = matvec(w(&format!("{p}.self_attn.o_proj.weight")), &attn);
            for i in 0..d {
                xs[t][i] += o[i];
            }
            let h = rms_norm(&xs[t], w(&format!("{p}.post_attention_layernorm.weight")), c.rms_norm_eps);
            let gate = matvec(w(&format!("{p}.mlp.gate_proj.weight")), &h);
            let up = matvec(w(&format!("{p}.mlp.up_proj.weight")), &h);
            let act: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = matvec(w(&format!("{p}.mlp.down_proj.weight")), &act);
            for i in 0..d {
                xs[t][i] += down[i];
            }
        }
    }
    let head = if c.tie_word_embeddings { embed } else { mat(model, "lm_head.weight") };
    let norm = mat(model, "model.norm.weight");
    xs.iter().map(|x| matvec(&head, &rms_norm(x, &norm, c.rms_norm_eps))).collect()
}
