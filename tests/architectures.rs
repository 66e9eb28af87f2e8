//! Each Hugging Face architecture against transformers' own float64 forward pass of the same weights
//! (`../shared/fixtures/tiny-*-random`: random models saved by transformers, with reference logits).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nash_swarm::model::tensor_to_vec;

const FIXTURES: [&str; 6] = ["qwen2", "qwen3", "llama3", "mistral", "gemma3", "phi3"];

fn fixture(name: &str) -> PathBuf {
    shared().join(format!("fixtures/tiny-{name}-random"))
}

/// The reference's input ids, logits `[48 * 512]` and mean NLL.
fn reference(dir: &Path) -> (Vec<u32>, Vec<f32>, f64) {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap().data().chunks_exact(8);
    let ids = ids.map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32).collect();
    let logits = st.tensor("logits").unwrap().data().chunks_exact(4);
    let logits = logits.map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let nll = metadata.metadata().as_ref().unwrap()["mean_nll"].parse().unwrap();
    (ids, logits, nll)
}

#[test]
fn every_architecture_matches_its_float64_reference_logits() {
    for name in FIXTURES {
        let dir = fixture(name);
        let model = nash_swarm::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ids, expected, _) = reference(&dir);
        let logits = tensor_to_vec(&model.forward(&ids).unwrap()).unwrap();
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff <= 1e-3, "{name}: max |logit - reference| = {diff}");
    }
}

#[test]
fn every_architecture_scores_the_reference_nll_through_eval() {
    for name in FIXTURES {
        let dir = fixture(name);
        let (_, _, want) = reference(&dir);
        let text = wikitext();
        let args = ["eval", "--model", dir.to_str().unwrap(), "--text", text.to_str().unwrap()];
        let run = cli(&[&args[..], &["--ctx", "48", "--max-windows", "1", "--bos", "--json"]].concat());
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(out["tokens_scored"], 47, "{name}");
        let nll = out["nll"].as_f64().unwrap();
        assert!((nll - want).abs() <= 1e-4, "{name}: mean NLL {nll} vs reference {want}");
    }
}

#[test]
fn a_changed_config_is_refused_naming_the_key() {
    let cases = [
        ("gemma3", "attn_logit_softcapping", serde_json::json!(50.0), "attn_logit_softcapping"),
        ("phi3", "rope_parameters", serde_json::json!({"rope_type": "longrope", "rope_theta": 1e4}), "longrope"),
        ("qwen3", "num_key_value_heads", serde_json::json!(3), "num_key_value_heads"),
        ("mistral", "hidden_size", serde_json::json!(0), "hidden_size"),
        ("gemma3", "layer_types", serde_json::json!(["full_attention"]), "layer_types"),
        ("qwen3", "num_experts", serde_json::json!(8), "num_experts"),
        ("mistral", "num_local_experts", serde_json::json!(8), "num_local_experts"),
    ];
    for (name, key, value, expected) in cases {
        let copy = scratch_copy(&fixture(name));
        let path = copy.path().join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config[key] = value;
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let err = nash_swarm::load(copy.path()).err().unwrap_or_else(|| panic!("{name} with {key} loaded")).to_string();
        assert!(err.contains(expected) && err.contains("config.json"), "{name}, {key}: {err}");
    }
}

#[test]
fn fused_projections_are_one_heatmap_column_and_norms_are_not_quantized() {
    let phi3 = nash_swarm::load(&fixture("phi3")).unwrap();
    let arch = &phi3.architecture;
    assert_eq!(arch.kind_of("model.layers.1.self_attn.qkv_proj.weight"), Some("qkv"));
    assert_eq!(arch.kind_of("model.layers.0.mlp.gate_up_proj.weight"), Some("gate_up"));
    let qwen3 = nash_swarm::load(&fixture("qwen3")).unwrap();
    assert_eq!(qwen3.architecture.kind_of("model.layers.0.self_attn.q_norm.weight"), None);
    let role = qwen3.architecture.tensor_role("model.layers.0.self_attn.q_norm.weight");
    assert_eq!(role, nash_swarm::model::TensorRole::Other);
    let qwen2 = nash_swarm::load(&fixture("qwen2")).unwrap();
    let role = qwen2.architecture.tensor_role("model.layers.0.self_attn.q_proj.bias");
    assert_eq!(role, nash_swarm::model::TensorRole::Other);
}

/// llama.cpp's mean NLL over the same 48 tokens, running our F32 GGUF export of each fixture (llama-cpp-python
/// 0.3.36 built from its sources, `Llama(path, logits_all=True).eval(ids)`, December 2026). It runs Gemma 3 with
/// its fixed pattern (every sixth layer full), so the Gemma figure is checked against our model with both layers
/// sliding. Llama 3's rope scaling goes to llama.cpp as its `rope_freqs.weight`. Phi-3 was exported from a folder whose name lacks "phi3" (llama.cpp then looks up Phi-3's special
/// tokens, which the fixture's vocabulary does not have).
const LLAMA_CPP_NLL: [(&str, f64); 6] = [
    ("qwen2", 6.477842),
    ("qwen3", 7.2709317),
    ("llama3", 7.1786084),
    ("mistral", 7.0718846),
    ("phi3", 6.9655566),
    ("gemma3", 6.9031467),
];

fn eval_nll(model: &Path) -> f64 {
    let text = wikitext();
    let args = ["eval", "--model", model.to_str().unwrap(), "--text", text.to_str().unwrap()];
    let run = cli(&[&args[..], &["--ctx", "48", "--max-windows", "1", "--bos", "--json"]].concat());
    assert!(run.status.success(), "{model:?}: {}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["nll"].as_f64().unwrap()
}

#[test]
fn every_architecture_survives_our_gguf_export_and_scores_as_llama_cpp_scores_it() {
    for (name, llama_cpp) in LLAMA_CPP_NLL {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join(format!("{name}.gguf"));
        let src = fixture(name);
        let run =
            cli(&["quantize", "--model", src.to_str().unwrap(), "--preset", "f32", "--out", gguf.to_str().unwrap()]);
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        // The same logits and NLL as the Hugging Face folder (and so as transformers).
        let (ids, expected, want) = reference(&src);
        let model = nash_swarm::load(&gguf).unwrap();
        let diff = max_abs_diff(&tensor_to_vec(&model.forward(&ids).unwrap()).unwrap(), &expected);
        assert!(diff <= 1e-3, "{name} through GGUF: max |logit - reference| = {diff}");
        let nll = eval_nll(&gguf);
        assert!((nll - want).abs() <= 1e-4, "{name} through GGUF: mean NLL {nll} vs reference {want}");
        // llama.cpp's figure: within its own rounding (f16 attention cache) of ours.
        let ours = if name == "gemma3" {
            let copy = scratch_copy(&src);
            let path = copy.path().join("config.json");
            let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            config["layer_types"] = serde_json::json!(["sliding_attention", "sliding_attention"]);
            std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
            eval_nll(copy.path())
        } else {
            nll
        };
        assert!((ours - llama_cpp).abs() <= 1e-3, "{name}: ours {ours} vs llama.cpp {llama_cpp}");
    }
}

#[test]
fn bf16_and_fp16_weights_stay_in_their_dtype_in_memory() {
    for (name, dtype) in [("qwen2", "BF16"), ("llama3", "F16")] {
        let model = nash_swarm::load(&fixture(name)).unwrap();
        let held = |t: &nash_swarm::model::Stored| {
            matches!(t, nash_swarm::model::Stored::Mapped(_)) && t.encoding_name() == dtype
        };
        assert!(model.weights.0.values().all(held), "{name}: every weight held mapped as {dtype}");
        // Used in f32, one tensor at a time.
        let embed = model.weights.get("model.embed_tokens.weight").unwrap();
        assert_eq!(embed.dtype(), candle_core::DType::F32);
    }
}
