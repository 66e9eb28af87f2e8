//! Bad input gets a clear error naming the file and the problem, a non-zero exit, and never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

/// Runs the CLI, expects failure without a panic, returns stderr. Our errors exit 1 on one line even with a
/// backtrace requested; flags clap refuses exit 2 with the flag named on the first line.
fn fails(args: &[&str]) -> String {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked for {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "unexpected stderr for {args:?}: {stderr}");
    match out.status.code() {
        Some(1) => assert_eq!(stderr.trim_end().lines().count(), 1, "not one line for {args:?}: {stderr}"),
        Some(2) => {}
        other => panic!("exit code {other:?} for {args:?}: {stderr}"),
    }
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
        nash_swarm::formats::safetensors::read_safetensors_floats(&path)
            .unwrap()
            .into_iter()
            .map(|(k, (t, _))| (k, t))
            .collect();
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
    assert_mentions(&info_fails(&file), &["stories.gguf", "lies outside the file"]);
}

#[test]
fn unknown_gguf_architecture() {
    let model = nash_swarm::load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.gguf");
    gguf_writer::write_like_llama_cpp(&model, &file, "mamba");
    assert_mentions(
        &info_fails(&file),
        &["other.gguf", "unsupported architecture `mamba`", "supported here: llama, gpt2, qwen2, qwen3, phi3, gemma3)"],
    );
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

/// GPTQ's second moments go to a scratch file in the temporary folder: one that cannot be made names the folder
/// and writes nothing.
#[test]
fn an_unusable_temporary_folder_for_gptq_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (model, text) = (stories(), wikitext());
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nash-swarm"))
        .args(["quantize", "--preset", "uniform4", "--quantizer", "gptq", "--out", out.to_str().unwrap()])
        .args(["--model", model.to_str().unwrap(), "--calib-text", text.to_str().unwrap()])
        .env("TMPDIR", dir.path().join("missing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_mentions(&stderr, &["missing", "scratch file of second moments"]);
    assert!(!out.exists(), "nothing written");
}

#[test]
fn zero_context() {
    assert_mentions(&eval_fails(&stories(), &wikitext(), &["--ctx", "0"]), &["--ctx", "must be 2 to"]);
}

#[test]
fn context_longer_than_the_model_supports() {
    assert_mentions(&eval_fails(&stories(), &wikitext(), &["--ctx", "4096"]), &["--ctx 4096", "(512)"]);
}

#[test]
fn text_shorter_than_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("short.txt");
    std::fs::write(&text, "Once upon a time.").unwrap();
    assert_mentions(&eval_fails(&stories(), &text, &["--ctx", "256"]), &["short.txt", "fewer than one window"]);
}

// ---- GGUF headers with absurd numbers: refused before anything is allocated by them ----

/// A GGUF v3 file from raw parts: metadata as (key, type id, encoded value), tensors as (name, dims, ggml type,
/// offset), then `data` after the header, aligned to 32.
fn raw_gguf(metadata: &[(&str, u32, Vec<u8>)], tensors: &[(&str, Vec<u64>, u32, u64)], data: &[u8]) -> Vec<u8> {
    let string = |s: &str| [(s.len() as u64).to_le_bytes().to_vec(), s.as_bytes().to_vec()].concat();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((metadata.len() as u64).to_le_bytes());
    for (key, kind, value) in metadata {
        b.extend(string(key));
        b.extend(kind.to_le_bytes());
        b.extend(value);
    }
    for (name, dims, kind, offset) in tensors {
        b.extend(string(name));
        b.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(kind.to_le_bytes());
        b.extend(offset.to_le_bytes());
    }
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend(data);
    b
}

fn gguf_fails(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.gguf");
    std::fs::write(&file, bytes).unwrap();
    let err = info_fails(&file);
    assert!(err.contains("bad.gguf"), "{err}");
    err
}

const GGUF_U32: u32 = 4;
const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;
const GGML_F32: u32 = 0;

#[test]
fn gguf_alignment_zero_or_not_a_power_of_two() {
    for alignment in [0u32, 24] {
        let bytes = raw_gguf(&[("general.alignment", GGUF_U32, alignment.to_le_bytes().to_vec())], &[], &[]);
        assert_mentions(&gguf_fails(&bytes), &["general.alignment", "power of two"]);
    }
}

#[test]
fn gguf_counts_larger_than_the_file() {
    let mut bytes = raw_gguf(&[], &[], &[]);
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_mentions(&gguf_fails(&bytes), &["tensor count", "cannot fit"]);
    let mut bytes = raw_gguf(&[], &[], &[]);
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_mentions(&gguf_fails(&bytes), &["metadata count", "cannot fit"]);
}

#[test]
fn gguf_string_and_array_lengths_larger_than_the_file() {
    let huge_string = [(1u64 << 50).to_le_bytes().to_vec(), b"x".to_vec()].concat();
    assert_mentions(&gguf_fails(&raw_gguf(&[("k", GGUF_STRING, huge_string)], &[], &[])), &["string length"]);
    let huge_array = [GGUF_U32.to_le_bytes().to_vec(), (1u64 << 60).to_le_bytes().to_vec()].concat();
    assert_mentions(&gguf_fails(&raw_gguf(&[("k", GGUF_ARRAY, huge_array)], &[], &[])), &["`k`", "array length"]);
}

#[test]
fn gguf_dimensions_whose_product_overflows_or_outgrows_the_file() {
    let overflow = raw_gguf(&[], &[("t", vec![1 << 32, 1 << 32, 1 << 32], GGML_F32, 0)], &[0; 64]);
    assert_mentions(&gguf_fails(&overflow), &["tensor `t`", "overflow"]);
    let too_big = raw_gguf(&[], &[("t", vec![1 << 20, 1 << 20], GGML_F32, 0)], &[0; 64]);
    assert_mentions(&gguf_fails(&too_big), &["tensor `t`", "more than the whole file"]);
    let outside = raw_gguf(&[], &[("t", vec![16], GGML_F32, 1 << 40)], &[0; 64]);
    assert_mentions(&gguf_fails(&outside), &["tensor `t`", "outside the file"]);
}

#[test]
fn gguf_block_count_contradicting_its_tensors() {
    let model = nash_swarm::load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stories.gguf");
    gguf_writer::write_like_llama_cpp(&model, &file, "llama");
    // Patch llama.block_count (5) to 4 billion: the loader must not list four billion layers' tensors.
    let mut bytes = std::fs::read(&file).unwrap();
    let key = b"llama.block_count";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    bytes[at..at + 4].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    assert_mentions(&info_fails(&file), &["stories.gguf", "declares 4000000000 layers", "hold 5"]);
}

// ---- config.json sanity ----

#[test]
fn absurd_or_inconsistent_layer_counts() {
    for (layers, held) in [(1_000_000_000_000u64, "hold 5"), (6, "hold 5"), (4, "hold 5")] {
        let dir = scratch_copy(&stories());
        edit_config(dir.path(), |c| c["num_hidden_layers"] = layers.into());
        assert_mentions(&info_fails(dir.path()), &[&format!("declares {layers} layers"), held]);
    }
}

#[test]
fn non_positive_rope_and_norm_constants() {
    for (field, value) in [("rope_theta", 0.0), ("rms_norm_eps", -1e-5), ("rope_theta", -10000.0)] {
        let dir = scratch_copy(&stories());
        edit_config(dir.path(), |c| c[field] = value.into());
        assert_mentions(&info_fails(dir.path()), &["config.json", field, "above zero"]);
    }
    let dir = scratch_copy(&stories());
    edit_config(dir.path(), |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 0.0});
    });
    assert_mentions(&info_fails(dir.path()), &["config.json", "rope_scaling.factor", "above zero"]);
}

#[test]
fn token_ids_outside_the_vocabulary() {
    for field in ["bos_token_id", "eos_token_id"] {
        let dir = scratch_copy(&stories());
        edit_config(dir.path(), |c| c[field] = 512.into());
        assert_mentions(&info_fails(dir.path()), &["config.json", field, "512", "outside the vocabulary", "512 rows"]);
    }
    let dir = scratch_copy(&stories());
    edit_config(dir.path(), |c| c["eos_token_id"] = serde_json::json!([2, 70000]));
    assert_mentions(&info_fails(dir.path()), &["eos_token_id 70000"]);
}

#[test]
fn reference_with_another_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("short.txt");
    std::fs::write(&text, std::fs::read_to_string(wikitext()).unwrap().chars().take(5000).collect::<String>()).unwrap();
    let err = eval_fails(&stories(), &text, &["--ctx", "64", "--reference", tiny_gpt2().to_str().unwrap()]);
    assert_mentions(&err, &["--reference", "tiny-gpt2-random", "vocabulary"]);
}

// ---- sharded checkpoints ----

fn shard(dir: &Path, index: serde_json::Value, shards: &[(&str, &[&str])]) {
    let tensors = nash_swarm::formats::safetensors::read_safetensors_floats(&dir.join("model.safetensors")).unwrap();
    for (file, names) in shards {
        let part: HashMap<String, candle_core::Tensor> =
            names.iter().map(|n| (n.to_string(), tensors[*n].0.clone())).collect();
        candle_core::safetensors::save(&part, dir.join(file)).unwrap();
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn a_tensor_in_two_shards() {
    let dir = scratch_copy(&stories());
    let all: Vec<String> =
        nash_swarm::formats::safetensors::read_safetensors_floats(&dir.path().join("model.safetensors"))
            .unwrap()
            .into_keys()
            .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let index = serde_json::json!({"weight_map": {"a": "one.safetensors", "b": "two.safetensors"}});
    shard(dir.path(), index, &[("one.safetensors", &all), ("two.safetensors", &all[..1])]);
    assert_mentions(&info_fails(dir.path()), &["stored twice", "one.safetensors", "two.safetensors"]);
}

#[test]
fn an_index_naming_a_file_outside_the_folder() {
    for outside in ["../elsewhere.safetensors", "/etc/passwd"] {
        let dir = scratch_copy(&stories());
        let index = serde_json::json!({"weight_map": {"model.norm.weight": outside}});
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        assert_mentions(
            &info_fails(dir.path()),
            &["model.safetensors.index.json", outside, "outside the model folder"],
        );
    }
}

// ---- quantization.toml ----

fn config_fails(edit: impl FnOnce(&mut String)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quantization.toml");
    let mut text = nash_swarm::quant::QuantConfig::uniform(4, nash_swarm::quant::GroupSize::G(128)).to_toml();
    edit(&mut text);
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    let model = stories();
    let args = ["quantize", "--model", model.to_str().unwrap(), "--config", path.to_str().unwrap()];
    let err = fails(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(!out.exists(), "an output was written");
    err
}

#[test]
fn unknown_configuration_keys_are_named() {
    assert_mentions(&config_fails(|t| t.insert_str(0, "tier_count = 3\n")), &["quantization.toml", "tier_count"]);
    assert_mentions(&config_fails(|t| *t = t.replace("bits = 4", "bits = 4\nsharee = 0.5")), &["sharee"]);
    assert_mentions(&config_fails(|t| *t = t.replace("mlp = true", "mlp = true\nnorms = true")), &["norms"]);
    assert_mentions(&config_fails(|t| *t = t.replace("windows = 64", "windows = 64\nseed = 1")), &["`seed`"]);
    let magnitude = "method = \"magnitude\"";
    assert_mentions(&config_fails(|t| *t = t.replace(magnitude, "method = \"magnitude\"\nalpha = 0.5")), &["alpha"]);
}

#[test]
fn configuration_numbers_out_of_range() {
    assert_mentions(&config_fails(|t| *t = t.replace("share = 1.0", "share = nan")), &["share"]);
    assert_mentions(&config_fails(|t| *t = t.replace("windows = 64", "windows = 0")), &["calibration", "windows"]);
    assert_mentions(&config_fails(|t| *t = t.replace("bits = 4", "bits = 7")), &["7 bits"]);
}

#[test]
fn an_override_naming_a_missing_tensor() {
    let override_ = "\n[overrides.\"model.layers.9.mlp.up_proj.weight\"]\ngranularity = \"tensor\"\ngroup_size = \"128\"\ngrid = \"asymmetric\"\n\n[[overrides.\"model.layers.9.mlp.up_proj.weight\".tiers]]\nshare = 1.0\nbits = 4\n";
    assert_mentions(&config_fails(|t| t.push_str(override_)), &["model.layers.9.mlp.up_proj.weight", "no such tensor"]);
}

// ---- packed exports whose metadata contradicts their arrays ----

fn packed_export(dir: &Path) -> std::path::PathBuf {
    let model = nash_swarm::load(&stories()).unwrap();
    let config = nash_swarm::quant::QuantConfig::seed();
    let q = nash_swarm::quant::quantize_model(&model, &config, None, &nash_swarm::Job::silent()).unwrap();
    let out = dir.join("packed");
    nash_swarm::formats::packed::export(&model, &q, &out).unwrap();
    out
}

/// Rewrites the packed file's `matrices` metadata through `edit` (arrays unchanged).
fn edit_packed_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut matrices: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["matrices"].as_str().unwrap()).unwrap();
    edit(&mut matrices);
    header["__metadata__"]["matrices"] = matrices.to_string().into();
    let mut new_header = header.to_string().into_bytes();
    new_header.resize(new_header.len().div_ceil(8) * 8, b' ');
    let out = [(new_header.len() as u64).to_le_bytes().to_vec(), new_header, bytes[8 + n..].to_vec()].concat();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn packed_metadata_disagreeing_with_the_arrays() {
    const NAME: &str = "model.layers.2.mlp.down_proj.weight";
    let cases: [(&str, Box<dyn Fn(&mut serde_json::Value)>); 4] = [
        ("absurd rows", Box::new(|m| m[NAME]["rows"] = 1_000_000_000_000u64.into())),
        ("rows", Box::new(|m| m[NAME]["rows"] = 32.into())),
        ("bits", Box::new(|m| m[NAME]["plan"]["tiers"][2]["bits"] = 8.into())),
        ("granularity", Box::new(|m| m[NAME]["plan"]["granularity"] = "channel".into())),
    ];
    for (what, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        let packed = packed_export(dir.path());
        edit_packed_metadata(&packed, edit);
        let err = info_fails(&packed);
        assert_mentions(&err, &["model.safetensors", NAME]);
        assert!(err.len() < 600, "{what}: {err}");
    }
}

// ---- flags ----

fn flag_fails(args: &[&str], flag: &str) {
    let err = fails(args);
    assert!(err.lines().next().unwrap().contains(flag), "{flag} not named for {args:?}: {err}");
}

#[test]
fn numeric_flags_out_of_range_name_the_flag() {
    let (m, t) = (stories(), wikitext());
    let (m, t) = (m.to_str().unwrap(), t.to_str().unwrap());
    for bpw in ["nan", "-1", "0", "1e9", "inf", "four"] {
        flag_fails(&["quantize", "--model", m, "--target-bpw", bpw, "--out", "/tmp/never"], "--target-bpw");
    }
    for (flag, value) in [("--ctx", "0"), ("--ctx", "-3"), ("--max-windows", "0"), ("--seed-texts", "0")] {
        flag_fails(&["eval", "--model", m, "--text", t, flag, value], flag);
    }
    flag_fails(&["bench", "--model", m, "--text", t, "--windows", "0"], "--windows");
    flag_fails(&["demo", "--headless", "--max-windows", "0"], "--max-windows");
    assert!(!Path::new("/tmp/never").exists());
}

#[test]
fn an_os_error_is_printed_once() {
    let err = fails(&[
        "quantize",
        "--model",
        stories().to_str().unwrap(),
        "--config",
        "/nonexistent/q.toml",
        "--out",
        "/tmp/never2",
    ]);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

// ---- what is written must load again; what is evaluated must be a number ----

fn set_values(dir: &Path, name: &str, value: f32, count: usize) {
    let name = name.to_string();
    save_safetensors(dir, move |t| {
        let mut v = nash_swarm::model::tensor_to_vec(&t[&name]).unwrap();
        v.iter_mut().take(count).for_each(|x| *x = value);
        let shape = t[&name].dims().to_vec();
        t.insert(name, candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap());
    });
}

#[test]
fn values_beyond_f16_are_refused_where_f16_would_hold_them() {
    let dir = scratch_copy(&stories());
    set_values(dir.path(), "model.norm.weight", 1e5, 1);
    let out = tempfile::tempdir().unwrap();
    let q = out.path().join("q");
    let err = fails(&[
        "quantize",
        "--model",
        dir.path().to_str().unwrap(),
        "--preset",
        "uniform4",
        "--out",
        q.to_str().unwrap(),
    ]);
    assert_mentions(&err, &["model.norm.weight", "65504", "nothing is written"]);
    assert!(!q.exists());
}

#[test]
fn a_matrix_value_beyond_f16_on_a_4_bit_grid_exports_and_loads_again() {
    let dir = scratch_copy(&stories());
    set_values(dir.path(), "model.layers.1.mlp.up_proj.weight", 1e5, 1);
    let out = tempfile::tempdir().unwrap();
    let q = out.path().join("q");
    let args =
        ["quantize", "--model", dir.path().to_str().unwrap(), "--preset", "uniform4", "--out", q.to_str().unwrap()];
    let run = cli(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let loaded = nash_swarm::load(&q).unwrap();
    let w =
        nash_swarm::model::tensor_to_vec(&loaded.weights.get("model.layers.1.mlp.up_proj.weight").unwrap()).unwrap();
    assert!((w[0] - 1e5).abs() < 1e5 / 15.0, "the large value survives on its grid: {}", w[0]);
}

#[test]
fn an_evaluation_that_overflows_is_an_error_not_a_number() {
    let dir = scratch_copy(&stories());
    set_values(dir.path(), "model.norm.weight", 3e38, 64);
    let text = tempfile::tempdir().unwrap();
    let short = text.path().join("short.txt");
    std::fs::write(&short, std::fs::read_to_string(wikitext()).unwrap().chars().take(3000).collect::<String>())
        .unwrap();
    for protocol in ["ppl", "seed"] {
        let err = eval_fails(dir.path(), &short, &["--ctx", "64", "--protocol", protocol, "--seed-texts", "2"]);
        assert_mentions(&err, &["evaluation gave", "overflow or are not numbers"]);
    }
}
