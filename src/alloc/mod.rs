//! Nash allocation (METHOD.md section 5). Players are the quantizable tensors; each picks a strategy (a tensor
//! plan) from a menu. Tensor i's payoff is −(D_i + λ·B_i): D_i its importance-weighted error Σ s·(w − q(w))²,
//! B_i its stored bits (payload, block parameters, tier map). For a bit price λ every tensor plays its best
//! response; bisection finds the λ at which the best responses meet the budget. There the marginal error per
//! bit is equal across tensors and no tensor gains by deviating alone: a Nash equilibrium of the game.
//! The leftover budget below the target is then spent greedily on the best error-per-bit upgrades.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

pub mod cost;
pub mod gguf;
pub mod menu;
pub mod sensitivity;

pub use cost::{Cost, WeightedError};
pub use menu::default_menu;

use crate::error::{Error, Result};
use crate::importance::{self, CalibrationStats, ImportanceMethod};
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Model, tensor_to_vec};
use crate::quant::bits::TensorBits;
use crate::quant::config::QuantConfig;
use crate::quant::method::{self, InputStats, TierSource};
use crate::quant::plan::{Treatment, assign, treatments};
use crate::quant::spec::{GroupSize, QuantizerKind, TensorPlan};

/// What one strategy costs one player.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Priced {
    pub error: f64,
    pub bits: u64,
}

#[derive(Clone, Debug)]
pub struct Player {
    pub name: String,
    pub params: usize,
    /// One price per menu entry.
    pub outcomes: Vec<Priced>,
}

/// Everything the allocation needs, computed once: each player's error and bits under each strategy.
#[derive(Clone, Debug)]
pub struct Game {
    pub menu: Vec<TensorPlan>,
    pub players: Vec<Player>,
    /// Bits of everything that is not a player (kept matrices, fp16 tensors).
    pub fixed_bits: u64,
    pub total_params: usize,
}

/// Quantizes every player under every strategy of the menu (the expensive part; rayon across tensors). Each
/// tensor's importance (`base.importance`) is computed on the way, so the whole model's scores never sit in memory.
pub fn build_game(
    model: &Model,
    base: &QuantConfig,
    calibration: Option<&CalibrationStats>,
    menu: Vec<TensorPlan>,
    cost: &dyn Cost,
    job: &Job,
) -> Result<Game> {
    importance::check_inputs(&base.importance, calibration)?;
    let treatments = treatments(model, base);
    let names: Vec<&String> = treatments
        .iter()
        .filter(|(_, t)| matches!(t, Treatment::Quantize { follows_tiers: true, .. }))
        .map(|(n, _)| n)
        .collect();
    let done = std::sync::atomic::AtomicU64::new(0);
    let players = names
        .par_iter()
        .map(|name| {
            job.checkpoint()?;
            let tensor = model.weights.get(name)?.contiguous()?;
            let (rows, cols) = tensor.dims2()?;
            with_f32_slice(&tensor, |w| player(name, w, rows, cols, &base.importance, calibration, &menu, cost))?
        })
        .inspect(|_| {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            job.report("pricing strategies", n, names.len() as u64, None);
        })
        .collect::<Result<Vec<_>>>()?;
    let mut fixed_bits = 0u64;
    for (name, t) in &treatments {
        fixed_bits += match t {
            Treatment::Quantize { follows_tiers: true, .. } => 0,
            Treatment::Fp16 => 16 * model.weights.stored(name)?.elem_count() as u64,
            Treatment::Quantize { plan, .. } => {
                let (rows, cols) = model.weights.dims2(name)?;
                let inputs = InputStats::of(calibration, name, cols);
                let q = method::for_plan(plan).quantize(
                    &tensor_to_vec(&model.weights.get(name)?)?,
                    rows,
                    cols,
                    plan,
                    &TierSource::Single,
                    inputs,
                );
                TensorBits::of(&q).total()
            }
        };
    }
    Ok(Game { menu, players, fixed_bits, total_params: model.param_count() })
}

/// One tensor's error and bits under every strategy of the menu.
fn player(
    name: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    method: &ImportanceMethod,
    calibration: Option<&CalibrationStats>,
    menu: &[TensorPlan],
    cost: &dyn Cost,
) -> Result<Player> {
    let s = importance::tensor_scores(method, name, w, rows, calibration);
    let mut inputs = InputStats::of(calibration, name, cols);
    // GPTQ strategies share one update factor, made once here.
    let factor = (inputs.second_moment)
        .filter(|_| menu.iter().any(method::gptq::feeds_back_errors))
        .map(|h| method::gptq::update_factor(h, cols));
    if let Some(factor) = &factor {
        inputs = inputs.with_update_factor(factor.as_ref());
    }
    // Strategies in parallel too: a large tensor (the embedding, a fifth of SmolLM2) would otherwise keep one
    // thread busy alone at the end.
    let outcomes = menu
        .par_iter()
        .map(|plan| {
            let q = quantize_under(plan, w, rows, cols, &s, inputs)?;
            Ok(Priced { error: cost.error(name, w, &s, &q)?, bits: TensorBits::of(&q).total() })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Player { name: name.to_string(), params: rows * cols, outcomes })
}

/// One tensor quantized under one strategy, its tiers assigned by `scores`, with what calibration saw of its inputs.
fn quantize_under(
    plan: &TensorPlan,
    w: &[f32],
    rows: usize,
    cols: usize,
    scores: &[f32],
    inputs: InputStats,
) -> Result<crate::quant::stored::QuantizedTensor> {
    let tiers = assign(plan, rows, cols, Some(scores), None)?;
    Ok(method::for_plan(plan).quantize(w, rows, cols, plan, &tiers, inputs))
}

#[derive(Clone, Debug, Serialize)]
pub struct Allocation {
    /// The equilibrium bit price λ (error units per bit).
    pub price: f64,
    /// Menu index chosen by each player.
    pub choices: BTreeMap<String, usize>,
    pub true_bpw: f64,
    pub target_bpw: f64,
    pub total_error: f64,
}

impl Game {
    fn bpw(&self, player_bits: u64) -> f64 {
        (player_bits + self.fixed_bits) as f64 / self.total_params as f64
    }

    /// Each player's best response to price λ.
    fn best_responses(&self, price: f64) -> Vec<usize> {
        self.players
            .iter()
            .map(|p| {
                let cost = |o: &Priced| o.error + price * o.bits as f64;
                (0..p.outcomes.len()).min_by(|&a, &b| cost(&p.outcomes[a]).total_cmp(&cost(&p.outcomes[b]))).unwrap()
            })
            .collect()
    }

    fn bits_of(&self, choice: &[usize]) -> u64 {
        self.players.iter().zip(choice).map(|(p, &c)| p.outcomes[c].bits).sum()
    }

    /// The cheapest and richest reachable true bpw.
    pub fn range(&self) -> (f64, f64) {
        let min: u64 = self.players.iter().map(|p| p.outcomes.iter().map(|o| o.bits).min().unwrap()).sum();
        let max: u64 = self.players.iter().map(|p| p.outcomes.iter().map(|o| o.bits).max().unwrap()).sum();
        (self.bpw(min), self.bpw(max))
    }

    /// The equilibrium allocation for a target true bpw over all parameters.
    pub fn solve(&self, target_bpw: f64) -> Result<Allocation> {
        let (cheapest, richest) = self.range();
        if target_bpw < cheapest {
            return Err(Error::InvalidArgument(format!(
                "target {target_bpw:.3} bpw is below the cheapest strategy mix ({cheapest:.3} bpw)"
            )));
        }
        if target_bpw > richest {
            return Err(Error::InvalidArgument(format!(
                "target {target_bpw:.3} bpw is above the richest strategy mix ({richest:.3} bpw)"
            )));
        }
        let budget = ((target_bpw * self.total_params as f64).floor() as u64).saturating_sub(self.fixed_bits);
        // Bracket the price: at `hi` the best responses fit the budget, at `lo` they do not (or lo = 0 fits).
        let (mut lo, mut hi) = (0.0f64, 1e-12f64);
        if self.bits_of(&self.best_responses(0.0)) <= budget {
            hi = 0.0;
        } else {
            while self.bits_of(&self.best_responses(hi)) > budget {
                lo = hi;
                hi *= 4.0;
                if hi > 1e30 {
                    break;
                }
            }
            for _ in 0..200 {
                let mid = if lo == 0.0 { hi / 2.0 } else { (lo * hi).sqrt() };
                if self.bits_of(&self.best_responses(mid)) > budget {
                    lo = mid
                } else {
                    hi = mid
                }
                if hi - lo <= hi * 1e-12 {
                    break;
                }
            }
        }
        let mut choice = self.best_responses(hi);
        // The discrete game rarely lands on the budget exactly: spend what is left on the upgrades that buy the
        // most error reduction per bit.
        self.fill(&mut choice, budget);
        let bits = self.bits_of(&choice);
        let total_error = self.players.iter().zip(&choice).map(|(p, &c)| p.outcomes[c].error).sum();
        Ok(Allocation {
            price: hi,
            choices: self.players.iter().zip(&choice).map(|(p, &c)| (p.name.clone(), c)).collect(),
            true_bpw: self.bpw(bits),
            target_bpw,
            total_error,
        })
    }

    fn fill(&self, choice: &mut [usize], budget: u64) {
        loop {
            let spent = self.bits_of(choice);
            let mut best: Option<(f64, usize, usize)> = None;
            for (i, p) in self.players.iter().enumerate() {
                let current = p.outcomes[choice[i]];
                for (s, o) in p.outcomes.iter().enumerate() {
                    if o.bits <= current.bits || o.error >= current.error || spent - current.bits + o.bits > budget {
                        continue;
                    }
                    let gain = (current.error - o.error) / (o.bits - current.bits) as f64;
                    if best.is_none_or(|(g, _, _)| gain > g) {
                        best = Some((gain, i, s));
                    }
                }
            }
            match best {
                Some((_, i, s)) => choice[i] = s,
                None => return,
            }
        }
    }

    /// Player `player`'s tensor under its strategy `outcome`, dequantized: what the sensitivity measurement runs
    /// the model with. `base` and `calibration` are those the game was built with.
    pub fn strategy_weights(
        &self,
        model: &Model,
        base: &QuantConfig,
        calibration: Option<&CalibrationStats>,
        player: usize,
        outcome: usize,
    ) -> Result<Vec<f32>> {
        let name = &self.players[player].name;
        let tensor = model.weights.get(name)?.contiguous()?;
        let (rows, cols) = tensor.dims2()?;
        with_f32_slice(&tensor, |w| {
            let scores = importance::tensor_scores(&base.importance, name, w, rows, calibration);
            let inputs = InputStats::of(calibration, name, cols);
            let q = quantize_under(&self.menu[outcome], w, rows, cols, &scores, inputs)?;
            q.dequantize().map_err(Error::Inconsistent)
        })?
    }

    /// The configuration that reproduces an allocation: the base configuration with one plan per player.
    pub fn config_for(&self, base: &QuantConfig, allocation: &Allocation) -> QuantConfig {
        let overrides = allocation.choices.iter().map(|(name, &c)| (name.clone(), self.menu[c].clone())).collect();
        QuantConfig { overrides, ..base.clone() }
    }
}

/// The game the CLI, the GUI and compare play: every matrix (attention, MLP, the embeddings and the head) priced
/// by `importance` and weight error, menu of uniform and mixed plans (`default_menu`) quantized by `quantizer`.
/// Returns the game and the base configuration its allocations extend (`Game::config_for`).
pub fn standard_game(
    model: &Model,
    importance: &ImportanceMethod,
    quantizer: QuantizerKind,
    calibration: Option<&CalibrationStats>,
    job: &Job,
) -> Result<(Game, QuantConfig)> {
    let base = QuantConfig {
        importance: importance.clone(),
        quantize: crate::quant::config::Roles::ALL,
        quantizer,
        ..QuantConfig::uniform(4, GroupSize::G(128))
    };
    let game = build_game(model, &base, calibration, default_menu(base.grid, quantizer), &WeightedError, job)?;
    Ok((game, base))
}
