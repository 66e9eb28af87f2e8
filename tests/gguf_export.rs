//! GGUF export: the files we write are read back by an independent reader (the `gguf` package, 0.19.0) with the
//! names, shapes, types and values we meant; they load in our reader with the tokenizer intact; presets pick
//! llama.cpp's per-tensor types; what cannot be written is refused before anything is.
//! Needs python3 with pip: `gguf==0.19.0` and numpy are installed into the cache where it lacks them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{cli, gguf_writer, leftovers, stories, tree_hashes, wikitext};
use nash_swarm::formats::gguf::{self, export};
use nash_swarm::quant::ggml::preset::Preset;
use nash_swarm::quant::ggml::{self as ggml, BlockType};
use nash_swarm::{CancelToken, Job};

fn job() -> Job {
    Job::new(CancelToken::default(), |_| {})
}

fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The same mean NLL (within f32 noise) from the source and from what we wrote, on one window.
fn assert_same_nll(model: &nash_swarm::Model, written: &nash_swarm::Model, window: &[u32]) {
    let windows = vec![window.to_vec()];
    let nll = |m| nash_swarm::eval::evaluate_ppl(m, &windows, nash_swarm::eval::Kld::Skip, &job()).unwrap().0.nll;
    let (a, b) = (nll(model), nll(written));
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

/// stories260k as llama.cpp's converter writes it (F32, toy gpt2 vocabulary), in a scratch folder.
fn stories_gguf(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("stories-f32.gguf");
    gguf_writer::write_like_llama_cpp(&nash_swarm::load(&stories()).unwrap(), &path, "llama");
    path
}

/// What the `gguf` package reads from a file: per tensor its type name, shape (innermost first, as GGUF stores
/// it) and dequantized values.
#[derive(serde::Deserialize)]
struct PyTensor {
    ty: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn read_with_gguf_package(path: &Path) -> BTreeMap<String, PyTensor> {
    let script = r#"
import json, sys
import numpy as np
from gguf import GGUFReader, quants
r = GGUFReader(sys.argv[1])
out = {}
for t in r.tensors:
    values = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    out[t.name] = {"ty": t.tensor_type.name, "shape": [int(d) for d in t.shape], "values": values.tolist()}
json.dump(out, sys.stdout)
"#;
    let out = common::python_with_gguf()
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 is needed for the independent GGUF reader");
    assert!(out.status.success(), "gguf package failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_preset_is_read_back_by_the_gguf_package_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = stories_gguf(dir.path());
    let model = nash_swarm::load(&source).unwrap();
    for name in ["q8_0", "q6_k", "q4_k_m", "q4_0", "iq4_nl", "q3_k_m", "q2_k", "f16", "bf16"] {
        let preset = Preset::parse(name).unwrap();
        let out = dir.path().join(format!("{name}.gguf"));
        let plan = export::preset_plan(&model, preset, false).unwrap();
        let report = export::export(&model, &plan, None, &out, &job()).unwrap();
        assert_eq!(report.file_bytes, std::fs::metadata(&out).unwrap().len(), "{name}: size reported");

        let header = gguf::read_header(&out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let theirs = read_with_gguf_package(&out);
        assert_eq!(theirs.len(), header.tensors.len(), "{name}: tensor count");
        let mut tensor_bytes = 0;
        for info in &header.tensors {
            let t = &theirs[&info.name];
            assert_eq!(t.ty, info.ty.name(), "{name}: type of {}", info.name);
            let innermost_first: Vec<usize> = info.shape.iter().rev().copied().collect();
            assert_eq!(t.shape, innermost_first, "{name}: shape of {}", info.name);
            let ours = ggml::decode(info.ty, &bytes[info.start..][..info.size], info.elements()).unwrap();
            assert_eq!(ours, t.values, "{name}: values of {} decoded by us and by the gguf package", info.name);
            tensor_bytes += info.size as u64;
        }
        assert_eq!(tensor_bytes, report.tensor_bytes, "{name}: tensor bytes match the file");

        // Our reader opens it, and every weight is within its type's error of the source.
        let written = nash_swarm::load(&out).unwrap();
        for (tensor_name, original) in &model.weights.0 {
            let (a, b) = (values(&original.to_f32().unwrap()), values(&written.weights.get(tensor_name).unwrap()));
            let (err, norm) = a
                .iter()
                .zip(&b)
                .fold((0.0f64, 0.0f64), |(e, n), (x, y)| (e + ((x - y) as f64).powi(2), n + (*x as f64).powi(2)));
            let ty = written.stored_dtypes[tensor_name].clone();
            let bound = match BlockType::parse(&ty).unwrap().bits_per_weight() {
                b if b >= 16.0 => 1e-5,
                b if b >= 8.0 => 1e-4,
                b if b >= 5.0 => 5e-3,
                b if b >= 4.0 => 2e-2,
                _ => 8e-2,
            };
            assert!(err / norm.max(1e-30) < bound, "{name}: {tensor_name} as {ty}: relative error {}", err / norm);
        }
    }
}

#[test]
fn metadata_is_carried_over_and_the_file_type_set() {
    let dir = tempfile::tempdir().unwrap();
    let source = stories_gguf(dir.path());
    let model = nash_swarm::load(&source).unwrap();
    let out = dir.path().join("q4_k_m.gguf");
    let plan = export::preset_plan(&model, Preset::parse("q4_k_m").unwrap(), false).unwrap();
    export::export(&model, &plan, None, &out, &job()).unwrap();
    let before: BTreeMap<_, _> = gguf::read_header(&source).unwrap().metadata.into_iter().collect();
    let after: BTreeMap<_, _> = gguf::read_header(&out).unwrap().metadata.into_iter().collect();
    for (key, value) in &before {
        assert_eq!(format!("{:?}", after[key]), format!("{value:?}"), "metadata `{key}` carried over");
    }
    assert_eq!(format!("{:?}", after["general.file_type"]), "U32(15)");
    assert_eq!(format!("{:?}", after["general.quantization_version"]), "U32(2)");
    // The tokenizer survives: the same ids for the same text.
    let text = &nash_swarm::eval::read_text(&wikitext()).unwrap()[..2000];
    let written = nash_swarm::load(&out).unwrap();
    assert_eq!(written.encode(text).unwrap(), model.encode(text).unwrap());
}

/// A Hugging Face folder of stories260k with a byte-level BPE tokenizer (GPT-2 style): letters pair up into
/// 256 merged tokens, so real text exercises merges and the byte alphabet.
fn byte_level_stories(dir: &Path) -> std::path::PathBuf {
    let folder = dir.join("stories-bytelevel");
    std::fs::create_dir(&folder).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(stories().join(file), folder.join(file)).unwrap();
    }
    // GPT-2's byte-to-unicode alphabet.
    let mut alphabet: Vec<char> = Vec::new();
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shift = 0;
    for b in 0..256u32 {
        alphabet.push(if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            shift += 1;
            char::from_u32(255 + shift).unwrap()
        });
    }
    let mut vocab: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    let letters = "etaoinshrdlucmfw";
    for a in std::iter::once('Ġ').chain(letters.chars()) {
        for b in letters.chars() {
            if vocab.len() < 512 {
                merges.push(format!("{a} {b}"));
                vocab.push(format!("{a}{b}"));
            }
        }
    }
    vocab.truncate(511);
    merges.truncate(255);
    vocab.push("<|endoftext|>".into());
    let vocab_map: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, t)| (t.clone(), i.into())).collect();
    let spec = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 511, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab_map, "merges": merges},
    });
    std::fs::write(folder.join("tokenizer.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    folder
}

#[test]
fn a_hugging_face_folder_is_written_with_llama_cpp_names_layout_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let folder = byte_level_stories(dir.path());
    let model = nash_swarm::load(&folder).unwrap();
    let out = dir.path().join("f32.gguf");
    let plan = export::preset_plan(&model, Preset::parse("f32").unwrap(), false).unwrap();
    export::export(&model, &plan, None, &out, &job()).unwrap();

    // Exact in f32: our reader gives back every weight bit for bit (q/k permuted and back).
    let written = nash_swarm::load(&out).unwrap();
    assert_eq!(written.weights.0.keys().collect::<Vec<_>>(), model.weights.0.keys().collect::<Vec<_>>());
    for (name, t) in &model.weights.0 {
        let (a, b) = (values(&t.to_f32().unwrap()), values(&written.weights.get(name).unwrap()));
        assert_eq!(a, b, "{name}");
    }
    // llama.cpp's names and its q/k row order, checked independently against the expected permutation.
    let theirs = read_with_gguf_package(&out);
    let q = model.weights.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    let (rows, cols) = q.dims2().unwrap();
    let heads = model.architecture.config::<nash_swarm::model::LlamaConfig>().unwrap().num_attention_heads;
    let q = values(&q);
    let half = rows / heads / 2;
    let permuted: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let (h, rest) = (r / (2 * half), r % (2 * half));
            let source = h * 2 * half + (rest % 2) * half + rest / 2;
            q[source * cols..][..cols].to_vec()
        })
        .collect();
    assert_eq!(theirs["blk.0.attn_q.weight"].values, permuted);
    assert!(theirs.contains_key("token_embd.weight") && theirs.contains_key("output_norm.weight"));

    // The same token ids for the same text, special tokens included.
    let text = format!("{} <|endoftext|> 1234 the end", &nash_swarm::eval::read_text(&wikitext()).unwrap()[..3000]);
    assert_eq!(written.encode(&text).unwrap(), model.encode(&text).unwrap());
    // And the same numbers: logits equal to the source's.
    assert_same_nll(&model, &written, &model.encode(&text).unwrap()[..64]);
}

#[test]
fn gpt2_is_written_with_llama_cpp_names_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = nash_swarm::load(&common::tiny_gpt2()).unwrap();
    let out = dir.path().join("gpt2-f32.gguf");
    let plan = export::preset_plan(&model, Preset::parse("f32").unwrap(), false).unwrap();
    export::export(&model, &plan, None, &out, &job()).unwrap();
    let theirs = read_with_gguf_package(&out);
    for name in [
        "token_embd.weight",
        "position_embd.weight",
        "blk.0.attn_qkv.weight",
        "blk.0.attn_qkv.bias",
        "output_norm.bias",
    ] {
        assert!(theirs.contains_key(name), "{name} missing: {:?}", theirs.keys().collect::<Vec<_>>());
    }
    let written = nash_swarm::load(&out).unwrap();
    assert_eq!(written.architecture.name(), "gpt2");
    for (name, t) in &model.weights.0 {
        assert_eq!(values(&t.to_f32().unwrap()), values(&written.weights.get(name).unwrap()), "{name}");
    }
    let text = &nash_swarm::eval::read_text(&wikitext()).unwrap()[..5000];
    let ids = model.encode(text).unwrap();
    assert_eq!(written.encode(text).unwrap(), ids);
    assert_same_nll(&model, &written, &ids[..48]);
    // A quantized preset: the fused qkv follows llama.cpp's attn_v rules, position embeddings stay f32.
    let plan = export::preset_plan(&model, Preset::parse("q4_k_m").unwrap(), false).unwrap();
    assert_eq!(plan.types["wpe.weight"], BlockType::F32);
}

/// What `compare` scores for a llama.cpp preset (the encoded tensors held as they are, decoded where used) is what
/// loading the written file gives: every weight equal and the same NLL, through llama's permuted q/k and GPT-2's
/// transposed matrices.
#[test]
fn a_preset_scored_without_writing_it_is_the_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = &nash_swarm::eval::read_text(&wikitext()).unwrap()[..5000];
    for source in [stories(), common::tiny_gpt2()] {
        let model = nash_swarm::load(&source).unwrap();
        let plan = export::preset_plan(&model, Preset::parse("q4_k_m").unwrap(), false).unwrap();
        let out = dir.path().join(format!("{}.gguf", model.architecture.name()));
        export::export(&model, &plan, None, &out, &job()).unwrap();
        let written = nash_swarm::load(&out).unwrap();
        let tensors = export::encode_tensors(&model, &plan, None, &job()).unwrap();
        let scored = model.with_weights(export::encoded_weights(&model, tensors).unwrap());
        let names = |m: &nash_swarm::Model| m.weights.0.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&scored), names(&written));
        assert!(scored.makes_layers(), "the layers are decoded as they are used, not held in f32");
        for name in names(&written) {
            let (ours, theirs) = (scored.weights.get(&name).unwrap(), written.weights.get(&name).unwrap());
            assert_eq!(ours.dims(), theirs.dims(), "{name}");
            assert_eq!(values(&ours), values(&theirs), "{name}");
        }
        let ids = model.encode(text).unwrap();
        assert_same_nll(&scored, &written, &ids[..48]);
    }
}

#[test]
fn a_sentencepiece_tokenizer_is_written_so_that_text_splits_the_same() {
    // stories260k's tokenizer.json is Llama 2's kind: BPE over `▁`-joined text with byte fallback.
    let dir = tempfile::tempdir().unwrap();
    let model = nash_swarm::load(&stories()).unwrap();
    let out = dir.path().join("stories-f32.gguf");
    let plan = export::preset_plan(&model, Preset::parse("f32").unwrap(), false).unwrap();
    export::export(&model, &plan, None, &out, &job()).unwrap();
    let header = gguf::read_header(&out).unwrap();
    let meta: BTreeMap<_, _> = header.metadata.into_iter().collect();
    assert_eq!(format!("{:?}", meta["tokenizer.ggml.model"]), "String(\"llama\")");
    assert_eq!(format!("{:?}", meta["tokenizer.ggml.add_bos_token"]), "Bool(true)");
    assert_eq!(format!("{:?}", meta["tokenizer.ggml.bos_token_id"]), "U32(1)");
    assert_eq!(format!("{:?}", meta["tokenizer.ggml.eos_token_id"]), "U32(2)");
    let written = nash_swarm::load(&out).unwrap();
    // Text with digits, punctuation, newlines, runs of spaces and characters outside the vocabulary (bytes).
    let wiki = nash_swarm::eval::read_text(&wikitext()).unwrap();
    for text in [&wiki[..20_000], "  two  spaces\n\nand é, ü — 1234 ☃ end ", "Once upon a time"] {
        assert_eq!(written.encode(text).unwrap(), model.encode(text).unwrap(), "{:?}", &text[..text.len().min(80)]);
        let ids = model.encode(text).unwrap();
        assert_eq!(written.decode(&ids).unwrap(), model.decode(&ids).unwrap());
    }
}

#[test]
fn the_cli_writes_gguf_and_scores_the_file_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let source = byte_level_stories(dir.path());
    let out = dir.path().join("m.gguf");
    let text = wikitext();
    let args = [
        "quantize",
        "--model",
        source.to_str().unwrap(),
        "--preset",
        "q4_k_m",
        "--calib-text",
        text.to_str().unwrap(),
        "--eval-text",
        text.to_str().unwrap(),
        "--ctx",
        "64",
        "--max-windows",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let run = cli(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["format"], "gguf");
    assert_eq!(report["imatrix"], true);
    assert_eq!(report["file_bytes"].as_u64().unwrap(), std::fs::metadata(&out).unwrap().len());
    let bpw = report["tensor_bpw"].as_f64().unwrap();
    assert!(bpw > 4.0 && bpw < 9.0, "q4_k_m on 64-wide rows falls back to 32-blocks: {bpw}");
    // Scored from the file: the same as `eval` of it.
    let eval = cli(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--ctx",
        "64",
        "--max-windows",
        "2",
        "--json",
    ]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(eval["ppl"], report["ppl"]);
    // An earlier export of ours is replaced without --force.
    let again = cli(&args);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(leftovers(dir.path()).is_empty());
    // A float preset stores no blocks: calibration would change nothing, so none runs and none is claimed.
    let f16 = cli(&[
        "quantize",
        "--model",
        source.to_str().unwrap(),
        "--preset",
        "f16",
        "--calib-text",
        text.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(f16.status.success(), "{}", String::from_utf8_lossy(&f16.stderr));
    let f16: serde_json::Value = serde_json::from_slice(&f16.stdout).unwrap();
    assert_eq!(f16["imatrix"], false);
}

#[test]
fn what_cannot_be_written_as_gguf_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = stories_gguf(dir.path());
    let src = source.to_str().unwrap();
    let out = dir.path().join("m.gguf");
    let o = out.to_str().unwrap();
    let before = tree_hashes(dir.path());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--preset", "seed"], "not a GGUF preset"),
        (vec!["--config", src], "cannot be stored in ggml's block types"),
        (vec!["--target-bpw", "1.0"], "below the cheapest"),
        (vec!["--preset", "q4_k_m", "--importance", "magnitude"], "--importance"),
        (vec!["--preset", "q8_0", "--target-bpw", "6"], "cannot be used with"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["quantize", "--model", src, "--out", o];
        args.extend(extra.iter());
        let run = cli(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(expected), "{extra:?}: {stderr}");
    }
    // A packed export is a folder: a .gguf name with --format packed is a mistake, refused.
    let run = cli(&["quantize", "--model", src, "--preset", "uniform4", "--format", "packed", "--out", o]);
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("--format gguf"));
    // The output may not be the model itself, and a file that is not ours is not replaced without --force.
    let run = cli(&["quantize", "--model", src, "--preset", "q8_0", "--out", src]);
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("--out"));
    let foreign = dir.path().join("notes.gguf");
    std::fs::write(&foreign, b"my notes").unwrap();
    let before_foreign = tree_hashes(dir.path());
    let run = cli(&["quantize", "--model", src, "--preset", "q8_0", "--out", foreign.to_str().unwrap()]);
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("--force"));
    assert_eq!(tree_hashes(dir.path()), before_foreign);
    std::fs::remove_file(&foreign).unwrap();
    assert_eq!(tree_hashes(dir.path()), before);
    // What we cannot write yet is named: a Gemma 3 whose attention scale llama.cpp would not reproduce.
    let gemma = common::scratch_copy(&common::shared().join("fixtures/tiny-gemma3-random"));
    let config_path = gemma.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["query_pre_attn_scalar"] = 64.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let run = cli(&["quantize", "--model", gemma.path().to_str().unwrap(), "--preset", "q8_0", "--out", o]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("attention scale other than"), "{stderr}");
    assert!(!out.exists() && leftovers(dir.path()).is_empty());
}

#[test]
fn a_gguf_with_tensors_we_do_not_read_is_not_re_exported_without_them() {
    use nash_swarm::formats::gguf::write::{GgufTensor, write};
    let dir = tempfile::tempdir().unwrap();
    let source = stories_gguf(dir.path());
    let header = gguf::read_header(&source).unwrap();
    let bytes = std::fs::read(&source).unwrap();
    let tensors: Vec<GgufTensor> = header
        .tensors
        .iter()
        .map(|t| GgufTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            ty: t.ty,
            data: bytes[t.start..][..t.size].to_vec(),
        })
        .collect();
    // A tensor llama.cpp may read and we do not: loaded without it, but never re-exported without it.
    let extra: Vec<u8> = [1.0f32, 1.0, 4.0, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let unknown = GgufTensor { name: "token_types.weight".into(), shape: vec![4], ty: BlockType::F32, data: extra };
    let with_unknown = dir.path().join("with-unknown.gguf");
    let size = write(&with_unknown, &header.metadata, &[tensors.clone(), vec![unknown.clone()]].concat()).unwrap();
    assert_eq!(size % 32, 0, "every tensor, the last included, is padded to the alignment");
    let model = nash_swarm::load(&with_unknown).unwrap();
    let err = export::preset_plan(&model, Preset::parse("q8_0").unwrap(), false).unwrap_err().to_string();
    assert!(err.contains("token_types.weight") && err.contains("would be lost"), "{err}");
    // Llama 3.1's RoPE factors from llama.cpp's converter, without the scaling they came from: running the model
    // unscaled would be wrong, so it is refused at load.
    let rope = GgufTensor { name: "rope_freqs.weight".into(), ..unknown };
    let with_rope = dir.path().join("with-rope.gguf");
    write(&with_rope, &header.metadata, &[tensors, vec![rope]].concat()).unwrap();
    let err = nash_swarm::load(&with_rope).err().expect("refused").to_string();
    assert!(err.contains("with-rope.gguf") && err.contains("rope_freqs.weight"), "{err}");
}

#[test]
fn without_a_calibration_text_the_end_of_the_evaluation_text_calibrates() {
    let dir = tempfile::tempdir().unwrap();
    let source = byte_level_stories(dir.path());
    let text = wikitext();
    let export = |extra: &[&str], name: &str| -> serde_json::Value {
        let out = dir.path().join(name);
        let mut args = vec!["quantize", "--model", source.to_str().unwrap(), "--preset", "q4_k_m"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap(), "--json"]);
        let run = cli(&args);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        serde_json::from_slice(&run.stdout).unwrap()
    };
    let eval = ["--eval-text", text.to_str().unwrap(), "--ctx", "64", "--max-windows", "2"];
    let calibrated = export(&eval, "eval.gguf");
    assert_eq!(calibrated["imatrix"], true, "the end of --eval-text calibrates");
    assert!(calibrated["ppl"].as_f64().is_some_and(f64::is_finite), "{calibrated}");
    // With no text at all, the reference encoders.
    assert_eq!(export(&[], "plain.gguf")["imatrix"], false);
}
