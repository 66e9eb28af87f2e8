//! Round-to-nearest quantization per (row, group of g weights) per tier (METHOD.md section 3).
//!
//! Inside each block (g consecutive weights of a row, a whole row, or the whole tensor), the weights of one tier
//! get their own grid. Asymmetric: `w ≈ q·scale + min`, q in [0, 2^b − 1], scale and min stored as f16 (the
//! min plays the zero point's role without rounding it to an integer). Symmetric: `w ≈ (q − m)·scale` with
//! m = 2^(b−1) − 1, zero a level, one f16 scale. 16 bits is fp16 passthrough. The f16 parameters are rounded
//! outward so every weight stays within half a step of its original.

use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::pack::{self, BitReader, BitWriter};
use super::tiers::{Granularity, Tier};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Grid {
    #[default]
    Asymmetric,
    Symmetric,
}

impl Grid {
    /// f16 values stored per block.
    pub fn params_per_block(self) -> usize {
        match self {
            Grid::Asymmetric => 2,
            Grid::Symmetric => 1,
        }
    }
}

/// Weights per quantization block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GroupSize {
    G(usize),
    Row,
    /// One block for the whole matrix (the original's "uniform 4-bit per tensor").
    Tensor,
}

impl From<GroupSize> for String {
    fn from(g: GroupSize) -> String {
        match g {
            GroupSize::G(g) => g.to_string(),
            GroupSize::Row => "row".into(),
            GroupSize::Tensor => "tensor".into(),
        }
    }
}

impl TryFrom<String> for GroupSize {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "32" => Ok(GroupSize::G(32)),
            "64" => Ok(GroupSize::G(64)),
            "128" => Ok(GroupSize::G(128)),
            "row" => Ok(GroupSize::Row),
            "tensor" => Ok(GroupSize::Tensor),
            other => Err(format!("group size `{other}` is not one of 32, 64, 128, row, tensor")),
        }
    }
}

impl GroupSize {
    /// Contiguous (start, len) ranges of the row-major weights, in storage order.
    pub fn blocks(self, rows: usize, cols: usize) -> Vec<(usize, usize)> {
        match self {
            GroupSize::Tensor => vec![(0, rows * cols)],
            GroupSize::Row => (0..rows).map(|r| (r * cols, cols)).collect(),
            GroupSize::G(g) => {
                (0..rows).flat_map(|r| (0..cols).step_by(g).map(move |c| (r * cols + c, g.min(cols - c)))).collect()
            }
        }
    }
}

/// How one matrix is quantized: its tiers and where tiers and grids are decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorPlan {
    pub tiers: Vec<Tier>,
    pub granularity: Granularity,
    pub group_size: GroupSize,
    pub grid: Grid,
}

impl TensorPlan {
    pub fn uniform(bits: u8, group_size: GroupSize, grid: Grid) -> Self {
        TensorPlan { tiers: vec![Tier { share: 1.0, bits }], granularity: Granularity::Tensor, group_size, grid }
    }

    pub fn label(&self) -> String {
        let tiers: Vec<String> = self.tiers.iter().map(|t| format!("{:.0}%->{}", t.share * 100.0, t.bits)).collect();
        let g = String::from(self.group_size);
        if self.tiers.len() == 1 {
            format!("{}b g{g}", self.tiers[0].bits)
        } else {
            format!("{} {} g{g}", tiers.join("/"), self.granularity)
        }
    }
}

/// Codes of the weights of one tier, in storage order, packed at the tier's width.
#[derive(Clone, Debug, PartialEq)]
pub struct TierCodes {
    pub bits: u8,
    pub count: usize,
    pub packed: Vec<u8>,
}

/// One quantized matrix: what the exporter writes and evaluation dequantizes.
#[derive(Clone, Debug)]
pub struct QuantizedTensor {
    pub rows: usize,
    pub cols: usize,
    pub plan: TensorPlan,
    /// Tier of every unit of the plan's granularity.
    pub tier_map: TierMap,
    pub codes: Vec<TierCodes>,
    /// f16 block parameters in storage order: per block, per tier present (scale[, min]).
    pub params: Vec<f16>,
    /// Σ (w − q(w))² and Σ w², for the relative error views show.
    pub squared_error: f64,
    pub squared_norm: f64,
}

/// Where each weight's tier comes from.
#[derive(Clone, Debug)]
pub enum TierSource<'a> {
    /// A single-tier plan.
    Single,
    /// The tier of every unit of the plan's granularity (group, channel or tensor).
    Units(Vec<u8>),
    /// Per-weight granularity: a weight's tier is the number of thresholds above its score. Read while quantizing,
    /// so no per-weight tier array is ever built.
    Scores { scores: &'a [f32], thresholds: Vec<f32> },
}

impl TierSource<'_> {
    /// Tiers of the weights `first..first + out.len()` (row-major).
    #[inline(always)]
    fn fill(&self, granularity: Granularity, cols: usize, first: usize, out: &mut [u8]) {
        match self {
            TierSource::Single => out.fill(0),
            TierSource::Scores { scores, thresholds } => {
                let scores = &scores[first..first + out.len()];
                out.fill(0);
                // Thresholds descend: the tier is the number of them above the score (one vectorized pass each).
                for &t in thresholds {
                    out.iter_mut().zip(scores).for_each(|(o, &s)| *o += (s < t) as u8);
                }
            }
            TierSource::Units(units) => {
                out.iter_mut().enumerate().for_each(|(i, o)| *o = units[granularity.unit_of(first + i, cols)])
            }
        }
    }
}

/// Quantizes `w` ([rows, cols], row-major) with the tiers `tiers` gives. Codes are packed as they are made; the
/// dequantized weights are not kept (see `dequantize`).
pub fn quantize(w: &[f32], rows: usize, cols: usize, plan: &TensorPlan, tiers: &TierSource) -> QuantizedTensor {
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
        TierSource::Scores { .. } => super::tiers::index_bits(k) as u32,
        _ => 0,
    };
    let coder = Coder::new(plan, tiers, cols, map_bits);
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
                packed: BitWriter::concat(parts.iter().map(|p| &p.codes[t])),
            }
        })
        .collect();
    let tier_map = match tiers {
        TierSource::Single => TierMap::default(),
        TierSource::Units(units) => TierMap::pack(units, k),
        TierSource::Scores { .. } => TierMap {
            units: w.len(),
            bits: map_bits as u8,
            packed: BitWriter::concat(parts.iter().map(|p| &p.tier_map)),
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

impl QuantizedTensor {
    /// Units in each tier (weights, for a single-tier plan, which stores no map).
    pub fn tier_counts(&self) -> Vec<usize> {
        let k = self.plan.tiers.len();
        if k == 1 || self.tier_map.units == self.rows * self.cols {
            // One tier, or one unit per weight: each tier's code count is its unit count (no pass over the map).
            return self.codes.iter().map(|c| c.count).collect();
        }
        let mut counts = vec![0; k];
        (0..self.tier_map.units).for_each(|u| counts[self.tier_map.get(u) as usize] += 1);
        counts
    }

    /// The tier of weight `i` (row-major).
    pub fn tier_of_weight(&self, i: usize) -> usize {
        if self.plan.tiers.len() == 1 {
            0
        } else {
            self.tier_map.get(self.plan.granularity.unit_of(i, self.cols)) as usize
        }
    }

    /// The weights the codes stand for, row-major. An inconsistent tensor (read from a damaged file) is an error
    /// naming what ran out, never a panic. Block by block: the block's tiers, each present tier's codes read in
    /// one tight loop and mapped to values, then the values merged back into storage order.
    pub fn dequantize(&self) -> Result<Vec<f32>, String> {
        let (k, cols) = (self.plan.tiers.len(), self.cols);
        let weight_map = k > 1 && self.tier_map.units == self.rows * cols;
        let units = self.plan.granularity.units(self.rows, cols);
        if k > 1
            && (self.tier_map.units != units
                || self.tier_map.packed.len() < pack::packed_len(units, self.tier_map.bits))
        {
            return Err(format!("tier map truncated: {} bytes for {units} units", self.tier_map.packed.len()));
        }
        let mut out = crate::memory::zeroed_f32(self.rows * cols);
        let mut codes: Vec<BitReader> = self.codes.iter().map(|c| BitReader::new(&c.packed)).collect();
        let mut map = BitReader::new(&self.tier_map.packed);
        let mut params = self.params.chunks_exact(self.plan.grid.params_per_block());
        let (mut tiers, mut block_codes) = (Vec::new(), Vec::new());
        let mut values: [Vec<f32>; MAX_TIERS] = Default::default();
        for (start, len) in self.plan.group_size.blocks(self.rows, cols) {
            tiers.resize(len, 0u8);
            match (k, weight_map) {
                (1, _) => {}
                (_, true) => {
                    block_codes.resize(len, 0u16);
                    if !map.read_into(self.tier_map.bits as u32, &mut block_codes) {
                        return Err("tier map truncated".into());
                    }
                    tiers.iter_mut().zip(&block_codes).for_each(|(t, &c)| *t = c as u8);
                }
                _ => tiers.iter_mut().enumerate().for_each(|(i, t)| {
                    *t = self.tier_map.get(self.plan.granularity.unit_of(start + i, cols));
                }),
            }
            let mut counts = [0usize; MAX_TIERS];
            for &t in &tiers {
                counts[(t as usize).min(MAX_TIERS - 1)] += 1;
            }
            if let Some(t) = (k..MAX_TIERS).find(|&t| counts[t] > 0) {
                return Err(format!("tier {t} in the tier map of a {k}-tier plan"));
            }
            for (t, tier) in self.plan.tiers.iter().enumerate().filter(|(t, _)| counts[*t] > 0) {
                block_codes.resize(counts[t], 0);
                if !codes[t].read_into(tier.bits as u32, &mut block_codes) {
                    return Err("codes truncated".into());
                }
                values[t].resize(counts[t], 0.0);
                if tier.bits == 16 {
                    values[t].iter_mut().zip(&block_codes).for_each(|(v, &c)| *v = f16::from_bits(c).to_f32());
                } else {
                    let stored = params.next().ok_or("block parameters truncated")?;
                    let grid = BlockGrid::from_stored(self.plan.grid, tier.bits, stored).fast();
                    values[t].iter_mut().zip(&block_codes).for_each(|(v, &c)| *v = grid.value(c));
                }
            }
            let block = &mut out[start..start + len];
            if k == 1 {
                block.copy_from_slice(&values[0]);
            } else {
                let mut next = [0usize; MAX_TIERS];
                for (w, &t) in block.iter_mut().zip(&tiers) {
                    let t = t as usize;
                    *w = values[t][next[t]];
                    next[t] += 1;
                }
            }
        }
        Ok(out)
    }
}

/// The tier of every unit, packed at ceil(log2 k) bits as the export stores it: a quarter byte per weight for
/// three tiers instead of a byte, which keeps a quantized SmolLM2 100 MB lighter in the explorer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierMap {
    pub units: usize,
    pub bits: u8,
    pub packed: Vec<u8>,
}

impl TierMap {
    /// Empty (no map is stored) for single-tier plans.
    pub fn pack(unit_tiers: &[u8], tiers: usize) -> TierMap {
        let bits = super::tiers::index_bits(tiers);
        if bits == 0 {
            return TierMap::default();
        }
        TierMap { units: unit_tiers.len(), bits, packed: pack::pack_parallel(unit_tiers, bits) }
    }

    pub fn get(&self, unit: usize) -> u8 {
        pack::code_at(&self.packed, self.bits, unit).unwrap_or(0) as u8
    }
}

pub const MAX_TIERS: usize = 8;
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
}

impl<'a> Coder<'a> {
    fn new(plan: &'a TensorPlan, tiers: &'a TierSource<'a>, cols: usize, map_bits: u32) -> Self {
        let mut bits = [0; MAX_TIERS];
        plan.tiers.iter().enumerate().for_each(|(t, tier)| bits[t] = tier.bits as u32);
        Coder { plan, tiers, cols, map_bits, bits }
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
        let mut split = Split { values: [[0.0; RUN]; MAX_TIERS], counts: [0; MAX_TIERS] };
        for (start, len) in self.plan.group_size.blocks(r1 - r0, self.cols) {
            let first = offset + start;
            self.block(&w[first..first + len], first, &mut split, &mut part);
        }
        part
    }

    /// One block, in runs of weights split by tier: each tier's range, its grid, then each tier's weights coded
    /// and appended to its bit stream. Split, a tier's weights are contiguous and every pass over them vectorizes.
    /// Blocks longer than a run split each run twice (once per pass).
    #[inline(always)]
    fn block(&self, w: &[f32], first: usize, split: &mut Split, part: &mut Part) {
        let k = self.plan.tiers.len();
        let mut tiers = [0u8; RUN];
        let (mut lo, mut hi) = ([f32::INFINITY; MAX_TIERS], [f32::NEG_INFINITY; MAX_TIERS]);
        for (r, run) in w.chunks(RUN).enumerate() {
            self.split_run(run, first + r * RUN, &mut tiers, split);
            for t in 0..k {
                let (l, h) = crate::math::min_max(split.tier(t, k, run));
                (lo[t], hi[t]) = (lo[t].min(l), hi[t].max(h));
            }
        }
        // 16-bit tiers (and tiers absent from this block) pass weights through as f16 and store no parameters.
        let mut grids = [None; MAX_TIERS];
        for (t, tier) in self.plan.tiers.iter().enumerate().filter(|(t, tier)| lo[*t] <= hi[*t] && tier.bits < 16) {
            let grid = BlockGrid::fit(self.plan.grid, tier.bits, lo[t], hi[t]);
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

    /// Tiers of the run of weights starting at `first`, and the run split by tier (a single tier needs no split).
    #[inline(always)]
    fn split_run(&self, run: &[f32], first: usize, tiers: &mut [u8; RUN], split: &mut Split) {
        let tiers = &mut tiers[..run.len()];
        self.tiers.fill(self.plan.granularity, self.cols, first, tiers);
        split.counts = match self.plan.tiers.len() {
            1 => return,
            2 => split_by_tier::<2>(run, tiers, &mut split.values),
            3 => split_by_tier::<3>(run, tiers, &mut split.values),
            4 => split_by_tier::<4>(run, tiers, &mut split.values),
            _ => split_by_tier::<MAX_TIERS>(run, tiers, &mut split.values),
        };
    }
}

/// A run of weights split by tier, each tier's in storage order.
struct Split {
    values: [[f32; RUN]; MAX_TIERS],
    counts: [usize; MAX_TIERS],
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

/// A block grid with its parameters unpacked to f32, for the hot loop.
#[derive(Clone, Copy, Debug)]
pub struct FastGrid {
    inv_scale: f32,
    scale: f32,
    min: f32,
    offset: f32,
    max_code: f32,
}

impl FastGrid {
    #[inline(always)]
    fn quantize(&self, w: f32) -> (u16, f32) {
        // Non-negative before clamping, so adding 0.5 and truncating rounds to nearest (through i32: vectorizes).
        let code = ((w - self.min) * self.inv_scale + self.offset + 0.5).clamp(0.0, self.max_code) as i32 as u16;
        (code, self.value(code))
    }

    #[inline(always)]
    fn value(&self, code: u16) -> f32 {
        (code as f32 - self.offset) * self.scale + self.min
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

/// One block's grid, with parameters already rounded to what is stored.
#[derive(Clone, Copy, Debug)]
pub struct BlockGrid {
    pub scale: f16,
    /// Asymmetric: the value of code 0. Symmetric: unused (zero).
    pub min: f16,
    pub grid: Grid,
    pub bits: u8,
}

impl BlockGrid {
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

    pub fn from_stored(grid: Grid, bits: u8, stored: &[f16]) -> BlockGrid {
        let min = if grid == Grid::Asymmetric { stored[1] } else { f16::ZERO };
        BlockGrid { scale: stored[0], min, grid, bits }
    }

    pub fn stored(&self) -> Vec<f16> {
        match self.grid {
            Grid::Asymmetric => vec![self.scale, self.min],
            Grid::Symmetric => vec![self.scale],
        }
    }

    fn offset(&self) -> f32 {
        match self.grid {
            Grid::Asymmetric => 0.0,
            Grid::Symmetric => ((1u32 << (self.bits - 1)) - 1) as f32,
        }
    }

    fn fast(&self) -> FastGrid {
        let scale = self.scale.to_f32();
        let max_code = match self.grid {
            Grid::Asymmetric => ((1u32 << self.bits) - 1) as f32,
            Grid::Symmetric => 2.0 * self.offset(),
        };
        // A zero scale (all weights of the tier equal and exactly representable) maps everything to one level.
        let inv_scale = if scale == 0.0 { 0.0 } else { 1.0 / scale };
        FastGrid { inv_scale, scale, min: self.min.to_f32(), offset: self.offset(), max_code }
    }

    pub fn code(&self, w: f32) -> u16 {
        self.fast().quantize(w).0
    }

    pub fn value(&self, code: u16) -> f32 {
        (code as f32 - self.offset()) * self.scale.to_f32() + self.min.to_f32()
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
                        let g = BlockGrid::from_stored(grid, bits, &q.params[p..p + grid.params_per_block()]);
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
    fn damaged_codes_are_an_error_not_a_panic() {
        let w = noisy(256);
        let mut q =
            quantize(&w, 2, 128, &TensorPlan::uniform(4, GroupSize::G(32), Grid::Asymmetric), &TierSource::Single);
        q.codes[0].packed.truncate(10);
        assert!(q.dequantize().unwrap_err().contains("truncated"));
    }

    #[test]
    fn symmetric_grids_hold_zero_and_asymmetric_2_bit_grids_may_not() {
        let w = [-0.3f32, -0.1, 0.05, 0.4];
        let sym = BlockGrid::fit(Grid::Symmetric, 2, -0.3, 0.4);
        assert_eq!(sym.value(sym.code(0.0)), 0.0);
        let asym = BlockGrid::fit(Grid::Asymmetric, 2, w[0], w[3]);
        assert!((0..4).all(|q| asym.value(q) != 0.0));
    }
}
