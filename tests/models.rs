//! Every model path against an independent reference.

mod common;

use common::*;
use nash_swarm::eval::{self, Kld, WindowSpec};
use nash_swarm::model::tensor_to_vec;
use nash_swarm::{Job, load};

#[test]
fn gpt2_logits_match_the_float64_reference() {
    let model = load(&tiny_gpt2()).unwrap();
    let reference =
        nash_swarm::formats::safetensors::read_safetensors_floats(&tiny_gpt2().join("reference.safetensors"));
    // input_ids are I64, which the f32 reader refuses; read them directly.
    assert!(reference.is_err(), "reference.safetensors holds integer ids, which are not weights");
    let bytes = std::fs::read(tiny_gpt2().join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<u32> = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let expected: Vec<f32> = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();

    // Our tokenizer gives the same first 32 tokens of WikiText-2.
    let text = eval::read_text(&wikitext()).unwrap();
    assert_eq!(model.encode(&text).unwrap()[..32], ids[..]);

    let logits = tensor_to_vec(&model.forward(&ids).unwrap()).unwrap();
    let diff = max_abs_diff(&logits, &expected);
    assert!(diff <= 1e-3, "max |logit - reference| = {diff}");

    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mean_nll: f64 = metadata.metadata().as_ref().unwrap()["mean_nll"].parse().unwrap();
    let windows =
        eval::windows(&model, &ids, WindowSpec { ctx: 32, max_windows: Some(1), bos: false }, &wikitext()).unwrap();
    let (report, _) = eval::evaluate_ppl(&model, &windows, Kld::Skip, &Job::silent()).unwrap();
    assert_eq!(report.tokens_scored, 31);
    assert!((report.nll - mean_nll).abs() <= 1e-4, "mean NLL {} vs reference {mean_nll}", report.nll);
}

#[test]
fn stories260k_matches_an_independent_f64_forward_pass() {
    let model = load(&stories()).unwrap();
    let ids: Vec<u32> = model.encode("Once upon a time, there was a little girl named Lily.").unwrap();
    assert!(ids.len() > 8);
    let ours = model.forward(&ids).unwrap().to_vec2::<f32>().unwrap();
    let reference = reference::llama_logits(&model, &ids);
    for (row, ref_row) in ours.iter().zip(&reference) {
        let ref_row: Vec<f32> = ref_row.iter().map(|v| *v as f32).collect();
        let diff = max_abs_diff(row, &ref_row);
        assert!(diff < 1e-3, "max |logit - f64 reference| = {diff}");
    }
}

#[test]
fn stories260k_gives_a_finite_perplexity_on_wikitext() {
    let model = load(&stories()).unwrap();
    let text = eval::read_text(&wikitext()).unwrap();
    let spec = WindowSpec { ctx: 256, max_windows: Some(4), bos: true };
    let windows = eval::windows(&model, &model.encode(&text).unwrap(), spec, &wikitext()).unwrap();
    assert!(windows.iter().all(|w| w.len() == 256 && w[0] == 1));
    let (report, _) = eval::evaluate_ppl(&model, &windows, Kld::Skip, &Job::silent()).unwrap();
    assert_eq!(report.tokens_scored, 4 * 255);
    assert!(report.ppl.is_finite() && report.ppl > 1.0 && report.ppl < 512.0, "ppl {}", report.ppl);
    assert!(report.nll_stderr > 0.0 && report.nll_stderr < 0.5);
}

#[test]
fn kld_of_a_model_against_itself_is_zero_and_against_another_is_not() {
    let model = load(&stories()).unwrap();
    let text = eval::read_text(&wikitext()).unwrap();
    let spec = WindowSpec { ctx: 128, max_windows: Some(2), bos: false };
    let windows = eval::windows(&model, &model.encode(&text).unwrap(), spec, &wikitext()).unwrap();
    let (base, reference) = eval::evaluate_ppl(&model, &windows, Kld::Record, &Job::silent()).unwrap();
    let reference = reference.unwrap();
    let (same, _) = eval::evaluate_ppl(&model, &windows, Kld::Against(&reference), &Job::silent()).unwrap();
    let kld = same.kld.unwrap();
    assert!(kld.mean < 1e-4 && kld.top1_agreement == 1.0, "{kld:?}");
    assert_eq!(same.nll, base.nll);

    // Perturb one matrix: KLD becomes positive and the argmax sometimes flips.
    let mut weights = model.weights.clone();
    let name = "model.layers.0.mlp.down_proj.weight";
    let w = weights.get(name).unwrap();
    let noisy = (&w + w.randn_like(0.0, 0.2).unwrap()).unwrap();
    weights.insert(name, noisy);
    let (other, _) =
        eval::evaluate_ppl(&model.with_weights(weights), &windows, Kld::Against(&reference), &Job::silent()).unwrap();
    let kld = other.kld.unwrap();
    assert!(kld.mean > 1e-3 && kld.p99 >= kld.mean && kld.top1_agreement < 1.0, "{kld:?}");
}

/// stories260k written as llama.cpp would (permuted q/k, llama.cpp names and metadata) loads back to the same
/// logits: checks the GGUF names, metadata and un-permutation.
#[test]
fn a_gguf_written_like_llama_cpp_loads_to_the_same_logits() {
    let model = load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stories.gguf");
    gguf_writer::write_like_llama_cpp(&model, &path, "llama");
    let from_gguf = load(&path).unwrap();
    assert_eq!(from_gguf.architecture, model.architecture);
    let ids = [1u32, 400, 34, 7, 300, 99, 12, 5, 260, 411];
    let a = tensor_to_vec(&model.forward(&ids).unwrap()).unwrap();
    let b = tensor_to_vec(&from_gguf.forward(&ids).unwrap()).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
}
