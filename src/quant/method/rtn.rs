//! Round-to-nearest quantization per (row, group of g weights) per tier (METHOD.md section 3).
//!
//! Inside each block (g consecutive weights of a row, a whole row, or the whole tensor), the weights of one tier
//! get their own grid. Asymmetric: `w ≈ q·scale + min`, q in [0, 2^b − 1], scale and min stored as f16 (the
//! min plays the zero point's role without rounding it to an integer). Symmetric: `w ≈ (q − m)·scale` with
//! m = 2^(b−1) − 1, zero a level, one f16 scale. 16 bits is fp16 passthrough. The f16 parameters are rounded
//! outward so every weight stays within half a step of its original.

use half::f16;
use rayon::prelude::*;

use super::{InputStats, Quantizer, TierSource};
use crate::quant::pack::BitWriter;
use crate::quant::spec::{Grid, GroupSize, TensorPlan};
use crate::quant::stored::{BlockGrid, FastGrid, MAX_TIERS, QuantizedTensor, TierCodes, TierMap};

/// Min-max round-to-nearest.
pub struct Rtn;

impl Quantizer for Rtn {
    fn name(&self) -> &'static str {
        "rtn"
    }
    fn quantize(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        plan: &TensorPlan,
        tiers: &TierSource,
        _inputs: InputStats,
    ) -> QuantizedTensor {
        quantize(w, rows, cols, plan, tiers)
    }
}

/// How each block's grid is chosen from the weights of one of its tiers.
#[derive(Clone, Copy)]
pub enum GridFit<'a> {
    /// Spanning the weights' range (`fit`).
    MinMax,
    /// Weighted least squares (`least_squares::fit`), with a weight per input column.
    LeastSquares(&'a [f32]),
    /// Chosen beforehand, one per block in storage order (single-tier plans: GPTQ's grids).
    Given(&'a [BlockGrid]),
}

/// Quantizes `w` ([rows, cols], row-major) on min-max grids with the tiers `tiers` gives.
pub fn quantize(w: &[f32], rows: usize, cols: usize, plan: &TensorPlan, tiers: &TierSource) -> QuantizedTensor {
    quantize_fitted(w, rows, cols, plan, tiers, GridFit::MinMax)
}

/// Quantizes `w` with the tiers `tiers` gives, each block's grids chosen by `fit`. Codes are packed as they are
/// made; the dequantized weights are not kept (see `dequantize`).
pub fn quantize_fitted(
    w: &[f32],
    rows: usize,
    cols: usize,
    plan: &TensorPlan,
    tiers: &TierSource,
    fit: GridFit,
) -> QuantizedTensor {
    let k = plan.tiers.len();
    assert!(k <= MAX_TIERS, "at most {MAX_TIERS} tiers");
    assert_eq!(matches!(tiers, TierSource::Single), k == 1, "a tier source for {k} tiers");
    // Blocks never straddle rows (except the one whole-tensor block), so row chunks quantize independently.
    let chunk_rows = match plan.group_size {
        GroupSize::Tensor => rows,
        _ => (CHUNK_WEIGHTS / cols.max(1)).clamp(1, rows.max(1)),
    }
    .max(1);
    let map_bits = match tiers {
        TierSource::Scores { .. } => crate::quant::tiers::index_bits(k) as u32,
        _ => 0,
    };
    let coder = Coder::new(plan, tiers, cols, map_bits, fit);
    let parts: Vec<Part> = (0..rows.div_ceil(chunk_rows))
        .into_par_iter()
        .map(|c| {
            let (r0, r1) = (c * chunk_rows, ((c + 1) * chunk_rows).min(rows));
            code_chunk(&coder, w, r0, r1)
        })
        .collect();
    let codes = plan
        .tiers
        .iter()
        .enumerate()
        .map(|(t, tier)| {
            let bits: usize = parts.iter().map(|p| p.codes[t].len_bits()).sum();
            TierCodes {
                bits: tier.bits,
                count: bits / tier.bits as usize,
                packed: BitWriter::concat(parts.iter().map(|p| &p.codes[t])).into(),
            }
        })
        .collect();
    let tier_map = match tiers {
        TierSource::Single => TierMap::default(),
        TierSource::Units(units) => TierMap::pack(units, k),
        TierSource::Scores { .. } => TierMap {
            units: w.len(),
            bits: map_bits as u8,
            packed: BitWriter::concat(parts.iter().map(|p| &p.tier_map)).into(),
        },
    };
    QuantizedTensor {
        rows,
        cols,
        plan: plan.clone(),
        tier_map,
        codes,
        params: parts.iter().flat_map(|p| p.params.iter().copied()).collect(),
        squared_error: parts.iter().map(|p| p.squared_error).sum(),
        squared_norm: parts.iter().map(|p| p.squared_norm).sum(),
    }
}

crate::math::dispatch! {
    /// `Coder::chunk`, compiled for AVX2 where the CPU has it (the tier split and bit packing inline into it).
    fn code_chunk(coder: &Coder<'_>, w: &[f32], r0: usize, r1: usize) -> Part {
        coder.chunk(w, r0, r1)
    }
}

const CHUNK_WEIGHTS: usize = 1 << 16;
/// Weights whose tiers are looked up at once (a stack buffer).
const RUN: usize = 256;

/// The output of a run of consecutive rows, in storage order.
struct Part {
    codes: [BitWriter; MAX_TIERS],
    tier_map: BitWriter,
    params: Vec<f16>,
    squared_error: f64,
    squared_norm: f64,
}

/// What every block of one tensor shares.
struct Coder<'a> {
    plan: &'a TensorPlan,
    tiers: &'a TierSource<'a>,
    cols: usize,
    /// Bits per weight of the tier map written while coding (0: none, the map is per unit or absent).
    map_bits: u32,
    bits: [u32; MAX_TIERS],
    fit: GridFit<'a>,
}

impl<'a> Coder<'a> {
    fn new(plan: &'a TensorPlan, tiers: &'a TierSource<'a>, cols: usize, map_bits: u32, fit: GridFit<'a>) -> Self {
        let mut bits = [0; MAX_TIERS];
        plan.tiers.iter().enumerate().for_each(|(t, tier)| bits[t] = tier.bits as u32);
        Coder { plan, tiers, cols, map_bits, bits, fit }
    }

    /// Quantizes rows `r0..r1` of `w`.
    #[inline(always)]
    fn chunk(&self, w: &[f32], r0: usize, r1: usize) -> Part {
        let mut part = Part {
            codes: Default::default(),
            tier_map: BitWriter::default(),
            params: Vec::new(),
            squared_error: 0.0,
            squared_norm: 0.0,
        };
        let offset = r0 * self.cols;
        let mut split = Split::default();
        let mut gathered = Gathered::default();
        for (start, len) in self.plan.group_size.blocks(r1 - r0, self.cols) {
            let first = offset + start;
            self.block(&w[first..first + len], first, &mut split, &mut gathered, &mut part);
        }
        part
    }

    /// One block, in runs of weights split by tier: each tier's range, its grid, then each tier's weights coded
    /// and appended to its bit stream. Split, a tier's weights are contiguous and every pass over them vectorizes.
    /// Blocks longer than a run split each run twice (once per pass).
    #[inline(always)]
    fn block(&self, w: &[f32], first: usize, split: &mut Split, gathered: &mut Gathered, part: &mut Part) {
        let k = self.plan.tiers.len();
        let mut tiers = [0u8; RUN];
        let (mut lo, mut hi) = ([f32::INFINITY; MAX_TIERS], [f32::NEG_INFINITY; MAX_TIERS]);
        // A single tier within one row is fitted in place: its columns' weights are a slice too.
        let (col, cols) = (first % self.cols.max(1), self.cols);
        let in_place = k == 1 && col + w.len() <= cols;
        let gather = match self.fit {
            GridFit::LeastSquares(columns) if !in_place => Some(columns),
            _ => None,
        };
        if gather.is_some() {
            gathered.clear();
        }
        for (r, run) in w.chunks(RUN).enumerate() {
            self.split_run(run, first + r * RUN, &mut tiers, split);
            for t in 0..k {
                let (l, h) = crate::math::min_max(split.tier(t, k, run));
                (lo[t], hi[t]) = (lo[t].min(l), hi[t].max(h));
            }
            if let Some(columns) = gather {
                gathered.push(split, run, &tiers[..run.len()], first + r * RUN, cols, columns, k);
            }
        }
        if gather.is_some() {
            gathered.pad(&lo[..k]);
        }
        // 16-bit tiers (and tiers absent from this block) pass weights through as f16 and store no parameters.
        let mut grids = [None; MAX_TIERS];
        for (t, tier) in self.plan.tiers.iter().enumerate().filter(|(t, tier)| lo[*t] <= hi[*t] && tier.bits < 16) {
            let grid = match self.fit {
                GridFit::MinMax => fit(self.plan.grid, tier.bits, lo[t], hi[t]),
                GridFit::Given(grids) => grids[self.block_index(first)],
                GridFit::LeastSquares(columns) => {
                    let (values, weights) = match in_place {
                        true => (w, &columns[col..col + w.len()]),
                        false => (&gathered.values[t][..], &gathered.weights[t][..]),
                    };
                    super::least_squares::fit(self.plan.grid, tier.bits, values, weights, lo[t], hi[t])
                }
            };
            part.params.push(grid.scale);
            if self.plan.grid == Grid::Asymmetric {
                part.params.push(grid.min);
            }
            grids[t] = Some(grid.fast());
        }
        let mut codes = [0u16; RUN];
        for (r, run) in w.chunks(RUN).enumerate() {
            if w.len() > RUN {
                self.split_run(run, first + r * RUN, &mut tiers, split);
            }
            for t in 0..k {
                let values = split.tier(t, k, run);
                let codes = &mut codes[..values.len()];
                part.squared_error += match &grids[t] {
                    Some(grid) => code_run(values, *grid, codes),
                    None => pass_through(values, codes),
                };
                part.codes[t].push_all(codes, self.bits[t]);
            }
            part.squared_norm += crate::math::sum_of_squares(run);
            if self.map_bits > 0 {
                part.tier_map.push_small(&tiers[..run.len()], self.map_bits);
            }
        }
    }

    /// The storage-order index of the block starting at weight `first`.
    fn block_index(&self, first: usize) -> usize {
        let (row, col) = (first / self.cols.max(1), first % self.cols.max(1));
        match self.plan.group_size {
            GroupSize::G(g) => row * self.cols.div_ceil(g) + col / g,
            GroupSize::Row => row,
            GroupSize::Tensor => 0,
        }
    }

    /// Tiers of the run of weights starting at `first`, and the run split by tier (a single tier needs no split).
    #[inline(always)]
    fn split_run(&self, run: &[f32], first: usize, tiers: &mut [u8; RUN], split: &mut Split) {
        let tiers = &mut tiers[..run.len()];
        self.tiers.fill(self.plan.granularity, self.cols, first, tiers);
        if self.plan.tiers.len() > 1 {
            split.counts = split_tiers(run, tiers, &mut split.values, self.plan.tiers.len());
        }
    }
}

/// A block's weights by tier with their columns' weights: what a least-squares fit reads.
#[derive(Default)]
struct Gathered {
    values: [Vec<f32>; MAX_TIERS],
    weights: [Vec<f32>; MAX_TIERS],
    /// A run's column weights split by tier, before they are appended (kept: it is 8 KB to clear).
    columns_by_tier: Split,
}

impl Gathered {
    fn clear(&mut self) {
        self.values.iter_mut().chain(&mut self.weights).for_each(Vec::clear);
    }

    /// Pads every tier of at least two weights to a whole number of the search's vector steps with weights of
    /// importance 0 (at the tier's lowest value, `lo`): they add exactly nothing to any sum, and the search then
    /// never takes its scalar path for a tier's last few weights (a 3-tier block of 128 has up to 45 of them).
    fn pad(&mut self, lo: &[f32]) {
        for ((values, weights), &lo) in self.values.iter_mut().zip(&mut self.weights).zip(lo) {
            if values.len() >= 2 {
                let padded = values.len().next_multiple_of(super::least_squares::VECTOR_STEP);
                values.resize(padded, lo);
                weights.resize(padded, 0.0);
            }
        }
    }

    /// Appends the run of weights starting at `first` (row-major index) by tier: the values as `split` holds
    /// them, their columns' weights split the same way.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, split: &Split, run: &[f32], tiers: &[u8], first: usize, cols: usize, columns: &[f32], k: usize) {
        for t in 0..k {
            self.values[t].extend_from_slice(split.tier(t, k, run));
        }
        let col = first % cols;
        if col + run.len() > cols {
            // A run across rows (a whole-tensor block): one weight at a time.
            for (i, &t) in tiers.iter().enumerate() {
                self.weights[t as usize].push(columns[(col + i) % cols]);
            }
            return;
        }
        let column_weights = &columns[col..col + run.len()];
        if k == 1 {
            self.weights[0].extend_from_slice(column_weights);
            return;
        }
        let by_tier = &mut self.columns_by_tier;
        by_tier.counts = split_tiers(column_weights, tiers, &mut by_tier.values, k);
        for t in 0..k {
            self.weights[t].extend_from_slice(by_tier.tier(t, k, column_weights));
        }
    }
}

/// A run of weights split by tier, each tier's in storage order.
struct Split {
    values: [[f32; RUN]; MAX_TIERS],
    counts: [usize; MAX_TIERS],
}

impl Default for Split {
    fn default() -> Self {
        Split { values: [[0.0; RUN]; MAX_TIERS], counts: [0; MAX_TIERS] }
    }
}

impl Split {
    /// The weights of tier `t` (of `k`) in `run`.
    #[inline(always)]
    fn tier<'a>(&'a self, t: usize, k: usize, run: &'a [f32]) -> &'a [f32] {
        if k == 1 { run } else { &self.values[t][..self.counts[t]] }
    }
}

crate::math::dispatch! {
    /// Codes of `values` on `grid`, and Σ (w − q(w))² over them; eight lanes at a time, so the loop vectorizes.
    pub fn code_run(values: &[f32], grid: FastGrid, codes: &mut [u16]) -> f64 {
        let mut error = [0f32; 8];
        let mut lanes = values.chunks_exact(8).zip(codes.chunks_exact_mut(8));
        for (v, c) in &mut lanes {
            for j in 0..8 {
                // `FastGrid::quantize` with the clamp as two selects (f32::clamp's NaN rules keep it scalar).
                let x = (v[j] - grid.min) * grid.inv_scale + grid.offset + 0.5;
                let x = if x > 0.0 { x } else { 0.0 };
                let x = if x < grid.max_code { x } else { grid.max_code };
                // SAFETY: x lies in [0, max_code] (a NaN became 0 above), so it fits an i32; unlike `as`, the
                // unchecked conversion has no saturation fix-ups and vectorizes.
                let q = unsafe { x.to_int_unchecked::<i32>() };
                c[j] = q as u16;
                let d = v[j] - ((q as f32 - grid.offset) * grid.scale + grid.min);
                error[j] += d * d;
            }
        }
        let tail = values.len() / 8 * 8;
        for (&v, c) in values[tail..].iter().zip(&mut codes[tail..]) {
            let value;
            (*c, value) = grid.quantize(v);
            error[0] += (v - value) * (v - value);
        }
        error.iter().map(|&e| e as f64).sum()
    }
}

/// f16 passthrough (the code is the f16's bit pattern), and Σ (w − q(w))².
fn pass_through(values: &[f32], codes: &mut [u16]) -> f64 {
    let mut error = 0f64;
    for (&v, code) in values.iter().zip(codes.iter_mut()) {
        let h = f16::from_f32(v);
        *code = h.to_bits();
        error += ((v - h.to_f32()) as f64).powi(2);
    }
    error
}

/// `split_by_tier` for `k` tiers (at least 2).
#[inline(always)]
fn split_tiers(run: &[f32], tiers: &[u8], out: &mut [[f32; RUN]; MAX_TIERS], k: usize) -> [usize; MAX_TIERS] {
    match k {
        2 => split_by_tier::<2>(run, tiers, out),
        3 => split_by_tier::<3>(run, tiers, out),
        4 => split_by_tier::<4>(run, tiers, out),
        _ => split_by_tier::<MAX_TIERS>(run, tiers, out),
    }
}

/// Each tier's weights of a run, in order, and how many each tier has. The K output cursors stay in registers
/// (K is a constant) and every weight is written to every tier's buffer with only the matching cursor moving,
/// so no branch depends on the (random) tier.
#[inline(always)]
fn split_by_tier<const K: usize>(run: &[f32], tiers: &[u8], out: &mut [[f32; RUN]; MAX_TIERS]) -> [usize; MAX_TIERS] {
    let mut n = [0usize; K];
    for (&v, &tier) in run.iter().zip(tiers) {
        for j in 0..K {
            out[j][n[j] % RUN] = v; // n[j] < RUN here; the modulo (a mask) spares the bounds check
            n[j] += (tier as usize == j) as usize;
        }
    }
    let mut counts = [0; MAX_TIERS];
    counts[..K].copy_from_slice(&n);
    counts
}

/// The min-max grid of a block's weights `[lo, hi]`, parameters rounded outward to f16.
pub fn fit(grid: Grid, bits: u8, lo: f32, hi: f32) -> BlockGrid {
    let levels = ((1u32 << bits) - 1) as f32;
    match grid {
        Grid::Asymmetric => {
            let min = f16_at_most(lo);
            let scale = f16_at_least((hi - min.to_f32()) / levels);
            BlockGrid { scale, min, grid, bits }
        }
        Grid::Symmetric => {
            let half_levels = ((1u32 << (bits - 1)) - 1) as f32;
            let scale = f16_at_least(lo.abs().max(hi.abs()) / half_levels);
            BlockGrid { scale, min: f16::ZERO, grid, bits }
        }
    }
}

/// The largest f16 not above `x`.
fn f16_at_most(x: f32) -> f16 {
    let h = f16::from_f32(x);
    if h.to_f32() <= x { h } else { step_f16(h, false) }
}

/// The smallest f16 not below `x` (x >= 0).
fn f16_at_least(x: f32) -> f16 {
    let h = f16::from_f32(x);
    if h.to_f32() >= x { h } else { step_f16(h, true) }
}

fn step_f16(h: f16, up: bool) -> f16 {
    let bits = h.to_bits();
    let positive = bits & 0x8000 == 0;
    let away_from_zero = up == positive;
    if bits & 0x7fff == 0 {
        // ±0: the smallest subnormal in the wanted direction.
        return f16::from_bits(if up { 0x0001 } else { 0x8001 });
    }
    f16::from_bits(if away_from_zero { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::spec::QuantizerKind;
    use crate::quant::tiers::{Granularity, Tier};

    fn noisy(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 * 12.9898).sin() * 43758.545).fract() * 0.2 - 0.05).collect()
    }

    #[test]
    fn every_weight_is_within_half_a_step_of_its_original() {
        let (rows, cols) = (8, 200);
        let w = noisy(rows * cols);
        for grid in [Grid::Asymmetric, Grid::Symmetric] {
            for bits in [2u8, 3, 4, 5, 6, 8] {
                for group_size in
                    [GroupSize::G(32), GroupSize::G(64), GroupSize::G(128), GroupSize::Row, GroupSize::Tensor]
                {
                    let plan = TensorPlan::uniform(bits, group_size, grid);
                    let q = quantize(&w, rows, cols, &plan, &TierSource::Single);
                    let dequantized = q.dequantize().unwrap();
                    let mut p = 0;
                    for (start, len) in group_size.blocks(rows, cols) {
                        let stored: Vec<f16> =
                            (p..p + grid.params_per_block()).map(|i| q.params.get(i).unwrap()).collect();
                        let g = BlockGrid::from_stored(grid, bits, &stored);
                        p += grid.params_per_block();
                        let half_step = 0.5 * g.scale.to_f32() * (1.0 + 1e-5);
                        for i in start..start + len {
                            let err = (w[i] - dequantized[i]).abs();
                            assert!(
                                err <= half_step + 1e-9,
                                "{grid:?} {bits}b {group_size:?}: err {err} > {half_step}"
                            );
                        }
                    }
                    assert_eq!(p, q.params.len());
                }
            }
        }
    }

    #[test]
    fn sixteen_bits_is_fp16() {
        let w = noisy(64);
        let q = quantize(&w, 1, 64, &TensorPlan::uniform(16, GroupSize::G(32), Grid::Asymmetric), &TierSource::Single);
        assert!(q.params.is_empty());
        for (a, b) in w.iter().zip(&q.dequantize().unwrap()) {
            assert_eq!(*b, f16::from_f32(*a).to_f32());
        }
    }

    #[test]
    fn per_weight_tiers_from_scores_code_each_weight_on_its_tier_grid() {
        // Three tiers, one of them fp16, per weight; rows longer than a run of tiers and a partial last group.
        let (rows, cols) = (5, 300);
        let w = noisy(rows * cols);
        let scores: Vec<f32> = w.iter().enumerate().map(|(i, v)| v.abs() + (i % 7) as f32 * 1e-3).collect();
        let thresholds = vec![0.06, 0.02];
        let tiers = vec![Tier { share: 0.1, bits: 16 }, Tier { share: 0.2, bits: 4 }, Tier { share: 0.7, bits: 2 }];
        let plan = TensorPlan {
            tiers,
            granularity: Granularity::Weight,
            group_size: GroupSize::G(128),
            grid: Grid::Asymmetric,
            quantizer: crate::quant::spec::QuantizerKind::Rtn,
        };
        let source = TierSource::Scores { scores: &scores, thresholds: thresholds.clone() };
        let q = quantize(&w, rows, cols, &plan, &source);
        let tier_of = |i: usize| thresholds.iter().filter(|t| scores[i] < **t).count();
        let unit_tiers: Vec<u8> = (0..w.len()).map(|i| tier_of(i) as u8).collect();
        // The same tiers given per unit give the same bytes.
        let by_units = quantize(&w, rows, cols, &plan, &TierSource::Units(unit_tiers.clone()));
        assert_eq!((&by_units.codes, &by_units.params, &by_units.tier_map), (&q.codes, &q.params, &q.tier_map));
        assert_eq!(q.tier_map, TierMap::pack(&unit_tiers, 3));
        let dequantized = q.dequantize().unwrap();
        let mut squared_error = 0.0;
        for (start, len) in plan.group_size.blocks(rows, cols) {
            for t in 0..3 {
                let members: Vec<usize> = (start..start + len).filter(|&i| tier_of(i) == t).collect();
                let (lo, hi) =
                    members.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &i| (l.min(w[i]), h.max(w[i])));
                for &i in &members {
                    assert_eq!(q.tier_of_weight(i), t);
                    let err = (w[i] - dequantized[i]).abs();
                    if t == 0 {
                        assert_eq!(dequantized[i], f16::from_f32(w[i]).to_f32());
                    } else {
                        let step = (hi - lo) / ((1 << plan.tiers[t].bits) - 1) as f32;
                        assert!(err <= 0.5 * step * 1.01 + 1e-6, "weight {i} tier {t}: err {err}, step {step}");
                    }
                    squared_error += (err as f64).powi(2);
                }
            }
        }
        assert!((q.squared_error - squared_error).abs() <= 1e-4 * squared_error);
        assert_eq!(q.tier_counts(), [0, 1, 2].map(|t| (0..w.len()).filter(|&i| tier_of(i) == t).count()));
    }

    #[test]
    fn rows_quantized_in_pieces_and_joined_are_the_whole() {
        // 3-bit codes over 100 columns: pieces end mid-byte, and groups of 32 leave a partial block per row.
        let (rows, cols) = (23, 100);
        let w = noisy(rows * cols);
        let column_weights: Vec<f32> = (0..cols).map(|j| 1.0 + (j % 7) as f32).collect();
        for quantizer in [QuantizerKind::Rtn, QuantizerKind::LeastSquares] {
            for group_size in [GroupSize::G(32), GroupSize::Row] {
                let plan = TensorPlan::uniform(3, group_size, Grid::Asymmetric).with_quantizer(quantizer);
                let inputs = InputStats { mean_square: Some(&column_weights), ..Default::default() };
                let rows_of = |r: std::ops::Range<usize>| {
                    let piece = &w[r.start * cols..r.end * cols];
                    super::super::for_plan(&plan).quantize(piece, r.len(), cols, &plan, &TierSource::Single, inputs)
                };
                let whole = rows_of(0..rows);
                let joined = QuantizedTensor::join_rows([rows_of(0..5), rows_of(5..12), rows_of(12..rows)]);
                assert_eq!((joined.rows, &joined.codes, &joined.params), (rows, &whole.codes, &whole.params));
                assert!((joined.squared_error - whole.squared_error).abs() <= 1e-9 * whole.squared_error);
            }
        }
        // Several tiers, with thresholds found beforehand: per weight (a tier per score) and per group of 32.
        let scores: Vec<f32> = w.iter().enumerate().map(|(i, v)| v.abs() + (i % 3) as f32 * 1e-3).collect();
        let thresholds = vec![0.06, 0.02];
        let tiers = vec![Tier { share: 0.1, bits: 16 }, Tier { share: 0.2, bits: 5 }, Tier { share: 0.7, bits: 3 }];
        for granularity in [Granularity::Weight, Granularity::Group(32), Granularity::Channel] {
            let plan = TensorPlan {
                tiers: tiers.clone(),
                granularity,
                group_size: GroupSize::G(32),
                grid: Grid::Asymmetric,
                quantizer: QuantizerKind::Rtn,
            };
            let rows_of = |r: std::ops::Range<usize>| {
                let (piece, piece_scores) = (&w[r.start * cols..r.end * cols], &scores[r.start * cols..r.end * cols]);
                let source =
                    crate::quant::plan::assign(&plan, r.len(), cols, Some(piece_scores), Some(&thresholds)).unwrap();
                quantize(piece, r.len(), cols, &plan, &source)
            };
            let whole = rows_of(0..rows);
            let joined = QuantizedTensor::join_rows([rows_of(0..5), rows_of(5..12), rows_of(12..rows)]);
            assert_eq!(
                (&joined.codes, &joined.params, &joined.tier_map),
                (&whole.codes, &whole.params, &whole.tier_map)
            );
            assert_eq!(joined.dequantize().unwrap(), whole.dequantize().unwrap(), "{granularity}");
        }
    }

    #[test]
    fn any_rows_decode_as_the_whole_matrix_does() {
        let (rows, cols) = (70, 50);
        let w = noisy(rows * cols);
        let scores: Vec<f32> = w.iter().enumerate().map(|(i, v)| v.abs() + (i % 5) as f32 * 1e-3).collect();
        let three = vec![Tier { share: 0.1, bits: 16 }, Tier { share: 0.2, bits: 5 }, Tier { share: 0.7, bits: 3 }];
        let plan = |tiers: &Vec<Tier>, granularity, group_size| TensorPlan {
            tiers: tiers.clone(),
            granularity,
            group_size,
            grid: Grid::Symmetric,
            quantizer: QuantizerKind::Rtn,
        };
        let by_scores = TierSource::Scores { scores: &scores, thresholds: vec![0.06, 0.02] };
        let row_tiers: Vec<u8> = (0..rows).map(|r| (r % 3) as u8).collect();
        let cases = [
            (plan(&three, Granularity::Weight, GroupSize::G(16)), by_scores),
            (plan(&three, Granularity::Channel, GroupSize::Row), TierSource::Units(row_tiers)),
            (TensorPlan::uniform(3, GroupSize::G(32), Grid::Asymmetric), TierSource::Single),
            (TensorPlan::uniform(4, GroupSize::Tensor, Grid::Asymmetric), TierSource::Single),
        ];
        for (plan, source) in cases {
            let q = quantize(&w, rows, cols, &plan, &source);
            let whole = q.dequantize().unwrap();
            let access = crate::quant::stored::RowAccess::new(q);
            for range in [0..70, 0..1, 1..2, 15..17, 16..48, 33..34, 69..70, 40..40] {
                let part = access.rows(range.clone()).unwrap();
                assert_eq!(part, whole[range.start * cols..range.end * cols], "{} rows {range:?}", plan.label());
            }
            assert!(access.rows(60..71).is_err());
        }
    }

    #[test]
    fn damaged_codes_are_an_error_not_a_panic() {
        let w = noisy(256);
        let mut q =
            quantize(&w, 2, 128, &TensorPlan::uniform(4, GroupSize::G(32), Grid::Asymmetric), &TierSource::Single);
        q.codes[0].packed = q.codes[0].packed[..10].to_vec().into();
        assert!(q.dequantize().unwrap_err().contains("truncated"));
    }

    #[test]
    fn symmetric_grids_hold_zero_and_asymmetric_2_bit_grids_may_not() {
        let w = [-0.3f32, -0.1, 0.05, 0.4];
        let sym = fit(Grid::Symmetric, 2, -0.3, 0.4);
        assert_eq!(sym.value(sym.code(0.0)), 0.0);
        let asym = fit(Grid::Asymmetric, 2, w[0], w[3]);
        assert!((0..4).all(|q| asym.value(q) != 0.0));
    }
}
