//! The stored form of a quantized matrix, whatever quantizer made it: each tier's integer codes packed at the
//! tier's width, f16 block parameters (scale, and min for the asymmetric grid) and the tier map; and the one
//! decoder back to weights. The packed export writes exactly these arrays.

use std::ops::Range;

use half::f16;

use super::pack::{self, BitReader, BitWriter};
use super::spec::{Grid, GroupSize, TensorPlan};
pub use super::tiers::MAX_TIERS;

/// Codes of the weights of one tier, in storage order, packed at the tier's width.
#[derive(Clone, Debug, PartialEq)]
pub struct TierCodes {
    pub bits: u8,
    pub count: usize,
    pub packed: crate::memory::Bytes,
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
    pub params: Params,
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

    /// Consecutive pieces of rows of one matrix, quantized on the same plan (with the same thresholds), as the
    /// whole matrix: what quantizing it whole makes, since blocks and tier units never straddle rows. Each tier's
    /// codes and the tier map are joined bit by bit, the block parameters in order.
    pub fn join_rows(pieces: impl IntoIterator<Item = QuantizedTensor>) -> QuantizedTensor {
        let pieces: Vec<QuantizedTensor> = pieces.into_iter().collect();
        let first = pieces.first().expect("at least one piece");
        assert!(pieces.iter().all(|q| q.plan == first.plan && q.cols == first.cols));
        let join = |bits_of: &dyn Fn(&QuantizedTensor) -> (&[u8], usize)| -> Vec<u8> {
            if pieces.iter().all(|q| bits_of(q).1.is_multiple_of(8)) {
                // Whole bytes each (pieces of 8k rows at one tier): a plain copy.
                let mut bytes = Vec::with_capacity(pieces.iter().map(|q| bits_of(q).1 / 8).sum());
                pieces.iter().for_each(|q| bytes.extend_from_slice(&bits_of(q).0[..bits_of(q).1 / 8]));
                return bytes;
            }
            let mut joined = BitWriter::default();
            pieces.iter().for_each(|q| joined.append_bytes(bits_of(q).0, bits_of(q).1));
            BitWriter::concat([&joined])
        };
        let codes = (0..first.codes.len())
            .map(|t| TierCodes {
                bits: first.codes[t].bits,
                count: pieces.iter().map(|q| q.codes[t].count).sum(),
                packed: join(&|q| (&q.codes[t].packed, q.codes[t].count * q.codes[t].bits as usize)).into(),
            })
            .collect();
        let map_bits = first.tier_map.bits as usize;
        let tier_map = TierMap {
            units: pieces.iter().map(|q| q.tier_map.units).sum(),
            bits: first.tier_map.bits,
            packed: join(&|q| (&q.tier_map.packed, q.tier_map.units * map_bits)).into(),
        };
        QuantizedTensor {
            rows: pieces.iter().map(|q| q.rows).sum(),
            cols: first.cols,
            plan: first.plan.clone(),
            tier_map,
            codes,
            params: Params(pieces.iter().flat_map(|q| q.params.bytes().iter().copied()).collect::<Vec<u8>>().into()),
            squared_error: pieces.iter().map(|q| q.squared_error).sum(),
            squared_norm: pieces.iter().map(|q| q.squared_norm).sum(),
        }
    }

    /// The weights the codes stand for, row-major. An inconsistent tensor (read from a damaged file) is an error
    /// naming what ran out, never a panic.
    pub fn dequantize(&self) -> Result<Vec<f32>, String> {
        self.decode_rows(Cursor::default(), 0..self.rows)
    }

    /// Rows `rows` dequantized (row-major), `cursor` being where row `rows.start` begins (`cursor_at`). Block by
    /// block: the block's tiers, each present tier's codes read in one tight loop and mapped to values, then the
    /// values merged back into storage order.
    pub fn decode_rows(&self, cursor: Cursor, rows: Range<usize>) -> Result<Vec<f32>, String> {
        let (k, cols) = (self.plan.tiers.len(), self.cols);
        self.check_map()?;
        if rows.end > self.rows || rows.start > rows.end {
            return Err(format!("rows {rows:?} of a {}-row matrix", self.rows));
        }
        // One block spanning the tensor: with a single tier, any rows decode with its one grid from where their
        // codes begin (an embedding row per token must not decode the whole matrix); with several, the block's
        // parameters follow the tiers present in the whole tensor, so it decodes whole.
        let part_of_one_block = self.plan.group_size == GroupSize::Tensor && rows.len() < self.rows;
        if part_of_one_block && k > 1 {
            let all = self.dequantize()?;
            return Ok(all[rows.start * cols..rows.end * cols].to_vec());
        }
        let base = rows.start * cols;
        let mut out = crate::memory::zeroed_f32(rows.len() * cols);
        let mut codes: Vec<BitReader> =
            self.codes.iter().zip(cursor.code_bits).map(|(c, bit)| BitReader::at(&c.packed, bit)).collect();
        let per_block = self.plan.grid.params_per_block();
        let mut next_param = if part_of_one_block { 0 } else { cursor.params * per_block };
        let mut scratch = Scratch::default();
        let mut values: [Vec<f32>; MAX_TIERS] = Default::default();
        let blocks = match part_of_one_block {
            true => vec![(base, rows.len() * cols)],
            false => self.plan.group_size.blocks_in(rows, cols),
        };
        for (start, len) in blocks {
            let counts = self.block_tiers(start, len, &mut scratch)?;
            for (t, tier) in self.plan.tiers.iter().enumerate().filter(|(t, _)| counts[*t] > 0) {
                scratch.codes.resize(counts[t], 0);
                if !codes[t].read_into(tier.bits as u32, &mut scratch.codes) {
                    return Err("codes truncated".into());
                }
                values[t].resize(counts[t], 0.0);
                if tier.bits == 16 {
                    values[t].iter_mut().zip(&scratch.codes).for_each(|(v, &c)| *v = f16::from_bits(c).to_f32());
                } else {
                    let mut stored = [f16::ZERO; 2];
                    for (j, value) in stored[..per_block].iter_mut().enumerate() {
                        *value = self.params.get(next_param + j).ok_or("block parameters truncated")?;
                    }
                    next_param += per_block;
                    let grid = BlockGrid::from_stored(self.plan.grid, tier.bits, &stored[..per_block]).fast();
                    values[t].iter_mut().zip(&scratch.codes).for_each(|(v, &c)| *v = grid.value(c));
                }
            }
            let block = &mut out[start - base..start - base + len];
            if k == 1 {
                block.copy_from_slice(&values[0]);
            } else {
                let mut next = [0usize; MAX_TIERS];
                for (w, &t) in block.iter_mut().zip(&scratch.tiers) {
                    let t = t as usize;
                    *w = values[t][next[t]];
                    next[t] += 1;
                }
            }
        }
        Ok(out)
    }

    /// Where row `row` begins in the stored arrays. Single-tier plans compute it; multi-tier plans count the tiers
    /// of every block before it, from `from` (a cursor at an earlier row `from_row`) on.
    pub fn cursor_at(&self, row: usize, from: (usize, Cursor)) -> Result<Cursor, String> {
        let (from_row, mut cursor) = from;
        if self.plan.tiers.len() == 1 {
            let bits = self.plan.tiers[0].bits as usize;
            let blocks = match self.plan.group_size {
                GroupSize::Tensor => usize::from(row > 0),
                GroupSize::Row => row,
                GroupSize::G(g) => row * self.cols.div_ceil(g),
            };
            let params = if bits == 16 { 0 } else { blocks };
            return Ok(Cursor {
                code_bits: std::array::from_fn(|t| if t == 0 { row * self.cols * bits } else { 0 }),
                params,
            });
        }
        self.check_map()?;
        let mut scratch = Scratch::default();
        for (start, len) in self.plan.group_size.blocks_in(from_row..row, self.cols) {
            let counts = self.block_tiers(start, len, &mut scratch)?;
            for (t, tier) in self.plan.tiers.iter().enumerate().filter(|(t, _)| counts[*t] > 0) {
                cursor.code_bits[t] += counts[t] * tier.bits as usize;
                cursor.params += usize::from(tier.bits < 16);
            }
        }
        Ok(cursor)
    }

    /// The tier map covers the plan's units.
    fn check_map(&self) -> Result<(), String> {
        let units = self.plan.granularity.units(self.rows, self.cols);
        if self.plan.tiers.len() > 1
            && (self.tier_map.units != units
                || self.tier_map.packed.len() < pack::packed_len(units, self.tier_map.bits))
        {
            return Err(format!("tier map truncated: {} bytes for {units} units", self.tier_map.packed.len()));
        }
        Ok(())
    }

    /// Fills `scratch.tiers` with the tier of each weight of the block at `start` (row-major) and returns how
    /// many weights each tier has in it.
    fn block_tiers(&self, start: usize, len: usize, scratch: &mut Scratch) -> Result<[usize; MAX_TIERS], String> {
        let (k, cols) = (self.plan.tiers.len(), self.cols);
        scratch.tiers.clear();
        scratch.tiers.resize(len, 0);
        if k == 1 {
            let mut counts = [0; MAX_TIERS];
            counts[0] = len;
            return Ok(counts);
        }
        if self.tier_map.units == self.rows * cols {
            scratch.codes.resize(len, 0);
            let bits = self.tier_map.bits as u32;
            if !BitReader::at(&self.tier_map.packed, start * bits as usize).read_into(bits, &mut scratch.codes) {
                return Err("tier map truncated".into());
            }
            scratch.tiers.iter_mut().zip(&scratch.codes).for_each(|(t, &c)| *t = c as u8);
        } else {
            // Run by run: the weights of one unit share its tier (a division and a bit read per run, not per weight).
            let granularity = self.plan.granularity;
            let mut i = 0;
            while i < len {
                let run = granularity.run_from(start + i, cols).clamp(1, len - i);
                scratch.tiers[i..i + run].fill(self.tier_map.get(granularity.unit_of(start + i, cols)));
                i += run;
            }
        }
        let mut counts = [0usize; MAX_TIERS];
        for &t in &scratch.tiers {
            counts[(t as usize).min(MAX_TIERS - 1)] += 1;
        }
        match (k..MAX_TIERS).find(|&t| counts[t] > 0) {
            Some(t) => Err(format!("tier {t} in the tier map of a {k}-tier plan")),
            None => Ok(counts),
        }
    }
}

/// Where a row begins in a matrix's stored arrays: bits of each tier's codes and block parameter sets before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    code_bits: [usize; MAX_TIERS],
    params: usize,
}

/// Buffers a decode reuses from block to block.
#[derive(Default)]
struct Scratch {
    tiers: Vec<u8>,
    codes: Vec<u16>,
}

/// A quantized matrix read a few rows at a time (the head by vocabulary blocks, embedding rows by token): for
/// multi-tier plans the cursor at every `ROW_STEP`-th row is found once, by one pass over the tier map.
#[derive(Debug)]
pub struct RowAccess {
    pub tensor: QuantizedTensor,
    pub shape: [usize; 2],
    checkpoints: std::sync::OnceLock<Result<Vec<Cursor>, String>>,
}

const ROW_STEP: usize = 16;

impl RowAccess {
    pub fn new(tensor: QuantizedTensor) -> RowAccess {
        RowAccess { shape: [tensor.rows, tensor.cols], tensor, checkpoints: Default::default() }
    }

    /// Rows `rows` dequantized, row-major.
    pub fn rows(&self, rows: Range<usize>) -> Result<Vec<f32>, String> {
        let t = &self.tensor;
        if rows.start == 0 || t.plan.tiers.len() == 1 || t.plan.group_size == GroupSize::Tensor {
            let cursor = t.cursor_at(rows.start, (0, Cursor::default()))?;
            return t.decode_rows(cursor, rows);
        }
        let checkpoints = self.checkpoints.get_or_init(|| {
            let mut at = Cursor::default();
            let mut out = vec![at];
            for row in (ROW_STEP..t.rows).step_by(ROW_STEP) {
                at = t.cursor_at(row, (row - ROW_STEP, at))?;
                out.push(at);
            }
            Ok(out)
        });
        let checkpoints = checkpoints.as_ref().map_err(Clone::clone)?;
        let step = (rows.start / ROW_STEP).min(checkpoints.len().saturating_sub(1));
        let cursor = t.cursor_at(rows.start, (step * ROW_STEP, checkpoints[step]))?;
        t.decode_rows(cursor, rows)
    }
}

/// f16 values as little-endian bytes, in memory or left in a mapped file (where they may sit at any offset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(crate::memory::Bytes);

impl Params {
    /// Bytes holding little-endian f16 values (an odd last byte is ignored).
    pub fn from_bytes(bytes: crate::memory::Bytes) -> Params {
        Params(bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<f16> {
        self.0.get(2 * i..2 * i + 2).map(|b| f16::from_le_bytes([b[0], b[1]]))
    }

    pub fn iter(&self) -> impl Iterator<Item = f16> + '_ {
        self.0.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]))
    }

    /// The stored bytes (what the packed export writes).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromIterator<f16> for Params {
    fn from_iter<I: IntoIterator<Item = f16>>(values: I) -> Params {
        Params(values.into_iter().flat_map(f16::to_le_bytes).collect::<Vec<u8>>().into())
    }
}

/// The tier of every unit, packed at ceil(log2 k) bits as the export stores it: a quarter byte per weight for
/// three tiers instead of a byte, which keeps a quantized SmolLM2 100 MB lighter in the explorer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierMap {
    pub units: usize,
    pub bits: u8,
    pub packed: crate::memory::Bytes,
}

impl TierMap {
    /// Empty (no map is stored) for single-tier plans.
    pub fn pack(unit_tiers: &[u8], tiers: usize) -> TierMap {
        let bits = super::tiers::index_bits(tiers);
        if bits == 0 {
            return TierMap::default();
        }
        TierMap { units: unit_tiers.len(), bits, packed: pack::pack_parallel(unit_tiers, bits).into() }
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
