//! Round-to-nearest quantization per (row, group of g weights) per tier (METHOD.md section 3).
//!
//! Inside each block (g consecutive weights of a row, a whole row, or the whole tensor), the weights of one tier
//! get their own grid. Asymmetric: `w ≈ q·scale + min`, q in [0, 2^b − 1], scale and min stored as f16 (the
//! min plays the zero point's role without rounding it to an integer). Symmetric: `w ≈ (q − m)·scale` with
//! m = 2^(b−1) − 1, zero a level, one f16 scale. 16 bits is fp16 passthrough. The f16 parameters are rounded
//! outward so every weight stays within half a step of its original.

use std::borrow::Cow;

use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::pack;
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

/// One quantized matrix: what the exporter writes and what evaluation uses.
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
    pub dequantized: Vec<f32>,
    /// Σ (w − q(w))² and Σ w², for the relative error views show.
    pub squared_error: f64,
    pub squared_norm: f64,
}

/// Quantizes `w` ([rows, cols], row-major) given each unit's tier (empty for single-tier plans).
pub fn quantize(w: &[f32], rows: usize, cols: usize, plan: &TensorPlan, unit_tiers: Vec<u8>) -> QuantizedTensor {
    let k = plan.tiers.len();
    assert!(k <= MAX_TIERS, "at most {MAX_TIERS} tiers");
    // Per-weight tiers (borrowed when the granularity already is per weight).
    let weight_tiers: Option<Cow<[u8]>> = match (k, plan.granularity) {
        (1, _) => None,
        (_, Granularity::Weight) => Some(Cow::Borrowed(unit_tiers.as_slice())),
        (_, g) => Some(Cow::Owned((0..w.len()).map(|i| unit_tiers[g.unit_of(i, cols)]).collect())),
    };
    // Blocks never straddle rows (except the one whole-tensor block), so row chunks quantize independently.
    let chunk_rows = match plan.group_size {
        GroupSize::Tensor => rows,
        _ => (CHUNK_WEIGHTS / cols).clamp(1, rows),
    };
    // Each chunk writes its dequantized weights straight into the result.
    let mut dequantized = crate::memory::zeroed_f32(w.len());
    let parts: Vec<Part> = dequantized
        .par_chunks_mut((chunk_rows * cols).max(1))
        .enumerate()
        .map(|(c, out)| {
            let r0 = c * chunk_rows;
            let offset = r0 * cols;
            let mut part = Part::new(k);
            for (start, len) in plan.group_size.blocks(out.len() / cols.max(1), cols) {
                let block = offset + start..offset + start + len;
                let tiers = weight_tiers.as_deref().map(|t| &t[block.clone()]);
                part.quantize_block(&w[block], tiers, plan, &mut out[start..start + len]);
            }
            (part.squared_error, part.squared_norm) = squared_error_and_norm(&w[offset..offset + out.len()], out);
            part
        })
        .collect();
    let params = parts.iter().flat_map(|p| p.params.iter().copied()).collect();
    let squared_error = parts.iter().map(|p| p.squared_error).sum();
    let squared_norm = parts.iter().map(|p| p.squared_norm).sum();
    // Each tier's codes are packed straight from the parts: no concatenated copy (56 MB for SmolLM2's embedding).
    let codes = plan
        .tiers
        .par_iter()
        .enumerate()
        .map(|(t, tier)| {
            let count = parts.iter().map(|p| p.codes[t].len()).sum();
            let all = parts.iter().flat_map(|p| p.codes[t].iter().copied());
            TierCodes { bits: tier.bits, count, packed: pack::pack_counted(all, tier.bits, count) }
        })
        .collect();
    drop(parts);
    drop(weight_tiers);
    QuantizedTensor {
        rows,
        cols,
        plan: plan.clone(),
        tier_map: TierMap::pack(&unit_tiers, k),
        codes,
        params,
        dequantized,
        squared_error,
        squared_norm,
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

/// The output of a run of consecutive blocks, in storage order.
struct Part {
    codes: Vec<Vec<u16>>,
    params: Vec<f16>,
    squared_error: f64,
    squared_norm: f64,
}

impl Part {
    fn new(k: usize) -> Part {
        Part { codes: vec![Vec::new(); k], params: Vec::new(), squared_error: 0.0, squared_norm: 0.0 }
    }

    /// One block: a min/max pass per tier, then one coding pass writing the dequantized weights into `out`.
    /// `tiers` is None for single-tier plans.
    fn quantize_block(&mut self, w: &[f32], tiers: Option<&[u8]>, plan: &TensorPlan, out: &mut [f32]) {
        let tier_at = |i: usize| tiers.map_or(0, |t| t[i] as usize);
        let (mut lo, mut hi) = ([f32::INFINITY; MAX_TIERS], [f32::NEG_INFINITY; MAX_TIERS]);
        for (i, &v) in w.iter().enumerate() {
            let t = tier_at(i);
            lo[t] = lo[t].min(v);
            hi[t] = hi[t].max(v);
        }
        // 16-bit tiers (and tiers absent from this block) pass weights through as f16 and store no parameters.
        let mut grids = [None; MAX_TIERS];
        for (t, tier) in plan.tiers.iter().enumerate() {
            if lo[t] <= hi[t] && tier.bits < 16 {
                let grid = BlockGrid::fit(plan.grid, tier.bits, lo[t], hi[t]);
                self.params.push(grid.scale);
                if plan.grid == Grid::Asymmetric {
                    self.params.push(grid.min);
                }
                grids[t] = Some(grid.fast());
            }
        }
        // Locals, not fields: the pushes below would otherwise force every update through memory.
        let codes = &mut self.codes;
        for (i, (&v, out)) in w.iter().zip(out).enumerate() {
            let t = tier_at(i);
            let (code, value) = match &grids[t] {
                Some(g) => g.quantize(v),
                None => {
                    let h = f16::from_f32(v);
                    (h.to_bits(), h.to_f32())
                }
            };
            codes[t].push(code);
            *out = value;
        }
    }
}

/// Σ (w − q)² and Σ w², in f32 lanes per 1024 weights summed in f64 (vectorizes; keeps whole-tensor sums exact
/// enough for the relative error the views show).
fn squared_error_and_norm(w: &[f32], q: &[f32]) -> (f64, f64) {
    let (mut error, mut norm) = (0f64, 0f64);
    for (w, q) in w.chunks(1024).zip(q.chunks(1024)) {
        let (mut e, mut n) = ([0f32; 8], [0f32; 8]);
        for (i, (&w, &q)) in w.iter().zip(q).enumerate() {
            e[i % 8] += (w - q) * (w - q);
            n[i % 8] += w * w;
        }
        error += e.iter().map(|&x| x as f64).sum::<f64>();
        norm += n.iter().map(|&x| x as f64).sum::<f64>();
    }
    (error, norm)
}

/// A block grid with its parameters unpacked to f32, for the hot loop.
#[derive(Clone, Copy, Debug)]
struct FastGrid {
    inv_scale: f32,
    scale: f32,
    min: f32,
    offset: f32,
    max_code: f32,
}

impl FastGrid {
    #[inline]
    fn quantize(&self, w: f32) -> (u16, f32) {
        // Non-negative before clamping, so adding 0.5 and truncating rounds to nearest.
        let code = ((w - self.min) * self.inv_scale + self.offset + 0.5).clamp(0.0, self.max_code) as u16;
        (code, (code as f32 - self.offset) * self.scale + self.min)
    }
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
                    let q = quantize(&w, rows, cols, &plan, vec![]);
                    let mut p = 0;
                    for (start, len) in group_size.blocks(rows, cols) {
                        let g = BlockGrid::from_stored(grid, bits, &q.params[p..p + grid.params_per_block()]);
                        p += grid.params_per_block();
                        let half_step = 0.5 * g.scale.to_f32() * (1.0 + 1e-5);
                        for i in start..start + len {
                            let err = (w[i] - q.dequantized[i]).abs();
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
        let q = quantize(&w, 1, 64, &TensorPlan::uniform(16, GroupSize::G(32), Grid::Asymmetric), vec![]);
        assert!(q.params.is_empty());
        for (a, b) in w.iter().zip(&q.dequantized) {
            assert_eq!(*b, f16::from_f32(*a).to_f32());
        }
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
