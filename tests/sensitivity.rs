//! Measured sensitivity (alloc::sensitivity): the fit predicts held-out measurements, the measurement is cached
//! by what it depends on, and the game it prices beats uniform bits where weight-error prices do not.

mod common;

use common::{stories, wikitext};
use nash_swarm::alloc::sensitivity::{self, SensitivitySpec};
use nash_swarm::alloc::standard_game;
use nash_swarm::quant::QuantizerKind;
use nash_swarm::{Job, load};

#[test]
fn measured_prices_predict_held_out_pairs_and_are_cached() {
    let model = load(&stories()).unwrap();
    let (game, base) =
        standard_game(&model, &Default::default(), QuantizerKind::LeastSquares, None, &Job::silent()).unwrap();
    let text = std::fs::read_to_string(wikitext()).unwrap();
    // Calibration from the end of the text, as compare takes it.
    let tokens = model.encode(&text[text.len() - 20_000..]).unwrap();
    let windows: Vec<Vec<u32>> = tokens.chunks_exact(128).take(4).map(<[u32]>::to_vec).collect();
    let spec = SensitivitySpec::default();
    let cache = tempfile::tempdir().unwrap();
    let weights = |p: usize, o: usize| game.strategy_weights(&model, &base, None, p, o);
    let measure = || sensitivity::measure(&model, &game, &weights, &windows, spec, Some(cache.path()), &Job::silent());

    let first = measure().unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.fits.len(), game.players.len(), "every player, the embedding included, is measured");
    assert!(first.fits.contains_key("model.embed_tokens.weight"));
    assert_eq!(first.holdout.len(), spec.holdout.min(game.players.len()));
    assert!(first.fitted.iter().chain(&first.holdout).all(|m| m.kld.is_finite() && m.kld >= 0.0));
    // Held-out pairs were not fitted, and the fit ranks them as measured.
    let fitted: Vec<(&str, usize)> = first.fitted.iter().map(|m| (m.player.as_str(), m.outcome)).collect();
    assert!(first.holdout.iter().all(|m| !fitted.contains(&(m.player.as_str(), m.outcome))));
    assert!(first.spearman >= 0.8, "held-out Spearman {}", first.spearman);

    let again = measure().unwrap();
    assert!(again.from_cache);
    assert_eq!(again.spearman, first.spearman);
    // Other calibration tokens are another measurement.
    let other: Vec<Vec<u32>> = tokens.chunks_exact(128).skip(4).take(4).map(<[u32]>::to_vec).collect();
    let moved = sensitivity::measure(&model, &game, &weights, &other, spec, Some(cache.path()), &Job::silent());
    assert!(!moved.unwrap().from_cache);

    // Repriced, the game keeps its bits and orders each player's strategies by predicted ΔKLD.
    let priced = first.reprice(&game).unwrap();
    for (a, b) in game.players.iter().zip(&priced.players) {
        assert_eq!(
            a.outcomes.iter().map(|o| o.bits).collect::<Vec<_>>(),
            b.outcomes.iter().map(|o| o.bits).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_measurement_stops_when_cancelled() {
    let model = load(&stories()).unwrap();
    let (game, base) =
        standard_game(&model, &Default::default(), QuantizerKind::LeastSquares, None, &Job::silent()).unwrap();
    let windows = vec![(0..64u32).collect::<Vec<_>>()];
    let job = Job::silent();
    job.cancel_token().cancel();
    let weights = |p: usize, o: usize| game.strategy_weights(&model, &base, None, p, o);
    let result = sensitivity::measure(&model, &game, &weights, &windows, SensitivitySpec::default(), None, &job);
    assert!(matches!(result, Err(nash_swarm::Error::Cancelled)));
}

#[test]
fn a_measurement_without_tokens_or_with_foreign_ids_is_refused() {
    let model = load(&stories()).unwrap();
    let (game, base) =
        standard_game(&model, &Default::default(), QuantizerKind::LeastSquares, None, &Job::silent()).unwrap();
    let weights = |p: usize, o: usize| game.strategy_weights(&model, &base, None, p, o);
    let spec = SensitivitySpec::default();
    let measure = |windows: &[Vec<u32>]| {
        sensitivity::measure(&model, &game, &weights, windows, spec, None, &Job::silent()).unwrap_err().to_string()
    };
    assert!(measure(&[]).contains("at least one calibration token"));
    assert!(measure(&[vec![]]).contains("at least one calibration token"));
    assert!(measure(&[vec![1, 2, 1_000_000]]).contains("1000000"));
}

/// The measurement (batched, layer by layer, the head by blocks) gives each pair the KL divergence a plain full
/// forward pass of the model with that one tensor replaced gives.
#[test]
fn each_measured_kld_is_that_of_a_full_forward_pass_with_the_tensor_replaced() {
    let model = load(&stories()).unwrap();
    let (game, base) =
        standard_game(&model, &Default::default(), QuantizerKind::LeastSquares, None, &Job::silent()).unwrap();
    let text = std::fs::read_to_string(wikitext()).unwrap();
    let tokens = model.encode(&text[text.len() - 20_000..]).unwrap();
    let windows: Vec<Vec<u32>> = tokens.chunks_exact(64).take(3).map(<[u32]>::to_vec).collect();
    let weights = |p: usize, o: usize| game.strategy_weights(&model, &base, None, p, o);
    let spec = SensitivitySpec::default();
    let measured = sensitivity::measure(&model, &game, &weights, &windows, spec, None, &Job::silent()).unwrap();
    let log_softmax = |row: &[f32]| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_z = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        row.iter().map(|&v| v as f64 - log_z).collect::<Vec<f64>>()
    };
    let reference: Vec<Vec<Vec<f32>>> = windows.iter().map(|w| model.forward(w).unwrap().to_vec2().unwrap()).collect();
    let names =
        ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.4.mlp.down_proj.weight"];
    for name in names {
        let m = measured.fitted.iter().find(|m| m.player == name).unwrap_or_else(|| panic!("{name} measured"));
        let p = game.players.iter().position(|p| p.name == name).unwrap();
        let mut replaced = model.weights.clone();
        let shape = model.weights.dims(name).unwrap().to_vec();
        replaced.insert(
            name,
            candle_core::Tensor::from_vec(weights(p, m.outcome).unwrap(), shape, &candle_core::Device::Cpu).unwrap(),
        );
        let trial = model.with_weights(replaced);
        let (mut total, mut count) = (0.0, 0);
        for (w, reference) in windows.iter().zip(&reference) {
            let logits: Vec<Vec<f32>> = trial.forward(w).unwrap().to_vec2().unwrap();
            for (q, p) in logits.iter().zip(reference) {
                let (log_q, log_p) = (log_softmax(q), log_softmax(p));
                total += log_p.iter().zip(&log_q).map(|(lp, lq)| lp.exp() * (lp - lq)).sum::<f64>();
                count += 1;
            }
        }
        let plain = total / count as f64;
        assert!((m.kld - plain).abs() <= 1e-3 * plain + 1e-7, "{name}: measured {} vs plain {plain}", m.kld);
    }
}
