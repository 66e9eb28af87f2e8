//! Live bit estimates while a threshold moves (the GUI's drag): no re-quantization, only per-tensor
//! log-importance histograms computed once. Payload and tier-map bits are exact for per-tensor thresholds;
//! block parameters are estimated from the chance that a tier appears in a block. The run that follows
//! reports the exact figures.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::config::{QuantConfig, Scope};
use super::plan::{Treatment, treatments};
use super::spec::{GroupSize, TensorPlan};
use super::tiers::{Granularity, index_bits};
use crate::importance::Scores;
use crate::model::Model;

pub const BINS: usize = 1024;

/// Histograms of log10(importance) per scored tensor, on one shared bin range.
#[derive(Clone, Debug)]
pub struct ImportanceIndex {
    pub log_min: f32,
    pub log_max: f32,
    /// (tensor name, rows, cols, counts per bin).
    pub tensors: Vec<(String, usize, usize, Vec<u32>)>,
}

/// Scores at or below this are put in the first bin (log of zero).
const FLOOR: f32 = 1e-12;

/// One tensor's scores summarized for the index: their log10 range and a fine histogram on a fixed range every
/// tensor shares, so tensors are summarized one at a time (their scores then dropped) and put on the index's
/// common bins at the end.
#[derive(Clone, Debug)]
pub struct ScoreSummary {
    pub rows: usize,
    pub cols: usize,
    log_min: f32,
    log_max: f32,
    fine: Vec<u32>,
}

/// The fine histograms' range (log10 of `FLOOR` up to 1e12) and bins: 0.0007 decades each, a small fraction
/// of an index bin for any realistic spread of scores.
const FINE_MIN: f32 = -12.0;
const FINE_MAX: f32 = 12.0;
const FINE_BINS: usize = 1 << 15;

impl ScoreSummary {
    pub fn of(scores: &[f32], rows: usize, cols: usize) -> ScoreSummary {
        let mut summary = ScoreSummary::new(rows, cols);
        summary.add(scores);
        summary
    }

    /// Nothing added yet.
    pub fn new(rows: usize, cols: usize) -> ScoreSummary {
        ScoreSummary { rows, cols, log_min: f32::INFINITY, log_max: f32::NEG_INFINITY, fine: vec![0; FINE_BINS] }
    }

    /// Adds the scores of some of the tensor's weights.
    pub fn add(&mut self, scores: &[f32]) {
        let fine_width = (FINE_MAX - FINE_MIN) / FINE_BINS as f32;
        for v in scores {
            let l = v.max(FLOOR).log10();
            (self.log_min, self.log_max) = (self.log_min.min(l), self.log_max.max(l));
            self.fine[(((l - FINE_MIN) / fine_width) as usize).min(FINE_BINS - 1)] += 1;
        }
    }
}

impl ImportanceIndex {
    pub fn build(model: &Model, scores: &Scores) -> ImportanceIndex {
        let summaries = scores.0.par_iter().map(|(name, s)| {
            let (rows, cols) = model.weights.dims2(name).unwrap_or((1, s.len()));
            (name.clone(), ScoreSummary::of(s, rows, cols))
        });
        Self::from_summaries(summaries.collect())
    }

    /// The index over tensors summarized one by one: each fine bin goes to the index bin holding its centre.
    pub fn from_summaries(summaries: Vec<(String, ScoreSummary)>) -> ImportanceIndex {
        let log_min = summaries.iter().map(|(_, s)| s.log_min).fold(f32::INFINITY, f32::min);
        let log_max = summaries.iter().map(|(_, s)| s.log_max).fold(f32::NEG_INFINITY, f32::max).max(log_min + 1e-6);
        let width = (log_max - log_min) / BINS as f32;
        let fine_width = (FINE_MAX - FINE_MIN) / FINE_BINS as f32;
        let tensors = summaries
            .into_par_iter()
            .map(|(name, s)| {
                let mut counts = vec![0u32; BINS];
                for (i, &c) in s.fine.iter().enumerate().filter(|(_, c)| **c > 0) {
                    let centre = (FINE_MIN + (i as f32 + 0.5) * fine_width).clamp(s.log_min, s.log_max);
                    counts[(((centre - log_min) / width) as usize).min(BINS - 1)] += c;
                }
                (name, s.rows, s.cols, counts)
            })
            .collect();
        ImportanceIndex { log_min, log_max, tensors }
    }

    pub fn bin_width(&self) -> f32 {
        (self.log_max - self.log_min) / BINS as f32
    }

    /// The summed histogram of some tensors (all when `names` is None).
    pub fn histogram(&self, name: Option<&str>) -> Vec<u32> {
        let mut total = vec![0u32; BINS];
        for (n, _, _, counts) in &self.tensors {
            if name.is_none_or(|x| x == n) {
                total.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
            }
        }
        total
    }

    /// log10 importance above which the top `share` of a histogram lies.
    pub fn threshold_for_share(hist: &[u32], share: f64, log_min: f32, width: f32) -> f32 {
        let total: u64 = hist.iter().map(|c| *c as u64).sum();
        let mut above = 0u64;
        for (bin, c) in hist.iter().enumerate().rev() {
            if above as f64 + *c as f64 >= share * total as f64 {
                let inside = (share * total as f64 - above as f64) / (*c).max(1) as f64;
                return log_min + width * (bin as f32 + 1.0 - inside as f32);
            }
            above += *c as u64;
        }
        log_min
    }

    /// Share of a histogram at or above log10 importance `log_threshold` (linear inside a bin).
    pub fn share_above(hist: &[u32], log_threshold: f32, log_min: f32, width: f32) -> f64 {
        let total: u64 = hist.iter().map(|c| *c as u64).sum();
        let position = ((log_threshold - log_min) / width).clamp(0.0, BINS as f32);
        let bin = position as usize;
        let mut above: f64 = hist.iter().skip(bin + 1).map(|c| *c as f64).sum();
        if bin < BINS {
            above += hist[bin] as f64 * (1.0 - (position - bin as f32) as f64);
        }
        above / total.max(1) as f64
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BitEstimate {
    /// Realized share of every tier among the weights that follow the tiers.
    pub tier_shares: Vec<f64>,
    pub payload_bpw: f64,
    pub true_bpw: f64,
    pub size_bytes: u64,
    /// Each tensor's estimate under the configuration, for views that must describe what Run would do.
    #[serde(skip)]
    pub tensors: BTreeMap<String, TensorEstimate>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorEstimate {
    /// Stored bits per weight: codes, block parameters and tier map (16 for a tensor kept in fp16).
    pub bits_per_weight: f64,
    /// Share of the weights in the plan's first tier (None when kept in fp16).
    pub top_tier_share: Option<f64>,
}

/// Estimated bits of a configuration over the whole model, from the index (no quantization).
pub fn estimate(model: &Model, index: &ImportanceIndex, config: &QuantConfig) -> BitEstimate {
    let treatments = treatments(model, config);
    let k = config.tiers.len();
    // Per tensor shares: the configured ones (per-tensor scope) or read off the histograms at global thresholds.
    let global_thresholds: Option<Vec<f32>> = (config.scope == Scope::Global && k > 1).then(|| {
        let all = index.histogram(None);
        let mut cumulative = 0.0;
        config.tiers[..k - 1]
            .iter()
            .map(|t| {
                cumulative += t.share;
                ImportanceIndex::threshold_for_share(&all, cumulative, index.log_min, index.bin_width())
            })
            .collect()
    });
    let (mut payload, mut quantized_weights, mut other_bits) = (0f64, 0usize, 0f64);
    let mut tier_weights = vec![0f64; k];
    let mut tensors = BTreeMap::new();
    for (name, treatment) in &treatments {
        let tensor = model.weights.stored(name).expect("treatments come from the weights");
        let n = tensor.elem_count();
        let Treatment::Quantize { plan, follows_tiers } = treatment else {
            other_bits += 16.0 * n as f64;
            tensors.insert(name.clone(), TensorEstimate { bits_per_weight: 16.0, top_tier_share: None });
            continue;
        };
        let (rows, cols) = model.weights.dims2(name).expect("quantized tensors are matrices");
        let shares: Vec<f64> = match (&global_thresholds, follows_tiers) {
            (Some(th), true) => match index.tensors.iter().find(|t| &t.0 == name) {
                Some((_, _, _, hist)) => shares_from_thresholds(hist, th, index),
                None => plan.tiers.iter().map(|t| t.share).collect(),
            },
            _ => plan.tiers.iter().map(|t| t.share).collect(),
        };
        quantized_weights += n;
        let mut codes = 0.0;
        for (t, (share, tier)) in shares.iter().zip(&plan.tiers).enumerate() {
            codes += share * n as f64 * tier.bits as f64;
            if *follows_tiers && t < k {
                tier_weights[t] += share * n as f64;
            }
        }
        let tier_map = plan.granularity.units(rows, cols) as f64 * index_bits(plan.tiers.len()) as f64;
        let overhead = block_param_bits(plan, &shares, rows, cols) + tier_map;
        payload += codes;
        other_bits += overhead;
        let bits_per_weight = (codes + overhead) / n.max(1) as f64;
        tensors.insert(name.clone(), TensorEstimate { bits_per_weight, top_tier_share: shares.first().copied() });
    }
    let params = model.param_count() as f64;
    let total_bits = payload + other_bits;
    let followed: f64 = tier_weights.iter().sum();
    BitEstimate {
        tier_shares: tier_weights.iter().map(|w| if followed > 0.0 { w / followed } else { 0.0 }).collect(),
        payload_bpw: if quantized_weights == 0 { 0.0 } else { payload / quantized_weights as f64 },
        true_bpw: total_bits / params,
        size_bytes: (total_bits / 8.0) as u64 + header_bytes(&treatments, config),
        tensors,
    }
}

/// The packed file's JSON header: per array its name, dtype, shape and offsets; per matrix its plan; the
/// configuration and bit report once.
fn header_bytes(treatments: &std::collections::BTreeMap<String, Treatment>, config: &QuantConfig) -> u64 {
    const ARRAY_ENTRY: usize = 60; // `"NAME":{"dtype":"U8","shape":[N],"data_offsets":[A,B]},` minus the name
    let per_tensor: usize = treatments
        .iter()
        .map(|(name, t)| match t {
            Treatment::Fp16 => name.len() + ARRAY_ENTRY,
            Treatment::Quantize { plan, .. } => {
                let arrays = plan.tiers.len() + 1 + (plan.tiers.len() > 1) as usize;
                let plan_json = serde_json::to_string(plan).map_or(0, |j| j.len());
                arrays * (name.len() + 10 + ARRAY_ENTRY) + name.len() + plan_json + 40
            }
        })
        .sum();
    let config_json = serde_json::to_string(config).map_or(0, |j| j.len());
    (per_tensor + 2 * config_json + 1000) as u64
}

fn shares_from_thresholds(hist: &[u32], thresholds: &[f32], index: &ImportanceIndex) -> Vec<f64> {
    let above: Vec<f64> =
        thresholds.iter().map(|t| ImportanceIndex::share_above(hist, *t, index.log_min, index.bin_width())).collect();
    let mut shares = Vec::with_capacity(thresholds.len() + 1);
    let mut previous = 0.0;
    for a in above {
        shares.push((a - previous).max(0.0));
        previous = a.max(previous);
    }
    shares.push(1.0 - previous);
    shares
}

/// f16 block parameters: every (block, tier present) pair stores its grid.
fn block_param_bits(plan: &TensorPlan, shares: &[f64], rows: usize, cols: usize) -> f64 {
    let (blocks, block_len) = match plan.group_size {
        GroupSize::Tensor => (1.0, (rows * cols) as f64),
        GroupSize::Row => (rows as f64, cols as f64),
        GroupSize::G(g) => ((rows * cols.div_ceil(g)) as f64, g.min(cols) as f64),
    };
    // Independent tier decisions per unit: a tier appears in a block unless all its units miss it.
    let units_per_block = match plan.granularity {
        _ if plan.tiers.len() == 1 => 1.0,
        Granularity::Weight => block_len,
        Granularity::Group(g) => (block_len / g as f64).max(1.0),
        Granularity::Channel | Granularity::Tensor => 1.0,
    };
    let present: f64 = shares
        .iter()
        .zip(&plan.tiers)
        .filter(|(_, t)| t.bits < 16)
        .map(|(p, _)| if plan.tiers.len() == 1 { 1.0 } else { 1.0 - (1.0 - p).powf(units_per_block) })
        .sum();
    blocks * present * 16.0 * plan.grid.params_per_block() as f64
}
