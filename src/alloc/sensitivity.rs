//! Measured sensitivity: what quantizing one tensor does to the model's output, so that the Nash game prices a
//! strategy by its predicted change in KL divergence instead of by weight error.
//!
//! The unquantized model runs once over calibration windows and keeps the hidden states entering every layer
//! and its log-probabilities. Then each player is quantized alone at the strategy nearest 4 bits per weight and
//! the model is re-run from that tensor's layer on: the mean KL divergence from the unquantized output is
//! measured. Per tensor, ΔKLD = S · E is fitted, where E is the strategy's importance-weighted weight error (the
//! game's error) and S says what a unit of this tensor's error costs at the output. A held-out sample of
//! (tensor, strategy) pairs at other strategies, measured the same way but not fitted, gives the Spearman
//! correlation of predicted against measured ΔKLD.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Game, Player, Priced};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Linears, Model, layer_of};

/// The bits per weight near which each player is measured for its fit: the middle of the menus, in log-error.
const FIT_BPW: [f64; 1] = [4.0];
/// Bumped whenever what is measured changes, so old cache files are not reused.
const CACHE_VERSION: u32 = 3;

/// How much calibration text the measurement runs over, and how many held-out pairs check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitivitySpec {
    pub windows: usize,
    pub tokens: usize,
    pub holdout: usize,
}

impl Default for SensitivitySpec {
    fn default() -> Self {
        SensitivitySpec { windows: 4, tokens: 128, holdout: 40 }
    }
}

/// One (player, strategy) measured directly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    pub player: String,
    pub outcome: usize,
    pub bpw: f64,
    /// The game's weight error of this strategy.
    pub error: f64,
    /// Mean KL(unquantized ‖ this tensor quantized) per calibration token, nats.
    pub kld: f64,
}

/// ΔKLD = scale · error for one player.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Fit {
    pub scale: f64,
}

impl Fit {
    pub fn predict(&self, error: f64) -> f64 {
        if error > 0.0 { self.scale * error } else { 0.0 }
    }
}

/// The measurement and what it predicts.
#[derive(Clone, Debug, Serialize)]
pub struct Sensitivity {
    pub spec: SensitivitySpec,
    pub fits: BTreeMap<String, Fit>,
    pub fitted: Vec<Measured>,
    pub holdout: Vec<Measured>,
    /// Spearman correlation over the held-out pairs: predicted ΔKLD against measured.
    pub spearman: f64,
    /// The same for the weight error alone (the price before this measurement).
    pub spearman_weight_error: f64,
    pub seconds: f64,
    pub from_cache: bool,
}

impl Sensitivity {
    /// The game with every outcome priced by predicted ΔKLD instead of weight error.
    pub fn reprice(&self, game: &Game) -> Result<Game> {
        let players = game
            .players
            .iter()
            .map(|p| {
                let fit = self.fits.get(&p.name).ok_or_else(|| {
                    Error::InvalidArgument(format!("the sensitivity measurement has no player `{}`", p.name))
                })?;
                let outcomes =
                    p.outcomes.iter().map(|o| Priced { error: fit.predict(o.error), bits: o.bits }).collect();
                Ok(Player { outcomes, ..p.clone() })
            })
            .collect::<Result<_>>()?;
        Ok(Game { players, ..game.clone() })
    }
}

/// The dequantized weights of player `player` under its outcome `outcome`.
pub type Dequantize<'a> = dyn Fn(usize, usize) -> Result<Vec<f32>> + Sync + 'a;

/// Measures every player's sensitivity over `windows` of calibration tokens, or reads the measurement from
/// `cache_dir` (where it is then stored) when the same model, windows, spec and game were measured before.
pub fn measure(
    model: &Model,
    game: &Game,
    dequantize: &Dequantize,
    windows: &[Vec<u32>],
    spec: SensitivitySpec,
    cache_dir: Option<&Path>,
    job: &Job,
) -> Result<Sensitivity> {
    let start = Instant::now();
    // Windows longer than the model's context are cut to it (the forward pass starts at position 0 each time).
    let context = model.architecture.max_context();
    let windows: Vec<Vec<u32>> =
        windows.iter().filter(|w| !w.is_empty()).map(|w| w[..w.len().min(context)].to_vec()).collect();
    let windows = windows.as_slice();
    if windows.is_empty() {
        return Err(Error::InvalidArgument("the sensitivity measurement needs at least one calibration token".into()));
    }
    let vocab = model.architecture.vocab_size();
    if let Some(bad) = windows.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::InvalidArgument(format!(
            "calibration token id {bad} is not below the vocabulary size {vocab}"
        )));
    }
    let cache = match cache_dir {
        Some(dir) => Some(dir.join(format!("{}.json", cache_key(model, game, windows, spec)?))),
        None => None,
    };
    if let Some((fitted, holdout)) = cache.as_ref().and_then(|path| read_cache(path, game)) {
        return Ok(summarize(spec, fitted, holdout, start, true));
    }
    let (fit_pairs, holdout_pairs) = choose_pairs(game, spec.holdout);
    let reference = ReferenceRun::new(model, windows, job)?;
    let total = (fit_pairs.len() + holdout_pairs.len()) as u64;
    let mut done = 0u64;
    let mut run = |pairs: &[(usize, usize)]| -> Result<Vec<Measured>> {
        let mut measured = Vec::with_capacity(pairs.len());
        for batch in reference.batches(model, game, pairs)? {
            job.checkpoint()?;
            let trials = batch
                .iter()
                .map(|&(p, o)| Trial::new(model, &game.players[p].name, dequantize(p, o)?))
                .collect::<Result<Vec<_>>>()?;
            let klds = reference.klds(model, trials)?;
            for (&(p, o), kld) in batch.iter().zip(klds) {
                let player = &game.players[p];
                let outcome = player.outcomes[o];
                let bpw = outcome.bits as f64 / player.params as f64;
                measured.push(Measured { player: player.name.clone(), outcome: o, bpw, error: outcome.error, kld });
                done += 1;
                job.report("sensitivity", done, total, None);
            }
        }
        Ok(measured)
    };
    let fitted = run(&fit_pairs)?;
    let holdout = run(&holdout_pairs)?;
    if let Some(path) = &cache {
        write_cache(path, &fitted, &holdout);
    }
    Ok(summarize(spec, fitted, holdout, start, false))
}

fn summarize(
    spec: SensitivitySpec,
    fitted: Vec<Measured>,
    holdout: Vec<Measured>,
    start: Instant,
    from_cache: bool,
) -> Sensitivity {
    let fits = fit_players(&fitted);
    let measured: Vec<f64> = holdout.iter().map(|m| m.kld).collect();
    let predicted: Vec<f64> = holdout.iter().map(|m| fits[&m.player].predict(m.error)).collect();
    let errors: Vec<f64> = holdout.iter().map(|m| m.error).collect();
    Sensitivity {
        spec,
        spearman: spearman(&predicted, &measured),
        spearman_weight_error: spearman(&errors, &measured),
        fits,
        fitted,
        holdout,
        seconds: start.elapsed().as_secs_f64(),
        from_cache,
    }
}

/// Per player, the outcomes measured for its fit (those nearest `FIT_BPW`), and a held-out sample of other
/// outcomes spread over the players and the menu.
fn choose_pairs(game: &Game, holdout: usize) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    let bpw = |p: &Player, o: usize| p.outcomes[o].bits as f64 / p.params as f64;
    let mut fit = Vec::new();
    let mut rest: Vec<Vec<usize>> = Vec::new();
    for (i, p) in game.players.iter().enumerate() {
        // A strategy that stores this tensor exactly (error 0: a Q4_1 source re-encoded as Q4_1) says nothing
        // about the price of error; fit on those that have some, when there are any.
        let lossy: Vec<usize> = (0..p.outcomes.len()).filter(|&o| p.outcomes[o].error > 0.0).collect();
        let pool = if lossy.is_empty() { (0..p.outcomes.len()).collect() } else { lossy };
        let mut chosen: Vec<usize> = FIT_BPW
            .iter()
            .filter_map(|level| {
                pool.iter().copied().min_by(|&a, &b| (bpw(p, a) - level).abs().total_cmp(&(bpw(p, b) - level).abs()))
            })
            .collect();
        chosen.dedup();
        fit.extend(chosen.iter().map(|&o| (i, o)));
        // Held-out candidates: strategies that change the output measurably (not 16-bit floats).
        rest.push((0..p.outcomes.len()).filter(|o| !chosen.contains(o) && bpw(p, *o) < 9.0).collect());
    }
    let players = game.players.len();
    let candidates: Vec<usize> = (0..players).filter(|&i| !rest[i].is_empty()).collect();
    let held = holdout.min(candidates.len());
    let holdout_pairs = (0..held)
        .map(|k| {
            // Evenly spaced players; the strategy cycles through each player's remaining menu.
            let i = candidates[k * candidates.len() / held];
            (i, rest[i][k % rest[i].len()])
        })
        .collect();
    (fit, holdout_pairs)
}

/// ΔKLD = S·E through each player's points (the geometric mean of KLD / E): the second-order regime, where the
/// change in KL divergence is a quadratic form in the weight change. Measured on stories260k at two strategies
/// per tensor (near 3 and 5 bpw), the exponent of KLD in E had a median of 1.01 (quartiles 0.97 and 1.07), and a
/// fitted exponent predicted held-out pairs no better in rank than this one-point fit (Spearman 0.988 vs 0.990).
fn fit_players(fitted: &[Measured]) -> BTreeMap<String, Fit> {
    let mut logs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in fitted {
        logs.entry(&m.player).or_default().push(m.kld.max(1e-12).ln() - m.error.max(f64::MIN_POSITIVE).ln());
    }
    logs.into_iter()
        .map(|(name, l)| (name.to_string(), Fit { scale: (l.iter().sum::<f64>() / l.len() as f64).exp() }))
        .collect()
}

/// The unquantized model's pass over the calibration windows: the hidden states entering each layer and the
/// probabilities at every position. Measurements then go through the model together, a batch at a time and
/// layer by layer, so each layer is decoded once per batch and the model never exists in f32 whole.
struct ReferenceRun {
    windows: Vec<Vec<u32>>,
    /// `inputs[layer][window]`.
    inputs: Vec<Vec<Tensor>>,
    /// Per window, the reference probabilities `[T * vocab]` and (Σ p·log p, Σ p) of every position.
    probs: Vec<(Vec<f32>, Vec<(f64, f64)>)>,
}

/// What a batch of measurements may hold besides the model: replaced tensors in f32 and hidden states.
const BATCH_BYTES: usize = 256 << 20;

/// One measurement going through the model: the model with one tensor replaced, the layer where it starts
/// differing from the reference, and its hidden states (per window) once it has started.
struct Trial {
    model: Model,
    name: String,
    first: usize,
    xs: Vec<Tensor>,
}

impl Trial {
    fn new(base: &Model, name: &str, weights: Vec<f32>) -> Result<Trial> {
        let shape = base.weights.dims(name)?.to_vec();
        let mut replaced = base.weights.clone();
        replaced.insert(name, Tensor::from_vec(weights, shape, &candle_core::Device::Cpu)?);
        let layers = base.architecture.num_layers();
        let first = layer_of(name).filter(|&l| l < layers).unwrap_or(0);
        Ok(Trial { model: base.with_weights(replaced), name: name.to_string(), first, xs: Vec::new() })
    }
}

impl ReferenceRun {
    fn new(model: &Model, windows: &[Vec<u32>], job: &Job) -> Result<Self> {
        job.report("sensitivity: reference pass", 0, 1, None);
        let linears = Linears::of(model);
        let arch = &model.architecture;
        let mut xs = windows.iter().map(|ids| arch.embed(&linears, ids)).collect::<Result<Vec<_>>>()?;
        let mut inputs = Vec::with_capacity(arch.num_layers());
        for i in 0..arch.num_layers() {
            inputs.push(xs.clone());
            xs = xs.iter().map(|x| arch.layer(&linears, i, x)).collect::<Result<_>>()?;
        }
        model.made.clear();
        let hidden = xs.iter().map(|x| arch.final_norm(&linears, x)).collect::<Result<Vec<_>>>()?;
        let vocab = arch.vocab_size();
        let mut logits: Vec<Vec<f32>> =
            hidden.iter().map(|h| Ok(vec![0f32; h.dim(0)? * vocab])).collect::<Result<_>>()?;
        crate::eval::perplexity::for_each_head_block(model, |first, block| {
            for (h, out) in hidden.iter().zip(&mut logits) {
                let part = model.logits(h, block)?;
                let cols = part.dim(1)?;
                with_f32_slice(&part, |part| {
                    for (row, got) in out.chunks_exact_mut(vocab).zip(part.chunks_exact(cols)) {
                        row[first..first + cols].copy_from_slice(got);
                    }
                })?;
            }
            Ok(())
        })?;
        let probs = logits
            .into_iter()
            .map(|mut l| {
                let moments = l
                    .par_chunks_exact_mut(vocab)
                    .map(|row| {
                        let log_p = crate::eval::log_softmax(row);
                        let mut moments = (0.0, 0.0);
                        for (out, log_p) in row.iter_mut().zip(&log_p) {
                            *out = log_p.exp();
                            moments.0 += *out as f64 * *log_p as f64;
                            moments.1 += *out as f64;
                        }
                        moments
                    })
                    .collect();
                (l, moments)
            })
            .collect();
        Ok(ReferenceRun { windows: windows.to_vec(), inputs, probs })
    }

    /// `pairs` cut into batches whose replaced tensors and hidden states fit `BATCH_BYTES` (at least one each).
    fn batches<'p>(
        &self,
        model: &Model,
        game: &Game,
        pairs: &'p [(usize, usize)],
    ) -> Result<Vec<&'p [(usize, usize)]>> {
        let hidden: usize =
            self.inputs.first().map_or(Ok(0), |xs| xs.iter().map(|x| Ok(x.elem_count())).sum::<Result<usize>>())?;
        let mut out = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, &(p, _)) in pairs.iter().enumerate() {
            let size = 4 * (model.weights.stored(&game.players[p].name)?.elem_count() + hidden);
            if i > start && bytes + size > BATCH_BYTES {
                out.push(&pairs[start..i]);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        if start < pairs.len() {
            out.push(&pairs[start..]);
        }
        Ok(out)
    }

    /// Mean KL(reference ‖ trial) per position of every trial. Layer by layer: trials starting at a layer run it
    /// with their replaced tensor (from the reference's input, or from their own embedding for tensors outside
    /// the layers), trials already started run it with the shared model, whose layer is decoded once for all.
    fn klds(&self, base: &Model, mut trials: Vec<Trial>) -> Result<Vec<f64>> {
        let arch = &base.architecture;
        for i in 0..arch.num_layers() {
            let in_layers = |t: &Trial| layer_of(&t.name).is_some_and(|l| l == i);
            trials.par_iter_mut().filter(|t| t.first == i).try_for_each(|t| -> Result<()> {
                let linears = Linears::of(&t.model);
                t.xs = (0..self.windows.len())
                    .map(|w| {
                        let x = if in_layers(t) {
                            self.inputs[i][w].clone()
                        } else {
                            arch.embed(&linears, &self.windows[w])?
                        };
                        arch.layer(&linears, i, &x)
                    })
                    .collect::<Result<_>>()?;
                t.model.made.clear();
                Ok(())
            })?;
            let started: Vec<&mut Tensor> =
                trials.iter_mut().filter(|t| t.first < i).flat_map(|t| t.xs.iter_mut()).collect();
            if let Some(name) = base.weights.names().find(|n| layer_of(n) == Some(i)) {
                base.weight(name)?; // the layer decoded once, before the threads ask for it
            }
            started.into_par_iter().try_for_each(|x| -> Result<()> {
                *x = arch.layer(&Linears::of(base), i, x)?;
                Ok(())
            })?;
        }
        base.made.clear();
        self.score(base, &trials)
    }

    /// The trials' KL divergences from their last hidden states, the head applied a block of rows at a time.
    fn score(&self, base: &Model, trials: &[Trial]) -> Result<Vec<f64>> {
        let arch = &base.architecture;
        let vocab = arch.vocab_size();
        let hidden: Vec<Vec<Tensor>> = trials
            .par_iter()
            .map(|t| t.xs.iter().map(|x| arch.final_norm(&Linears::of(&t.model), x)).collect::<Result<Vec<_>>>())
            .collect::<Result<_>>()?;
        // Per trial, window and position: log Σ exp(logit) and Σ p·logit so far.
        let mut sums: Vec<Vec<Vec<(f64, f64)>>> = hidden
            .iter()
            .map(|hs| hs.iter().map(|h| Ok(vec![(f64::NEG_INFINITY, 0.0); h.dim(0)?])).collect::<Result<_>>())
            .collect::<Result<_>>()?;
        let head = arch.head_name();
        let own_heads: Vec<Option<&Model>> = trials.iter().map(|t| (t.name == head).then_some(&t.model)).collect();
        for_each_head_block(base, &own_heads, |first, shared, own| {
            for (t, (hs, sums)) in hidden.iter().zip(&mut sums).enumerate() {
                let block = own[t].as_ref().unwrap_or(shared);
                for (w, (h, sums)) in hs.iter().zip(sums.iter_mut()).enumerate() {
                    let logits = trials[t].model.logits(h, block)?;
                    let cols = logits.dim(1)?;
                    let p = &self.probs[w].0;
                    with_f32_slice(&logits, |l| {
                        sums.par_iter_mut().zip(l.par_chunks_exact(cols)).enumerate().for_each(|(pos, (s, row))| {
                            s.0 = crate::eval::add_log_sum_exp(s.0, row);
                            let p = &p[pos * vocab + first..][..cols];
                            s.1 += p.iter().zip(row).map(|(&p, &l)| p as f64 * l as f64).sum::<f64>();
                        })
                    })?;
                }
            }
            Ok(())
        })?;
        Ok(sums
            .iter()
            .map(|windows| {
                let (mut total, mut count) = (0.0, 0usize);
                for (w, positions) in windows.iter().enumerate() {
                    for (&(log_z, p_logit), &(neg_entropy, mass)) in positions.iter().zip(&self.probs[w].1) {
                        // KL(p ‖ q) = Σ p·log p − Σ p·logit_q + Σ p · log Z_q; in f64, as the terms nearly cancel.
                        total += (neg_entropy - p_logit + mass * log_z).max(0.0);
                    }
                    count += positions.len();
                }
                total / count.max(1) as f64
            })
            .collect())
    }
}

/// Calls `each(first row, shared rows, own rows)` for every block of rows of the head (eval's blocks): the shared
/// model's, and each of `own`'s (models whose head was replaced) for those that are `Some`.
fn for_each_head_block(
    base: &Model,
    own: &[Option<&Model>],
    mut each: impl FnMut(usize, &Tensor, &[Option<Tensor>]) -> Result<()>,
) -> Result<()> {
    let head = base.architecture.head_name();
    crate::eval::perplexity::for_each_head_block(base, |first, shared| {
        let rows = first..first + shared.dim(0)?;
        let own_rows =
            own.iter().map(|m| m.map(|m| m.weight_rows(head, rows.clone())).transpose()).collect::<Result<Vec<_>>>()?;
        each(first, shared, &own_rows)
    })
}

/// Where this measurement is cached: keyed by the model's weights, the calibration tokens, the spec and the
/// game's menu as priced (errors and bits of every outcome: the encoders and importance they came from).
fn cache_key(model: &Model, game: &Game, windows: &[Vec<u32>], spec: SensitivitySpec) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(CACHE_VERSION.to_le_bytes());
    for (name, tensor) in &model.weights.0 {
        hasher.update(name.as_bytes());
        hasher.update(format!("{:?}", tensor.dims()).as_bytes());
        with_f32_slice(&tensor.to_f32()?.contiguous()?, |v| {
            v.chunks(1 << 16).for_each(|c| hasher.update(c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
        })?;
    }
    for w in windows {
        hasher.update(w.iter().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>());
        hasher.update(b"|");
    }
    hasher.update(serde_json::to_vec(&spec).unwrap_or_default());
    for p in &game.players {
        hasher.update(p.name.as_bytes());
        for o in &p.outcomes {
            hasher.update(o.bits.to_le_bytes());
            hasher.update(o.error.to_le_bytes());
        }
    }
    Ok(hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect())
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    fitted: Vec<Measured>,
    holdout: Vec<Measured>,
}

/// A cached measurement, when it is readable and covers every player of `game`.
fn read_cache(path: &Path, game: &Game) -> Option<(Vec<Measured>, Vec<Measured>)> {
    let file: CacheFile = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let covered: std::collections::BTreeSet<&str> = file.fitted.iter().map(|m| m.player.as_str()).collect();
    game.players.iter().all(|p| covered.contains(p.name.as_str())).then_some((file.fitted, file.holdout))
}

/// Best effort: a cache that cannot be written only costs the next run the measurement again.
fn write_cache(path: &Path, fitted: &[Measured], holdout: &[Measured]) {
    let file = CacheFile { fitted: fitted.to_vec(), holdout: holdout.to_vec() };
    let Ok(bytes) = serde_json::to_vec(&file) else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::output::write_file_with(path, |mut out| std::io::Write::write_all(&mut out, &bytes));
}

/// Spearman's rank correlation (ties take their mean rank); NaN for fewer than two pairs.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    cov / (var(&ra) * var(&rb)).sqrt()
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end - 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = rank);
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_is_one_for_any_increasing_map_and_minus_one_reversed() {
        let a = [0.1, 3.0, 2.0, 50.0, 7.0];
        let b: Vec<f64> = a.iter().map(|x: &f64| x.powi(3) + 1.0).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c: Vec<f64> = a.iter().map(|x| -x).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
        // Ties share their mean rank: [1, 1, 2] against [1, 2, 3] is sqrt(3)/2.
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 3f64.sqrt() / 2.0).abs() < 1e-12);
    }

    #[test]
    fn pairs_fit_near_4_bpw_on_a_lossy_strategy_and_hold_out_others() {
        let priced = |bits: u64, error: f64| Priced { error, bits };
        let player = |name: &str, outcomes: Vec<Priced>| Player { name: name.into(), params: 100, outcomes };
        let game = Game {
            menu: Vec::new(),
            players: vec![
                player("a", vec![priced(300, 9.0), priced(400, 4.0), priced(800, 0.1), priced(1600, 1e-6)]),
                // Its 4-bpw strategy is exact: the fit takes the lossy one nearest instead.
                player("b", vec![priced(300, 9.0), priced(400, 0.0), priced(800, 0.1)]),
            ],
            fixed_bits: 0,
            total_params: 200,
        };
        let (fit, holdout) = choose_pairs(&game, 10);
        assert_eq!(fit, vec![(0, 1), (1, 0)]);
        // Held out: other strategies below 9 bpw, never a fitted one.
        assert!(holdout.iter().all(|pair| !fit.contains(pair) && game.players[pair.0].outcomes[pair.1].bits < 900));
        assert_eq!(holdout.len(), 2);
    }

    #[test]
    fn a_fit_predicts_its_points_in_proportion_to_the_error() {
        let point =
            |player: &str, error: f64, kld: f64| Measured { player: player.into(), outcome: 0, bpw: 4.0, error, kld };
        let fits = fit_players(&[point("a", 4.0, 8.0), point("b", 2.0, 1.0), point("b", 1.0, 0.25)]);
        assert!((fits["a"].predict(4.0) - 8.0).abs() < 1e-12 && (fits["a"].predict(1.0) - 2.0).abs() < 1e-12);
        // Two points: the geometric mean of their ratios (0.5 and 0.25).
        assert!((fits["b"].scale - 0.125f64.sqrt()).abs() < 1e-12);
        assert_eq!(fits["a"].predict(0.0), 0.0);
    }
}
