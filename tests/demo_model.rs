//! The real-size demo model, SmolLM2-135M-Instruct (GGUF Q4_1, dequantized). Needs `nash-swarm fetch-demo`.

mod common;

use common::*;
use nash_swarm::load;

#[test]
fn smollm2_knows_the_capital_of_france() {
    let model = load(&demo_model()).unwrap();
    assert_eq!(model.param_count(), 134_515_008);
    let continuation = model.generate_greedy("The capital of France is", 3).unwrap();
    assert!(continuation.trim_start().starts_with("Paris"), "continued with {continuation:?}");
}

#[test]
fn smollm2_forward_matches_an_independent_f64_forward_pass() {
    let model = load(&demo_model()).unwrap();
    let ids = model.encode("Hello world, 123 tokens").unwrap();
    assert_eq!(ids.len(), 8, "digits are split one by one: {ids:?}");
    let ours = model.forward(&ids).unwrap().to_vec2::<f32>().unwrap();
    let reference = reference::llama_logits(&model, &ids);
    for (row, ref_row) in ours.iter().zip(&reference) {
        let ref_row: Vec<f32> = ref_row.iter().map(|v| *v as f32).collect();
        let diff = max_abs_diff(row, &ref_row);
        assert!(diff < 2e-3, "max |logit - f64 reference| = {diff}");
    }
}

/// What llama-quantize (llama-cpp-python 0.3.36's llama.cpp, built with cmake) chose for SmolLM2 from the F32
/// requantization of the demo with an imatrix from the last 300 KB of WikiText-2's test split
/// (`scripts/gguf_vs_llama_cpp.py --calib`, read with the `gguf` package): tensor bytes and weights per type.
const LLAMA_QUANTIZE_PLANS: &[(&str, u64, &[(&str, usize)])] = &[
    ("q8_0", 143_025_408, &[("F32", 35_136), ("Q8_0", 134_479_872)]),
    ("q6_k", 136_597_248, &[("F32", 35_136), ("Q6_K", 26_542_080), ("Q8_0", 107_937_792)]),
    (
        "q5_k_m",
        110_317_824,
        &[("F32", 35_136), ("Q5_1", 78_077_952), ("Q5_K", 14_155_776), ("Q6_K", 12_386_304), ("Q8_0", 29_859_840)],
    ),
    (
        "q4_k_m",
        103_668_480,
        &[("F32", 35_136), ("Q4_K", 14_155_776), ("Q5_0", 78_077_952), ("Q6_K", 12_386_304), ("Q8_0", 29_859_840)],
    ),
    ("q4_0", 90_107_136, &[("F32", 35_136), ("Q4_0", 103_514_112), ("Q4_1", 2_654_208), ("Q8_0", 28_311_552)]),
    ("iq4_nl", 89_941_248, &[("F32", 35_136), ("IQ4_NL", 106_168_320), ("Q8_0", 28_311_552)]),
    (
        "q3_k_m",
        91_724_544,
        &[
            ("F32", 35_136),
            ("Q4_0", 66_355_200),
            ("Q4_K", 25_657_344),
            ("Q5_0", 13_049_856),
            ("Q5_1", 221_184),
            ("Q5_K", 884_736),
            ("Q8_0", 28_311_552),
        ],
    ),
];

#[test]
fn presets_pick_the_types_llama_quantize_picks_on_smollm2() {
    use nash_swarm::formats::gguf::export::preset_plan;
    use nash_swarm::quant::ggml::{BlockType, preset::Preset};
    let model = load(&demo_model()).unwrap();
    for (name, tensor_bytes, weights) in LLAMA_QUANTIZE_PLANS {
        let plan = preset_plan(&model, Preset::parse(name).unwrap(), true).unwrap();
        let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
        let mut bytes = 0;
        for (tensor, t) in &model.weights.0 {
            let ty = plan.types.get(tensor).copied().unwrap_or(BlockType::F32);
            *by_type.entry(ty.name()).or_default() += t.elem_count();
            bytes += ty.bytes_for(t.elem_count()).unwrap() as u64;
        }
        assert_eq!(by_type, weights.iter().copied().collect(), "{name}: weights per type");
        assert_eq!(bytes, *tensor_bytes, "{name}: tensor bytes");
    }
}

/// llama.cpp's perplexity of our q4_0 export (reference encoders: the tensors llama-quantize writes) over the first
/// 2 windows of 512 tokens of WikiText-2's test split, every token but each window's first (1,022), from
/// llama-cpp-python 0.3.36 with `logits_all` (the windows of `scripts/gguf_vs_llama_cpp.py`).
const LLAMA_CPP_PPL_Q4_0_TWO_WINDOWS: f64 = 32.6575;

#[test]
fn a_q4_0_export_scores_in_our_eval_within_one_percent_of_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q4_0.gguf");
    // No text at export: the reference encoders (an --eval-text would calibrate on its end).
    let run = cli(&[
        "quantize",
        "--model",
        demo_model().to_str().unwrap(),
        "--preset",
        "q4_0",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let export: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(export["imatrix"], false);
    let run = cli(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--text",
        wikitext().to_str().unwrap(),
        "--ctx",
        "512",
        "--max-windows",
        "2",
        "--json",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["tokens_scored"], 1022);
    let ppl = report["ppl"].as_f64().unwrap();
    let gap = ppl / LLAMA_CPP_PPL_Q4_0_TWO_WINDOWS - 1.0;
    println!("q4_0 export: our PPL {ppl:.4}, llama.cpp {LLAMA_CPP_PPL_Q4_0_TWO_WINDOWS}, gap {:+.2}%", 100.0 * gap);
    assert!(gap.abs() < 0.01, "our eval {ppl} vs llama.cpp {LLAMA_CPP_PPL_Q4_0_TWO_WINDOWS}");
    assert!((export["tensor_bpw"].as_f64().unwrap() - 5.349).abs() < 1e-3);
}

/// The model as the GGUF maps it (blocks decoded a layer at a time, the head a vocabulary block at a time, windows
/// in groups) gives the perplexity of the same weights held in f32, and both give that of full logits from a plain
/// forward pass scored row by row.
#[test]
fn mapped_weights_and_the_streamed_head_give_the_in_memory_perplexity() {
    use nash_swarm::eval::{self, Kld, WindowSpec};
    use nash_swarm::model::Weights;
    let model = load(&demo_model()).unwrap();
    assert!(model.makes_layers(), "the GGUF's weights stay in the mapped file");
    let dense: Weights = model.weights.iter().map(|(n, t)| (n.clone(), t.to_f32().unwrap())).collect();
    let in_memory = model.with_weights(dense);
    assert!(!in_memory.makes_layers());

    let text = &eval::read_text(&wikitext()).unwrap()[..60_000];
    let spec = WindowSpec { ctx: 96, max_windows: Some(5), bos: false };
    let windows = eval::windows(&model, &model.encode(text).unwrap(), spec, &wikitext()).unwrap();
    let job = nash_swarm::Job::silent();
    let (mapped, reference) = eval::evaluate_ppl(&model, &windows, Kld::Record, &job).unwrap();
    let (held, _) = eval::evaluate_ppl(&in_memory, &windows, Kld::Against(&reference.unwrap()), &job).unwrap();
    assert!((mapped.ppl - held.ppl).abs() <= 1e-4 * held.ppl, "mapped {} vs in memory {}", mapped.ppl, held.ppl);
    let kld = held.kld.unwrap();
    assert!(kld.mean < 1e-4 && kld.top1_agreement == 1.0, "same weights, same distributions: {kld:?}");

    let mut total = 0.0f64;
    for window in &windows {
        let logits = in_memory.forward(window).unwrap().to_vec2::<f32>().unwrap();
        for (row, &target) in logits.iter().zip(&window[1..]) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_z = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            total += log_z - row[target as usize] as f64;
        }
    }
    let plain = total / mapped.tokens_scored as f64;
    assert!((mapped.nll - plain).abs() <= 1e-5 * plain, "streamed head {} vs full logits {plain}", mapped.nll);
}

/// A quantization streamed into a packed folder (each tensor written as made, the embedding in pieces of rows)
/// is the file the in-memory result writes, and evaluating it from its mapped codes (the head and embedding
/// decoded by rows) gives the perplexity of its weights dequantized whole and held in f32.
#[test]
fn a_streamed_quantization_and_its_evaluation_from_the_file_match_the_in_memory_path() {
    use nash_swarm::eval::{self, Kld, WindowSpec};
    use nash_swarm::formats::packed;
    use nash_swarm::quant::{QuantConfig, quantize_model};
    let model = load(&demo_model()).unwrap();
    let job = nash_swarm::Job::silent();
    let dir = tempfile::tempdir().unwrap();
    let text = &eval::read_text(&wikitext()).unwrap()[..60_000];
    let spec = WindowSpec { ctx: 96, max_windows: Some(5), bos: false };
    let windows = eval::windows(&model, &model.encode(text).unwrap(), spec, &wikitext()).unwrap();
    // The 28M-weight embedding is cut into pieces of rows: on an 8-bit grid, then kept in f16.
    for keep_bits in [8, 16] {
        let config = QuantConfig { keep_bits, ..QuantConfig::preset("uniform4").unwrap() };
        let (streamed, in_memory) =
            (dir.path().join(format!("s{keep_bits}")), dir.path().join(format!("m{keep_bits}")));
        let written = packed::quantize_to(&model, &config, None, &job, &streamed).unwrap();
        let q = quantize_model(&model, &config, None, &job).unwrap();
        assert_eq!(written.bits.total_bits(), q.bits.total_bits());
        packed::export(&model, &q, &in_memory).unwrap();
        let bytes = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(bytes(&streamed) == bytes(&in_memory), "the streamed file differs from the in-memory one");

        let reopened = load(&streamed).unwrap();
        assert!(reopened.makes_layers(), "the codes stay in the mapped file");
        let held = model.with_weights(q.weights().unwrap());
        let from_file = eval::evaluate_ppl(&reopened, &windows, Kld::Skip, &job).unwrap().0;
        let whole = eval::evaluate_ppl(&held, &windows, Kld::Skip, &job).unwrap().0;
        let (a, b) = (from_file.ppl, whole.ppl);
        assert!((a - b).abs() <= 1e-4 * b, "keep {keep_bits} bits: file {a} vs held {b}");
    }
}

/// The demo's largest matrix (the 28M-weight embedding), quantized on three tiers per weight: whole with its own
/// thresholds, and in pieces of rows with global thresholds found by streaming passes over every matrix's scores;
/// either way what quantizing it whole from all the scores in memory gives, byte for byte. (Cutting with a
/// tensor's own thresholds is checked on the fixture, with pieces of a few rows, in `quant::plan`'s tests.)
#[test]
fn a_large_matrix_quantized_in_pieces_is_the_matrix_quantized_whole() {
    use nash_swarm::importance;
    use nash_swarm::model::tensor_to_vec;
    use nash_swarm::quant::method::{InputStats, for_plan};
    use nash_swarm::quant::plan::{assign, treatments};
    use nash_swarm::quant::tiers::thresholds;
    use nash_swarm::quant::{QuantConfig, Scope, Treatment, quantize_model};
    let model = load(&demo_model()).unwrap();
    let job = nash_swarm::Job::silent();
    let name =
        model.weights.matrix_names().into_iter().max_by_key(|n| model.weights.stored(n).unwrap().elem_count()).unwrap();
    let (rows, cols) = model.weights.dims2(&name).unwrap();
    assert!(rows * cols > 1 << 22, "{name} is cut into pieces");
    let w = tensor_to_vec(&model.weights.get(&name).unwrap()).unwrap();
    for scope in [Scope::PerTensor, Scope::Global] {
        let config = QuantConfig { scope, ..QuantConfig::seed() };
        let plan = config.tier_plan();
        let scores = importance::tensor_scores(&config.importance, &name, &w, rows, None);
        let global = (scope == Scope::Global).then(|| {
            let mut units = Vec::new();
            for (n, t) in treatments(&model, &config) {
                if let Treatment::Quantize { follows_tiers: true, .. } = t {
                    let v = tensor_to_vec(&model.weights.get(&n).unwrap()).unwrap();
                    let (r, c) = model.weights.dims2(&n).unwrap();
                    let s = importance::tensor_scores(&config.importance, &n, &v, r, None);
                    units.extend_from_slice(&config.granularity.unit_scores(&s, c));
                }
            }
            thresholds(&units, &config.tiers)
        });
        let tiers = assign(&plan, rows, cols, Some(&scores), global.as_deref()).unwrap();
        let whole = for_plan(&plan).quantize(&w, rows, cols, &plan, &tiers, InputStats::default());
        let q = quantize_model(&model, &config, None, &job).unwrap();
        let pieced = &q.tensors[&name];
        assert_eq!((&pieced.codes, &pieced.tier_map), (&whole.codes, &whole.tier_map), "{scope:?}");
        assert_eq!(pieced.params, whole.params, "{scope:?}");
    }
}
