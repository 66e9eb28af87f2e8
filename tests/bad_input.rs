//! Bad input gets a clear error naming the file and the problem, a non-zero exit, and never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;

/// Runs the CLI, expects failure without a panic, returns stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nash-swarm")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked for {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "unexpected stderr for {args:?}: {stderr}");
    stderr
}

fn info_fails(model: &Path) -> String {
    fails(&["info", "--model", model.to_str().unwrap()])
}

fn eval_fails(model: &Path, text: &Path, extra: &[&str]) -> String {
    let mut args = vec!["eval", "--model", model.to_str().unwrap(), "--text", text.to_str().unwrap()];
    args.extend(extra);
    fails(&args)
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
}

fn save_safetensors(dir: &Path, edit: impl FnOnce(&mut HashMap<String, candle_core::Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors: HashMap<String, candle_core::Tensor> =
        nash_swarm::model::read_safetensors_f32(&path).unwrap().into_iter().map(|(k, (t, _))| (k, t)).collect();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn missing_path() {
    let err = info_fails(Path::new("/nonexistent/model"));
    assert_mentions(&err, &["/nonexistent/model", "no such file"]);
}

#[test]
fn truncated_safetensors() {
    let dir = scratch_copy(&stories());
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(&info_fails(dir.path()), &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn random_bytes_instead_of_safetensors() {
    let dir = scratch_copy(&stories());
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("model.safetensors"), noise).unwrap();
    assert_mentions(&info_fails(dir.path()), &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn random_bytes_instead_of_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.gguf");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(&file, noise).unwrap();
    assert_mentions(&info_fails(&file), &["model.gguf", "not a valid GGUF file"]);
}

#[test]
fn truncated_gguf() {
    let model = nash_swarm::load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stories.gguf");
    gguf_writer::write_like_llama_cpp(&model, &file, "llama");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 5000]).unwrap();
    assert_mentions(&info_fails(&file), &["stories.gguf", "cannot read tensor"]);
}

#[test]
fn unknown_gguf_architecture() {
    let model = nash_swarm::load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.gguf");
    gguf_writer::write_like_llama_cpp(&model, &file, "mamba");
    assert_mentions(&info_fails(&file), &["other.gguf", "unsupported architecture `mamba`"]);
}

#[test]
fn missing_config() {
    let dir = scratch_copy(&stories());
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert_mentions(&info_fails(dir.path()), &[dir.path().to_str().unwrap(), "config.json is missing"]);
}

#[test]
fn malformed_config() {
    let dir = scratch_copy(&stories());
    std::fs::write(dir.path().join("config.json"), "{\"model_type\": \"llama\", ").unwrap();
    assert_mentions(&info_fails(dir.path()), &["config.json", "malformed JSON"]);
}

#[test]
fn config_missing_a_field() {
    let dir = scratch_copy(&stories());
    edit_config(dir.path(), |c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    assert_mentions(&info_fails(dir.path()), &["config.json", "hidden_size"]);
}

#[test]
fn unknown_model_type() {
    let dir = scratch_copy(&stories());
    edit_config(dir.path(), |c| c["model_type"] = "mamba".into());
    assert_mentions(&info_fails(dir.path()), &["config.json", "unsupported architecture `mamba`"]);
}

#[test]
fn shape_contradicts_config() {
    let dir = scratch_copy(&stories());
    edit_config(dir.path(), |c| c["intermediate_size"] = 100.into());
    assert_mentions(
        &info_fails(dir.path()),
        &["model.safetensors", "model.layers.0.mlp.gate_proj.weight", "[172, 64]", "[100, 64]"],
    );
}

#[test]
fn gpt2_shape_is_reported_as_stored() {
    let dir = scratch_copy(&tiny_gpt2());
    edit_config(dir.path(), |c| c["n_embd"] = 32.into());
    assert_mentions(&info_fails(dir.path()), &["model.safetensors", "has shape", "config implies"]);
}

#[test]
fn missing_tensor() {
    let dir = scratch_copy(&stories());
    save_safetensors(dir.path(), |t| {
        t.remove("model.layers.3.self_attn.v_proj.weight");
    });
    assert_mentions(&info_fails(dir.path()), &["model.layers.3.self_attn.v_proj.weight", "is missing"]);
}

#[test]
fn missing_tokenizer() {
    let dir = scratch_copy(&stories());
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_mentions(&info_fails(dir.path()), &["tokenizer.json is missing"]);
}

#[test]
fn nan_and_inf_weights() {
    let dir = scratch_copy(&stories());
    save_safetensors(dir.path(), |t| {
        let name = "model.layers.1.mlp.up_proj.weight";
        let mut v = nash_swarm::model::tensor_to_vec(&t[name]).unwrap();
        v[5] = f32::NAN;
        v[9] = f32::INFINITY;
        let shape = t[name].dims().to_vec();
        t.insert(name.into(), candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap());
    });
    assert_mentions(&info_fails(dir.path()), &["model.layers.1.mlp.up_proj.weight", "2 NaN or infinite"]);
}

#[test]
fn empty_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("empty.txt");
    std::fs::write(&text, "  \n\n").unwrap();
    assert_mentions(&eval_fails(&stories(), &text, &[]), &["empty.txt", "empty"]);
}

#[test]
fn non_utf8_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("latin1.txt");
    std::fs::write(&text, b"caf\xe9 au lait").unwrap();
    assert_mentions(&eval_fails(&stories(), &text, &[]), &["latin1.txt", "not UTF-8", "offset 3"]);
}

#[test]
fn missing_text() {
    assert_mentions(&eval_fails(&stories(), Path::new("/nonexistent/wiki.txt"), &[]), &["/nonexistent/wiki.txt"]);
}

#[test]
fn zero_context() {
    assert_mentions(&eval_fails(&stories(), &wikitext(), &["--ctx", "0"]), &["context 0"]);
}

#[test]
fn context_longer_than_the_model_supports() {
    assert_mentions(&eval_fails(&stories(), &wikitext(), &["--ctx", "4096"]), &["context 4096", "(512)"]);
}

#[test]
fn text_shorter_than_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("short.txt");
    std::fs::write(&text, "Once upon a time.").unwrap();
    assert_mentions(&eval_fails(&stories(), &text, &["--ctx", "256"]), &["short.txt", "fewer than one window"]);
}
