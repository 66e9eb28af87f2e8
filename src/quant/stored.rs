//! The stored form of a quantized matrix, whatever quantizer made it: each tier's integer codes packed at the
//! tier's width, f16 block parameters (scale, and min for the asymmetric grid) and the tier map; and the one
//! decoder back to weights. The packed export writes exactly these arrays.

use half::f16;

use super::pack::{self, BitReader};
use super::spec::{Grid, TensorPlan};
pub use super::tiers::MAX_TIERS;

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

impl QuantizedTensor {
    /// The dequantized `[rows, cols]` tensor; a damaged one is an error naming `name`.
    pub fn to_tensor(&self, name: &str) -> crate::Result<candle_core::Tensor> {
        let values = self.dequantize().map_err(|e| crate::Error::Inconsistent(format!("{name}: {e}")))?;
        Ok(candle_core::Tensor::from_vec(values, (self.rows, self.cols), &candle_core::Device::Cpu)?)
    }

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

/// A block grid with its parameters unpacked to f32, for the hot loop.
#[derive(Clone, Copy, Debug)]
pub struct FastGrid {
    pub(crate) inv_scale: f32,
    pub(crate) scale: f32,
    pub(crate) min: f32,
    pub(crate) offset: f32,
    pub(crate) max_code: f32,
}

impl FastGrid {
    #[inline(always)]
    pub(crate) fn quantize(&self, w: f32) -> (u16, f32) {
        // Non-negative before clamping, so adding 0.5 and truncating rounds to nearest (through i32: vectorizes).
        let code = ((w - self.min) * self.inv_scale + self.offset + 0.5).clamp(0.0, self.max_code) as i32 as u16;
        (code, self.value(code))
    }

    #[inline(always)]
    pub(crate) fn value(&self, code: u16) -> f32 {
        (code as f32 - self.offset) * self.scale + self.min
    }
}

/// One block's grid, with parameters already rounded to what is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockGrid {
    pub scale: f16,
    /// Asymmetric: the value of code 0. Symmetric: unused (zero).
    pub min: f16,
    pub grid: Grid,
    pub bits: u8,
}

impl BlockGrid {
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

    pub(crate) fn offset(&self) -> f32 {
        match self.grid {
            Grid::Asymmetric => 0.0,
            Grid::Symmetric => ((1u32 << (self.bits - 1)) - 1) as f32,
        }
    }

    pub(crate) fn fast(&self) -> FastGrid {
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
