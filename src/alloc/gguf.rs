//! The Nash allocation over ggml's block types: every matrix (the embedding and the head included) is a player
//! whose strategies are the block types that fit its rows; each is priced by its importance-weighted error
//! Σ E[x²]·(w − q)² after encoding (unit importance without calibration) and by its bytes. The equilibrium is
//! then written as a GGUF plan.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{Allocation, Game, Player, Priced};
use crate::error::{Error, Result};
use crate::formats::gguf::export::GgufPlan;
use crate::importance::CalibrationStats;
use crate::job::Job;
use crate::model::Model;
use crate::model::tensor_io::with_f32_slice;
use crate::quant::ggml::{self, BlockType, preset};

/// The strategies a matrix may take, fewest bits first (F16 tops the menu so any target up to 16 bpw is
/// reachable).
const MENU: [BlockType; 12] = [
    BlockType::Q2K,
    BlockType::Q3K,
    BlockType::Iq4Nl,
    BlockType::Q4_0,
    BlockType::Q4K,
    BlockType::Q4_1,
    BlockType::Q5_0,
    BlockType::Q5K,
    BlockType::Q5_1,
    BlockType::Q6K,
    BlockType::Q8_0,
    BlockType::F16,
];

/// The game and, per player, the block type behind each of its outcomes.
pub struct GgufGame {
    pub game: Game,
    pub types: Vec<Vec<BlockType>>,
}

/// Encodes every matrix in every type that fits it (tensors in parallel; the expensive part).
pub fn build(model: &Model, calibration: Option<&CalibrationStats>, job: &Job) -> Result<GgufGame> {
    crate::formats::gguf::export::check_writable(model)?;
    let matrices: Vec<&String> = model.weights.0.iter().filter(|(_, t)| t.rank() == 2).map(|(n, _)| n).collect();
    let done = std::sync::atomic::AtomicU64::new(0);
    let players = matrices
        .par_iter()
        .map(|name| {
            job.checkpoint()?;
            let tensor = model.weights.get(name)?.contiguous()?;
            let (rows, cols) = tensor.dims2()?;
            let importance = calibration.and_then(|c| c.column_weights(name, cols));
            let priced = with_f32_slice(&tensor, |w| price_types(name, w, cols, importance))??;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            job.report("pricing block types", n, matrices.len() as u64, None);
            let (types, outcomes) = priced.into_iter().unzip();
            Ok((Player { name: name.to_string(), params: rows * cols, outcomes }, types))
        })
        .collect::<Result<Vec<(Player, Vec<BlockType>)>>>()?;
    let vectors: u64 = model.weights.0.values().filter(|t| t.rank() != 2).map(|t| 32 * t.elem_count() as u64).sum();
    let (players, types) = players.into_iter().unzip();
    let game = Game { menu: Vec::new(), players, fixed_bits: vectors, total_params: model.param_count() };
    Ok(GgufGame { game, types })
}

/// Error and bits of one matrix in each block type that fits its rows.
fn price_types(name: &str, w: &[f32], cols: usize, importance: Option<&[f32]>) -> Result<Vec<(BlockType, Priced)>> {
    let unit = vec![1.0f32; cols];
    let weights = importance.unwrap_or(&unit);
    MENU.iter()
        .filter(|ty| ty.fits(cols))
        .map(|&ty| {
            let (decoded, bytes) = round_trip(name, ty, w, cols, importance)?;
            let error = ggml::weighted_error(w, &decoded, weights);
            Ok((ty, Priced { error, bits: bytes as u64 * 8 }))
        })
        .collect()
}

/// `w` encoded in `ty` (importance-weighted when given) and decoded, with the encoded size in bytes.
fn round_trip(
    name: &str,
    ty: BlockType,
    w: &[f32],
    cols: usize,
    importance: Option<&[f32]>,
) -> Result<(Vec<f32>, usize)> {
    let encoded = ggml::encode(ty, w, cols, importance).map_err(|e| Error::InvalidArgument(format!("{name}: {e}")))?;
    Ok((ggml::decode(ty, &encoded, w.len()).map_err(Error::Inconsistent)?, encoded.len()))
}

impl GgufGame {
    /// Player `player`'s matrix in the block type of its outcome `outcome`, decoded: what the sensitivity
    /// measurement runs the model with.
    pub fn decoded(
        &self,
        model: &Model,
        calibration: Option<&CalibrationStats>,
        player: usize,
        outcome: usize,
    ) -> Result<Vec<f32>> {
        let name = &self.game.players[player].name;
        let tensor = model.weights.get(name)?.contiguous()?;
        let cols = tensor.dims2()?.1;
        let importance = calibration.and_then(|c| c.column_weights(name, cols));
        let ty = self.types[player][outcome];
        with_f32_slice(&tensor, |w| round_trip(name, ty, w, cols, importance).map(|(d, _)| d))?
    }

    /// The same game with its outcomes priced by measured sensitivity.
    pub fn repriced(&self, sensitivity: &super::sensitivity::Sensitivity) -> Result<GgufGame> {
        Ok(GgufGame { game: sensitivity.reprice(&self.game)?, types: self.types.clone() })
    }

    /// The equilibrium at `target_bpw` (tensor bits over all parameters) as a GGUF plan.
    pub fn plan(&self, target_bpw: f64) -> Result<(GgufPlan, Allocation)> {
        let allocation = self.game.solve(target_bpw)?;
        let mut types = BTreeMap::new();
        let mut weights_by_type: BTreeMap<BlockType, usize> = BTreeMap::new();
        for (player, types_of) in self.game.players.iter().zip(&self.types) {
            let ty = types_of[allocation.choices[&player.name]];
            types.insert(player.name.clone(), ty);
            *weights_by_type.entry(ty).or_default() += player.params;
        }
        let dominant = weights_by_type.iter().max_by_key(|(_, n)| **n).map_or(BlockType::F16, |(t, _)| *t);
        let label = format!("nash@{target_bpw:.3}");
        Ok((GgufPlan { types, file_type: preset::file_type_of(dominant), label }, allocation))
    }
}
