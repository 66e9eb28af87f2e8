//! The bit budget: a Nash allocation keeps its priced game, so moving the target re-solves it at once (the
//! pricing is the expensive part and is done by Allocate); the predicted loss along the whole budget range is a
//! curve for the Pareto plot, computed once with the game (on Allocate's thread) and kept by every re-solve.

use std::collections::BTreeMap;
use std::sync::Arc;

use nash_swarm::alloc::sensitivity::Sensitivity;
use nash_swarm::alloc::{Allocation, Game};
use nash_swarm::quant::QuantConfig;

/// A solved Nash allocation and the game it came from.
pub struct Allocated {
    pub config: QuantConfig,
    /// Stored bits per weight of each tensor.
    pub bits: BTreeMap<String, f64>,
    pub target_bpw: f64,
    /// True bits per parameter of the whole model under this allocation.
    pub true_bpw: f64,
    /// The sum of the chosen strategies' prices: predicted ΔKLD (nats per token) when measured, else weighted
    /// weight error.
    pub total_price: f64,
    /// The measurement that priced it (when a text was open), and each tensor's predicted ΔKLD at its strategy.
    pub sensitivity: Option<Arc<Sensitivity>>,
    pub predicted_kld: BTreeMap<String, f64>,
    /// The targets the game can meet, in true bits per parameter.
    pub range: (f64, f64),
    /// Predicted ΔKLD against true bpw across `range` (measured prices only; empty otherwise).
    pub predicted_curve: Arc<Vec<[f64; 2]>>,
    game: Arc<Game>,
    base: QuantConfig,
}

impl Allocated {
    pub fn solve(
        game: Arc<Game>,
        base: QuantConfig,
        sensitivity: Option<Arc<Sensitivity>>,
        target_bpw: f64,
    ) -> nash_swarm::Result<Allocated> {
        let allocation = game.solve(target_bpw)?;
        let curve = match sensitivity {
            Some(_) => predicted_curve(&game),
            None => Vec::new(),
        };
        Ok(Self::from_allocation(game, base, sensitivity, Arc::new(curve), &allocation))
    }

    fn from_allocation(
        game: Arc<Game>,
        base: QuantConfig,
        sensitivity: Option<Arc<Sensitivity>>,
        predicted_curve: Arc<Vec<[f64; 2]>>,
        allocation: &Allocation,
    ) -> Allocated {
        let chosen = |p: &nash_swarm::alloc::Player| p.outcomes[allocation.choices[&p.name]];
        let bits = game.players.iter().map(|p| (p.name.clone(), chosen(p).bits as f64 / p.params as f64)).collect();
        // Measured, a strategy's price is its predicted ΔKLD.
        let predicted_kld = match sensitivity {
            Some(_) => game.players.iter().map(|p| (p.name.clone(), chosen(p).error)).collect(),
            None => BTreeMap::new(),
        };
        Allocated {
            config: game.config_for(&base, allocation),
            bits,
            target_bpw: allocation.target_bpw,
            true_bpw: allocation.true_bpw,
            total_price: allocation.total_error,
            sensitivity,
            predicted_kld,
            range: game.range(),
            predicted_curve,
            game,
            base,
        }
    }

    /// The same game solved for another target (microseconds: every strategy is already priced).
    pub fn resolved(&self, target_bpw: f64) -> nash_swarm::Result<Allocated> {
        let allocation = self.game.solve(target_bpw)?;
        let (game, base, sensitivity) = (self.game.clone(), self.base.clone(), self.sensitivity.clone());
        Ok(Self::from_allocation(game, base, sensitivity, self.predicted_curve.clone(), &allocation))
    }

    /// How the strategies were priced, for the results table.
    pub fn prices(&self) -> String {
        match &self.sensitivity {
            Some(s) => format!("measured ΔKLD prices (held-out Spearman {:.3})", s.spearman),
            None => "weight-error prices".into(),
        }
    }
}

/// The total price (predicted ΔKLD when measured) against true bpw at 49 targets across the game's range.
fn predicted_curve(game: &Game) -> Vec<[f64; 2]> {
    let (lo, hi) = game.range();
    let steps = 48;
    (0..=steps)
        .filter_map(|i| {
            let a = game.solve(lo + (hi - lo) * i as f64 / steps as f64).ok()?;
            Some([a.true_bpw, a.total_error])
        })
        .collect()
}
