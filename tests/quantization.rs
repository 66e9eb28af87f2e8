//! The quantization engine on real models: bits equal bytes, exports round-trip exactly, configurations
//! reproduce byte-identical weights, the Nash allocation meets its budget and beats uniform bits.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use nash_swarm::eval::{self, Kld, WindowSpec};
use nash_swarm::formats::packed;
use nash_swarm::quant::{GroupSize, QuantConfig, QuantizerKind, quantize_model};
use nash_swarm::{Job, load};

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nash-swarm")).args(args).output().unwrap()
}

fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn safetensors_data_bytes(path: &Path) -> (u64, Vec<(String, usize)>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let arrays = st.tensors().into_iter().map(|(n, v)| (n, v.data().len())).collect();
    (bytes.len() as u64 - 8 - header_len, arrays)
}

#[test]
fn the_seed_preset_has_a_3_bit_payload_and_its_bits_are_the_bytes_written() {
    let model = load(&stories()).unwrap();
    let q = quantize_model(&model, &QuantConfig::seed(), None, &Job::silent()).unwrap();
    assert!((q.bits.payload_bpw - 3.0).abs() < 0.01, "payload {}", q.bits.payload_bpw);
    assert!(q.bits.true_bpw > q.bits.payload_bpw, "the true cost includes scales and tier maps");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seed");
    let size = packed::export(&model, &q, &out).unwrap();
    assert_eq!(size as usize, packed::packed_size(&model, &q));
    let (data_bytes, arrays) = safetensors_data_bytes(&out.join("model.safetensors"));
    // Every array is rounded up to whole bytes: at most 7 bits of padding each.
    let counted = q.bits.total_bits();
    assert!(
        data_bytes * 8 >= counted && data_bytes * 8 - counted <= 7 * arrays.len() as u64,
        "{data_bytes} B vs {counted} bits"
    );
    // true bpw over all parameters is what the data section holds.
    assert!((data_bytes as f64 * 8.0 / q.bits.params as f64 - q.bits.true_bpw).abs() < 0.01);
}

#[test]
fn a_packed_export_reopens_to_the_same_weights_and_perplexity() {
    for fixture in [stories(), tiny_gpt2()] {
        let model = load(&fixture).unwrap();
        let q = quantize_model(&model, &QuantConfig::seed(), None, &Job::silent()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        packed::export(&model, &q, dir.path().join("q").as_path()).unwrap();
        let reopened = load(&dir.path().join("q")).unwrap();
        let in_memory = q.weights().unwrap();
        assert_eq!(reopened.weights.0.keys().collect::<Vec<_>>(), in_memory.0.keys().collect::<Vec<_>>());
        for (name, t) in &in_memory.0 {
            let a = nash_swarm::model::tensor_to_vec(&t.to_f32().unwrap()).unwrap();
            let b = nash_swarm::model::tensor_to_vec(&reopened.weights.get(name).unwrap()).unwrap();
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} differs after reopening");
        }
        let text = eval::read_text(&wikitext()).unwrap();
        let spec = WindowSpec { ctx: 64, max_windows: Some(4), bos: false };
        let windows = eval::windows(&model, &model.encode(&text).unwrap(), spec, &wikitext()).unwrap();
        let mem = eval::evaluate_ppl(&model.with_weights(in_memory), &windows, Kld::Skip, &Job::silent()).unwrap().0;
        let disk = eval::evaluate_ppl(&reopened, &windows, Kld::Skip, &Job::silent()).unwrap().0;
        assert_eq!(mem.nll, disk.nll);
        // Dequantized layer by layer while evaluating (the explorer's and `compare`'s way): the same numbers.
        let lazy = eval::evaluate_ppl(&q.into_model(&model).unwrap(), &windows, Kld::Skip, &Job::silent()).unwrap().0;
        assert_eq!(mem.nll.to_bits(), lazy.nll.to_bits());
        assert_eq!(mem.tokens_scored, lazy.tokens_scored);
    }
}

#[test]
fn the_saved_configuration_reproduces_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, third) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let s = stories();
    let model = s.to_str().unwrap();
    cli_json(&["quantize", "--model", model, "--preset", "seed", "--out", first.to_str().unwrap(), "--json"]);
    let saved = first.join("quantization.toml");
    cli_json(&[
        "quantize",
        "--model",
        model,
        "--config",
        saved.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
        "--json",
    ]);
    cli_json(&["quantize", "--model", model, "--preset", "seed", "--out", third.to_str().unwrap(), "--json"]);
    let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(bytes(&first) == bytes(&second), "configuration round trip changed the weights");
    assert!(bytes(&first) == bytes(&third), "the same configuration gave different bytes");
    let config = QuantConfig::read(&saved).unwrap();
    assert_eq!(config, QuantConfig::seed());
    assert_eq!(QuantConfig::from_toml(&config.to_toml()).unwrap(), config);
}

#[test]
fn nash_meets_its_budget_and_beats_uniform_bits_at_the_same_budget() {
    let model = load(&stories()).unwrap();
    let (game, base) = nash_swarm::alloc::standard_game(
        &model,
        &Default::default(),
        QuantizerKind::LeastSquares,
        None,
        &Job::silent(),
    )
    .unwrap();
    let uniform4 = game
        .menu
        .iter()
        .position(|p| {
            *p == nash_swarm::quant::TensorPlan::uniform(4, GroupSize::G(128), base.grid)
                .with_quantizer(QuantizerKind::LeastSquares)
        })
        .unwrap();
    let uniform_bits: u64 = game.players.iter().map(|p| p.outcomes[uniform4].bits).sum();
    let uniform_error: f64 = game.players.iter().map(|p| p.outcomes[uniform4].error).sum();
    let target = (uniform_bits + game.fixed_bits) as f64 / game.total_params as f64;

    let allocation = game.solve(target).unwrap();
    assert!(
        allocation.true_bpw <= target + 1e-9 && target - allocation.true_bpw <= 0.01,
        "{} vs {target}",
        allocation.true_bpw
    );
    assert!(allocation.total_error < uniform_error, "nash {} vs uniform {uniform_error}", allocation.total_error);
    assert!(allocation.price > 0.0);

    // The configuration it writes reproduces the allocation's bits when applied.
    let config = game.config_for(&base, &allocation);
    let q = quantize_model(&model, &config, None, &Job::silent()).unwrap();
    assert!((q.bits.true_bpw - allocation.true_bpw).abs() < 1e-9);

    let (cheapest, richest) = game.range();
    let below = game.solve(cheapest - 0.1).unwrap_err().to_string();
    assert!(below.contains("below the cheapest"), "{below}");
    let above = game.solve(richest + 0.1).unwrap_err().to_string();
    assert!(above.contains("above the richest"), "{above}");
}

#[test]
fn nash_allocations_cost_what_they_are_priced_at() {
    let model = load(&stories()).unwrap();
    let (game, _) = nash_swarm::alloc::standard_game(
        &model,
        &Default::default(),
        QuantizerKind::LeastSquares,
        None,
        &Job::silent(),
    )
    .unwrap();
    let (cheapest, richest) = game.range();
    let mut previous_error = f64::INFINITY;
    for step in 0..5 {
        let target = cheapest + (richest - cheapest) * (0.1 + 0.2 * step as f64);
        let a = game.solve(target).unwrap();
        assert!(a.true_bpw <= target + 1e-9 && target - a.true_bpw <= 0.01);
        assert!(a.total_error <= previous_error, "more bits never cost more error");
        previous_error = a.total_error;
    }
    let menu = nash_swarm::alloc::default_menu(Default::default(), QuantizerKind::LeastSquares);
    assert!(menu.len() >= 10 && menu.iter().all(|plan| plan.quantizer == QuantizerKind::LeastSquares));
}

#[test]
fn impossible_configurations_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = QuantConfig::seed().to_toml();
    let cases = [
        ("order.toml", base.replacen("share = 0.1", "share = 0.5", 1), "sum to"),
        ("bits.toml", base.replacen("bits = 4", "bits = 7", 1), "7 bits"),
        ("syntax.toml", "tiers = [".to_string(), "invalid quantization configuration"),
        ("alpha.toml", base.replacen("alpha = 0.5", "alpha = 1.5", 1), "alpha"),
    ];
    for (name, text, problem) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = cli(&[
            "quantize",
            "--model",
            stories().to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stderr.contains(name) && stderr.contains(problem), "{name}: {stderr}");
        assert!(!dir.path().join("o").exists(), "no output is left behind");
    }
    assert!(nash_swarm::quant::tiers::tiers_from_quantiles(&[0.7, 0.9], &[8, 4, 2]).is_err());
}

#[test]
fn impossible_bit_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (target, problem) in [("0.5", "below the cheapest"), ("30", "above the richest")] {
        let out = cli(&[
            "quantize",
            "--model",
            stories().to_str().unwrap(),
            "--target-bpw",
            target,
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(problem), "{stderr}");
    }
}

#[test]
fn quantize_cli_reports_bits_and_perplexity_and_exports_loadable_fp16() {
    let dir = tempfile::tempdir().unwrap();
    let (out, hf) = (dir.path().join("q"), dir.path().join("hf"));
    let report = cli_json(&[
        "quantize",
        "--model",
        stories().to_str().unwrap(),
        "--target-bpw",
        "6",
        "--out",
        out.to_str().unwrap(),
        "--export-hf",
        hf.to_str().unwrap(),
        "--eval-text",
        wikitext().to_str().unwrap(),
        "--ctx",
        "128",
        "--max-windows",
        "4",
        "--json",
    ]);
    for key in ["params", "payload_bpw", "true_bpw", "size_bytes", "quantize_seconds", "ppl", "nll", "tokens_scored"] {
        assert!(report.get(key).is_some(), "{key} missing: {report}");
    }
    assert!((report["true_bpw"].as_f64().unwrap() - 6.0).abs() <= 0.01);
    assert_eq!(report["size_bytes"].as_u64().unwrap(), std::fs::metadata(out.join("model.safetensors")).unwrap().len());
    // The fp16 export opens as a plain Hugging Face folder and gives nearly the same perplexity.
    let eval_json = |model: &Path| {
        let (model, text) = (model.to_str().unwrap(), wikitext());
        cli_json(&[
            "eval",
            "--model",
            model,
            "--text",
            text.to_str().unwrap(),
            "--ctx",
            "128",
            "--max-windows",
            "4",
            "--json",
        ])
    };
    let (packed_eval, hf_eval) = (eval_json(&out), eval_json(&hf));
    assert_eq!(packed_eval["ppl"], report["ppl"]);
    let (a, b) = (packed_eval["nll"].as_f64().unwrap(), hf_eval["nll"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-3, "{a} vs {b}");
}

/// GPTQ's E[x xᵀ] per matrix: its diagonal is E[x²] (summed apart, in f64), and matrices that read the same input
/// hold one copy of it (q, k and v; gate and up), while the others hold their own.
#[test]
fn second_moments_match_the_mean_squares_and_are_shared_by_matrices_reading_one_input() {
    let model = load(&stories()).unwrap();
    let tokens = model.encode(&eval::read_text(&wikitext()).unwrap()).unwrap();
    let (_, windows) = eval::split_calibration(&tokens, 4, 64, &wikitext()).unwrap();
    let stats = nash_swarm::importance::activation::calibrate(&model, &windows, true, &Job::silent()).unwrap();
    assert_eq!(stats.second_moment.len(), stats.mean_square.len());
    for (name, mean_square) in &stats.mean_square {
        let cols = mean_square.len();
        let moment = stats.second_moment(name, cols).unwrap_or_else(|| panic!("{name}: no {cols}x{cols} moment"));
        for (j, &m) in mean_square.iter().enumerate() {
            let diagonal = moment[j * cols + j];
            assert!((diagonal - m).abs() <= 1e-4 * m.abs().max(1e-6), "{name}[{j}]: {diagonal} vs {m}");
        }
    }
    let held = |leaf: &str| stats.second_moment[&format!("model.layers.1.{leaf}.weight")].values().as_ptr();
    assert_eq!(held("self_attn.q_proj"), held("self_attn.k_proj"));
    assert_eq!(held("self_attn.q_proj"), held("self_attn.v_proj"));
    assert_eq!(held("mlp.gate_proj"), held("mlp.up_proj"));
    assert_ne!(held("self_attn.q_proj"), held("self_attn.o_proj"));
    assert_ne!(held("self_attn.q_proj"), held("mlp.gate_proj"));
}

#[test]
fn activation_importance_uses_held_out_calibration() {
    let model = load(&stories()).unwrap();
    let text = eval::read_text(&wikitext()).unwrap();
    let tokens = model.encode(&text).unwrap();
    let (usable, windows) = eval::split_calibration(&tokens, 8, 64, &wikitext()).unwrap();
    assert_eq!(usable.len() + 8 * 64, tokens.len());
    let stats = nash_swarm::importance::activation::calibrate(&model, &windows, false, &Job::silent()).unwrap();
    let q_proj = &stats.mean_square["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(q_proj.len(), 64);
    assert!(q_proj.iter().all(|v| v.is_finite() && *v > 0.0));
    let config =
        QuantConfig { importance: nash_swarm::importance::ImportanceMethod::Activation, ..QuantConfig::seed() };
    assert!(
        quantize_model(&model, &config, None, &Job::silent()).is_err(),
        "activation without calibration is refused"
    );
    let with = quantize_model(&model, &config, Some(&stats), &Job::silent()).unwrap();
    let magnitude = quantize_model(
        &model,
        &QuantConfig { importance: nash_swarm::importance::ImportanceMethod::Magnitude, ..QuantConfig::seed() },
        None,
        &Job::silent(),
    )
    .unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert_ne!(with.tensors[name].tier_map, magnitude.tensors[name].tier_map);
}

#[test]
fn compare_reports_every_row_with_its_exact_method_name() {
    let report = cli_json(&[
        "compare",
        "--model",
        stories().to_str().unwrap(),
        "--text",
        wikitext().to_str().unwrap(),
        "--ctx",
        "128",
        "--max-windows",
        "4",
        "--seed-texts",
        "10",
        "--json",
    ]);
    let rows = report["rows"].as_array().unwrap();
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods[..10],
        [
            "baseline",
            "uniform-4bit-tensor",
            "uniform-4bit-g128",
            "uniform-3bit-g128",
            "uniform-4bit-g128-ls",
            "uniform-3bit-g128-ls",
            "uniform-4bit-g128-gptq",
            "uniform-3bit-g128-gptq",
            "seed-10/20/70-8/4/2",
            "seed-10/20/70-8/4/2-ls"
        ]
    );
    assert!(methods[10..13].iter().all(|m| m.starts_with("nash@")));
    assert!(methods[13..16].iter().all(|m| m.starts_with("nash-measured@")));
    assert_eq!(methods[16], "random-ablation");
    for row in rows {
        for key in [
            "payload_bpw",
            "true_bpw",
            "size_bytes",
            "ppl",
            "delta_ppl_pct",
            "seed_loss",
            "delta_seed_loss_pct",
            "kld_mean",
            "kld_p99",
            "top1_agreement",
            "quantize_seconds",
        ] {
            assert!(row[key].is_number(), "{key} of {}", row["method"]);
        }
    }
    // Least-squares grids cost no bits and lose less than min-max ones; GPTQ less than least squares at 3 bits.
    let f = |row: usize, key: &str| rows[row][key].as_f64().unwrap();
    assert!(f(7, "kld_mean") < f(5, "kld_mean"), "GPTQ against least squares at 3 bits");
    for (rtn, ls) in [(2, 4), (3, 5), (8, 9), (2, 6), (3, 7)] {
        assert!((f(rtn, "true_bpw") - f(ls, "true_bpw")).abs() < 1e-3);
        assert!(f(ls, "kld_mean") < f(rtn, "kld_mean"), "{} against {}", methods[ls], methods[rtn]);
    }
    // Nash rows sit at the uniform rows' true bpw; priced by measured sensitivity, they beat those rows, and the
    // least-squares uniform rows of the same size.
    for uniform in 1..4 {
        for nash in [uniform + 9, uniform + 12] {
            let (a, b) = (f(nash, "true_bpw"), f(uniform, "true_bpw"));
            assert!(a <= b + 1e-9 && b - a <= 0.01, "{a} vs {b}");
        }
        let measured = uniform + 12;
        let same_size = [uniform].into_iter().chain((uniform > 1).then_some(uniform + 2));
        for row in same_size {
            assert!(f(measured, "kld_mean") < f(row, "kld_mean"), "{} against {}", methods[measured], methods[row]);
        }
    }
    // Quantization costs something measurable and the ablation is worse than the baseline.
    assert!(rows[1..].iter().all(|r| r["kld_mean"].as_f64().unwrap() > 0.0));
    assert!(rows[16]["ppl"].as_f64().unwrap() > rows[0]["ppl"].as_f64().unwrap());
}

#[test]
fn live_estimates_track_the_exact_bits() {
    use nash_swarm::quant::estimate::{ImportanceIndex, estimate};
    use nash_swarm::quant::{Granularity, Scope, Tier};
    let model = load(&stories()).unwrap();
    let all: Vec<String> = model.weights.0.iter().filter(|(_, t)| t.rank() == 2).map(|(n, _)| n.clone()).collect();
    let scores = nash_swarm::importance::compute(&model, &all, &Default::default(), None, &Job::silent()).unwrap();
    let index = ImportanceIndex::build(&model, &scores);
    let global = QuantConfig {
        scope: Scope::Global,
        granularity: Granularity::Group(32),
        group_size: GroupSize::G(32),
        tiers: vec![Tier { share: 0.2, bits: 6 }, Tier { share: 0.8, bits: 3 }],
        ..QuantConfig::seed()
    };
    for config in
        [QuantConfig::seed(), QuantConfig::uniform(4, GroupSize::G(128)), QuantConfig::uniform4_per_tensor(), global]
    {
        let exact = quantize_model(&model, &config, None, &Job::silent()).unwrap();
        let guess = estimate(&model, &index, &config);
        assert!(
            (guess.payload_bpw - exact.bits.payload_bpw).abs() < 0.02,
            "{}: payload {} vs {}",
            config.summary(),
            guess.payload_bpw,
            exact.bits.payload_bpw
        );
        let relative = (guess.true_bpw - exact.bits.true_bpw).abs() / exact.bits.true_bpw;
        assert!(relative < 0.03, "{}: true {} vs {}", config.summary(), guess.true_bpw, exact.bits.true_bpw);
        let size = packed::packed_size(&model, &exact) as f64;
        assert!(
            (guess.size_bytes as f64 - size).abs() / size < 0.05,
            "{}: size {} vs {size}",
            config.summary(),
            guess.size_bytes
        );
    }
}

#[test]
fn a_comparison_reuses_a_known_reference_only_for_the_same_windows() {
    use nash_swarm::compare::{Bench, CompareSpec, KnownReference};
    let model = load(&stories()).unwrap();
    let text = eval::read_text(&wikitext()).unwrap();
    let tokens = model.encode(&text).unwrap();
    let windows = WindowSpec { ctx: 64, max_windows: Some(3), bos: true };
    let spec = CompareSpec { windows, seed_texts: 2, importance: Default::default(), gguf_presets: vec![] };
    let job = Job::silent();
    let evaluated = eval::windows(&model, &tokens, windows, &wikitext()).unwrap();
    let (report, logits) = eval::evaluate_ppl(&model, &evaluated, Kld::Record, &job).unwrap();
    let logits = std::sync::Arc::new(logits.unwrap());
    // A marker PPL shows which report the baseline row came from.
    let known = |windows: Vec<Vec<u32>>| KnownReference {
        windows,
        logits: logits.clone(),
        report: eval::PplReport { ppl: 12345.0, ..report.clone() },
    };

    let reused = Bench::new(&model, &tokens, &text, &wikitext(), &spec, Some(known(evaluated.clone())), &job).unwrap();
    assert_eq!(reused.base.ppl, 12345.0);

    let other_windows = evaluated[1..].to_vec();
    let fresh = Bench::new(&model, &tokens, &text, &wikitext(), &spec, Some(known(other_windows)), &job).unwrap();
    assert!((fresh.base.ppl - report.ppl).abs() < 1e-9 * report.ppl, "{} vs {}", fresh.base.ppl, report.ppl);
}

#[test]
fn a_cancelled_or_failed_streamed_quantization_leaves_nothing_behind() {
    let model = load(&stories()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    // Cancelled after a few tensors were written.
    let token = nash_swarm::CancelToken::default();
    let cancel = token.clone();
    let job = Job::new(token, move |p: &nash_swarm::Progress| {
        if p.stage == "quantize" && p.done >= 3 {
            cancel.cancel();
        }
    });
    let err = packed::quantize_to(&model, &QuantConfig::seed(), None, &job, &out).unwrap_err();
    assert!(err.to_string().contains("cancel"), "{err}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no staging folder or scratch file is left");
    // The same into an existing export of ours: it stays as it was.
    packed::quantize_to(&model, &QuantConfig::seed(), None, &Job::silent(), &out).unwrap();
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    let token = nash_swarm::CancelToken::default();
    token.cancel();
    let uniform = QuantConfig::uniform(4, GroupSize::G(32));
    assert!(packed::quantize_to(&model, &uniform, None, &Job::new(token, |_| {}), &out).is_err());
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
