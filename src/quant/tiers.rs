//! Tier specifications and the assignment of tiers from importance (METHOD.md section 2).

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const ALLOWED_BITS: [u8; 7] = [2, 3, 4, 5, 6, 8, 16];

/// A share of the weights (or units) and its bit width. Tiers are listed from most to least important.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub share: f64,
    pub bits: u8,
}

/// Shares from quantile thresholds: `[0.9, 0.7]` with bits `[8, 4, 2]` is 10% / 20% / 70%.
pub fn tiers_from_quantiles(quantiles: &[f64], bits: &[u8]) -> Result<Vec<Tier>> {
    if bits.len() != quantiles.len() + 1 {
        return Err(Error::InvalidArgument(format!(
            "{} thresholds need {} bit widths, got {}",
            quantiles.len(),
            quantiles.len() + 1,
            bits.len()
        )));
    }
    let mut bounds = vec![1.0];
    bounds.extend_from_slice(quantiles);
    bounds.push(0.0);
    if bounds.windows(2).any(|w| w[1] > w[0]) {
        return Err(Error::InvalidArgument(format!("thresholds {quantiles:?} must descend within [0, 1]")));
    }
    let tiers: Vec<Tier> = bounds.windows(2).zip(bits).map(|(w, &bits)| Tier { share: w[0] - w[1], bits }).collect();
    validate_tiers(&tiers)?;
    Ok(tiers)
}

/// The most tiers a plan may have (the coder keeps one stream per tier on the stack).
pub const MAX_TIERS: usize = 8;

pub fn validate_tiers(tiers: &[Tier]) -> Result<()> {
    if tiers.is_empty() {
        return Err(Error::InvalidArgument("at least one tier is needed".into()));
    }
    if tiers.len() > MAX_TIERS {
        return Err(Error::InvalidArgument(format!("{} tiers: at most {} are supported", tiers.len(), MAX_TIERS)));
    }
    for t in tiers {
        if !ALLOWED_BITS.contains(&t.bits) {
            return Err(Error::InvalidArgument(format!("{} bits is not one of {ALLOWED_BITS:?}", t.bits)));
        }
        if !(0.0..=1.0).contains(&t.share) || !t.share.is_finite() {
            return Err(Error::InvalidArgument(format!("tier share {} must lie in [0, 1]", t.share)));
        }
    }
    let sum: f64 = tiers.iter().map(|t| t.share).sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(Error::InvalidArgument(format!("tier shares sum to {sum}, not 1")));
    }
    Ok(())
}

/// Bits of a plain (fixed-width) tier index for `k` tiers.
pub fn index_bits(k: usize) -> u8 {
    if k <= 1 { 0 } else { (usize::BITS - (k - 1).leading_zeros()) as u8 }
}

/// Units that share one tier decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Granularity {
    /// Every weight its own tier (the original); needs a per-weight tier map.
    Weight,
    /// One tier per G consecutive weights of a row, by the group's mean importance.
    Group(usize),
    /// One tier per output row.
    Channel,
    /// One tier per matrix.
    Tensor,
}

impl Granularity {
    /// Number of units of a `[rows, cols]` matrix.
    pub fn units(self, rows: usize, cols: usize) -> usize {
        match self {
            Granularity::Weight => rows * cols,
            Granularity::Group(g) => rows * cols.div_ceil(g),
            Granularity::Channel => rows,
            Granularity::Tensor => 1,
        }
    }

    /// The unit of weight `index` (row-major) of a `[rows, cols]` matrix.
    #[inline]
    pub fn unit_of(self, index: usize, cols: usize) -> usize {
        match self {
            Granularity::Weight => index,
            Granularity::Group(g) => (index / cols) * cols.div_ceil(g) + (index % cols) / g,
            Granularity::Channel => index / cols,
            Granularity::Tensor => 0,
        }
    }

    /// How many weights from `index` on (row-major, `cols` per row) share its unit: a unit never spans rows
    /// but a whole tensor's.
    #[inline]
    pub fn run_from(self, index: usize, cols: usize) -> usize {
        let col = index % cols.max(1);
        match self {
            Granularity::Weight => 1,
            Granularity::Group(g) => (g.max(1) - col % g.max(1)).min(cols - col),
            Granularity::Channel => cols - col,
            Granularity::Tensor => usize::MAX,
        }
    }

    /// Mean importance of every unit (borrowed when units are weights).
    pub fn unit_scores(self, scores: &[f32], cols: usize) -> std::borrow::Cow<'_, [f32]> {
        use std::borrow::Cow;
        match self {
            Granularity::Weight => Cow::Borrowed(scores),
            Granularity::Tensor => Cow::Owned(vec![mean(scores)]),
            Granularity::Channel => Cow::Owned(scores.chunks_exact(cols).map(mean).collect()),
            Granularity::Group(g) => {
                Cow::Owned(scores.chunks_exact(cols).flat_map(|row| row.chunks(g).map(mean)).collect())
            }
        }
    }
}

fn mean(v: &[f32]) -> f32 {
    (v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64) as f32
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Granularity::Weight => write!(f, "weight"),
            Granularity::Group(g) => write!(f, "group{g}"),
            Granularity::Channel => write!(f, "channel"),
            Granularity::Tensor => write!(f, "tensor"),
        }
    }
}

impl From<Granularity> for String {
    fn from(g: Granularity) -> String {
        g.to_string()
    }
}

impl TryFrom<String> for Granularity {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "weight" => Ok(Granularity::Weight),
            "channel" => Ok(Granularity::Channel),
            "tensor" => Ok(Granularity::Tensor),
            "group32" => Ok(Granularity::Group(32)),
            "group64" => Ok(Granularity::Group(64)),
            "group128" => Ok(Granularity::Group(128)),
            other => {
                Err(format!("granularity `{other}` is not one of weight, group32, group64, group128, channel, tensor"))
            }
        }
    }
}

/// Thresholds (importance values) that split `units` into tiers with the given shares, most important first.
/// Each is an exact order statistic (the same value a sort would give), found in O(n) by `order_statistics`.
pub fn thresholds(units: &[f32], tiers: &[Tier]) -> Vec<f32> {
    let select = |ranks: &[usize]| Ok::<_, std::convert::Infallible>(order_statistics(units, ranks));
    match thresholds_from(units.len(), tiers, select) {
        Ok(thresholds) => thresholds,
        Err(never) => match never {},
    }
}

/// `thresholds` over units that are not in memory: `pass` hands every unit to its argument, a chunk at a time
/// (in any order), and is called twice, once per histogram of `order_statistics_by_histogram`'s method. The same
/// thresholds, exactly. None when there are no units.
pub fn thresholds_streamed<E>(tiers: &[Tier], pass: &mut Pass<E>) -> Result<Option<Vec<f32>>, E> {
    let high = high_histogram(pass)?;
    let n = high.iter().sum::<u64>() as usize;
    if n == 0 {
        return Ok(None);
    }
    thresholds_from(n, tiers, |ranks| select_streamed(ranks, &high, pass)).map(Some)
}

/// Hands every value to its argument, a chunk at a time.
pub type Pass<'a, E> = dyn FnMut(&mut dyn FnMut(&[f32])) -> Result<(), E> + 'a;

const KEY_BINS: usize = 1 << 16;

/// Counts of the high 16 bits of every value's order key.
fn high_histogram<E>(pass: &mut Pass<E>) -> Result<Vec<u64>, E> {
    let mut high = vec![0u64; KEY_BINS];
    pass(&mut |chunk| chunk.iter().for_each(|&v| high[(order_key(v) >> 16) as usize] += 1))?;
    Ok(high)
}

/// The thresholds of `n` units: the ranks the tiers' shares fall on, their values from `select`.
fn thresholds_from<E>(
    n: usize,
    tiers: &[Tier],
    select: impl FnOnce(&[usize]) -> Result<Vec<f32>, E>,
) -> Result<Vec<f32>, E> {
    let mut cumulative = 0.0;
    let mut ranks = Vec::new();
    let mut out: Vec<Option<f32>> = Vec::with_capacity(tiers.len().saturating_sub(1));
    for tier in &tiers[..tiers.len() - 1] {
        cumulative += tier.share;
        // The first `above` units in descending order belong to this tier or a more important one.
        let above = ((cumulative * n as f64).round() as usize).min(n);
        out.push(match above {
            0 => Some(f32::INFINITY),
            a if a >= n => Some(f32::NEG_INFINITY),
            // Ascending order: rank n - above is the smallest value that is still "above".
            a => {
                ranks.push(n - a);
                None
            }
        });
    }
    let mut selected = select(&ranks)?.into_iter();
    Ok(out.into_iter().map(|t| t.unwrap_or_else(|| selected.next().expect("one value per rank"))).collect())
}

/// The values of rank `ranks[i]` (0-based, ascending in `f32::total_cmp` order) of `values`, without reordering
/// them. A sample of the values brackets each rank with a narrow range of values; one streaming pass counts the
/// values below each range and gathers the few inside it (about 2%), and a selection among those gives the exact
/// value. A rank the sample misjudged (its range does not hold it) falls back to `order_statistics_by_histogram`.
/// The sample only decides how fast the answer comes, never what it is.
pub fn order_statistics(values: &[f32], ranks: &[usize]) -> Vec<f32> {
    assert!(ranks.iter().all(|&r| r < values.len()), "rank beyond the values");
    if values.len() <= 1 << 15 {
        let mut keys: Vec<u32> = values.iter().map(|&v| order_key(v)).collect();
        return ranks.iter().map(|&r| from_order_key(*keys.select_nth_unstable(r).1)).collect();
    }
    let samples = (values.len() / 64).clamp(1 << 10, 1 << 14);
    let ranges = sample_ranges(values, ranks, samples);
    let gathered = gather_ranges(values, &ranges);
    let selected: Vec<Option<f32>> = ranks
        .iter()
        .zip(gathered)
        .map(|(&rank, (below, mut inside))| match rank.checked_sub(below) {
            Some(r) if r < inside.len() => Some(from_order_key(*inside.select_nth_unstable(r).1)),
            _ => None,
        })
        .collect();
    // All misjudged ranks in one call: the histogram's two passes are made once.
    let misjudged: Vec<usize> = ranks.iter().zip(&selected).filter(|(_, s)| s.is_none()).map(|(&r, _)| r).collect();
    let mut fallback = order_statistics_by_histogram(values, &misjudged).into_iter();
    selected.into_iter().map(|s| s.unwrap_or_else(|| fallback.next().expect("one value per misjudged rank"))).collect()
}

/// For each rank, a range of order keys `[lo, hi]` that very likely holds it: the sample's quantiles five
/// standard deviations (of a sample quantile's position) either side. Samples sit at fixed pseudo-random
/// positions, so results and timings repeat, and no stride can alias with the rows of a matrix.
fn sample_ranges(values: &[f32], ranks: &[usize], samples: usize) -> Vec<(u32, u32)> {
    let n = values.len();
    let mut keys: Vec<u32> = (0..samples).map(|i| order_key(values[sample_position(i, n)])).collect();
    // A handful of selections in the sample cost less than sorting it, and give the same keys.
    let mut sample_at = |i: usize| *keys.select_nth_unstable(i).1;
    ranks
        .iter()
        .map(|&rank| {
            let p = rank as f64 / n as f64;
            let position = p * samples as f64;
            let margin = 5.0 * (samples as f64 * p * (1.0 - p)).sqrt() + 4.0;
            let lo = position - margin;
            let hi = position + margin;
            let lo = if lo < 0.0 { 0 } else { sample_at(lo as usize) };
            let hi = if hi >= (samples - 1) as f64 { u32::MAX } else { sample_at(hi as usize + 1) };
            (lo, hi)
        })
        .collect()
}

/// Where the `i`-th sample of `n` values is taken (a multiplicative hash: fixed, and spread over the values).
fn sample_position(i: usize, n: usize) -> usize {
    let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h ^ (h >> 29)) % n as u64) as usize
}

/// For each range, how many values lie below it and the order keys of those inside it.
fn gather_ranges(values: &[f32], ranges: &[(u32, u32)]) -> Vec<(usize, Vec<u32>)> {
    values.par_chunks(1 << 18).map(|chunk| gather_chunk(chunk, ranges)).reduce(
        || vec![(0, Vec::new()); ranges.len()],
        |mut a, b| {
            for ((below, inside), (more, extra)) in a.iter_mut().zip(b) {
                *below += more;
                inside.extend(extra);
            }
            a
        },
    )
}

crate::math::dispatch! {
    /// `gather_ranges` over one chunk, 64 values at a time: their order keys, the count below each range, and
    /// the few keys inside it. Every key is written to a buffer whose cursor moves only past those inside: no
    /// branch depends on the values (about one group of eight in seven holds a key inside).
    pub fn gather_chunk(chunk: &[f32], ranges: &[(u32, u32)]) -> Vec<(usize, Vec<u32>)> {
        let mut out = vec![(0usize, Vec::new()); ranges.len()];
        let (mut keys, mut found) = ([0u32; 64], [0u32; 64]);
        for block in chunk.chunks(64) {
            let keys = &mut keys[..block.len()];
            keys.iter_mut().zip(block).for_each(|(k, &v)| *k = order_key(v));
            for ((below, inside), &(lo, hi)) in out.iter_mut().zip(ranges) {
                *below += keys.iter().map(|&k| (k < lo) as u32).sum::<u32>() as usize;
                let mut n = 0;
                for &k in keys.iter() {
                    found[n % 64] = k; // n is at most the key's index here; the modulo spares the bounds check
                    n += (k.wrapping_sub(lo) <= hi.wrapping_sub(lo)) as usize;
                }
                inside.extend_from_slice(&found[..n]);
            }
        }
        out
    }
}

/// `order_statistics` by histograms, for any input: a parallel histogram of the high 16 bits of each value's
/// order key finds the bucket holding each rank, and a second pass histograms the low 16 bits inside those
/// buckets. Two streaming passes and no copy of the values.
pub fn order_statistics_by_histogram(values: &[f32], ranks: &[usize]) -> Vec<f32> {
    if ranks.is_empty() {
        return Vec::new();
    }
    assert!(ranks.iter().all(|&r| r < values.len()), "rank beyond the values");
    let high = histogram(values, KEY_BINS, |key| Some((key >> 16) as usize));
    let low = |buckets: &[u32]| {
        Ok::<_, std::convert::Infallible>(histogram(values, buckets.len() * KEY_BINS, |key| low_bin(buckets, key)))
    };
    match select_in_buckets(ranks, &high, low) {
        Ok(values) => values,
        Err(never) => match never {},
    }
}

/// The values of `ranks` given the high histogram: a second pass histograms the low 16 bits inside the buckets
/// that hold them.
fn select_streamed<E>(ranks: &[usize], high: &[u64], pass: &mut Pass<E>) -> Result<Vec<f32>, E> {
    select_in_buckets(ranks, high, |buckets| {
        let mut low = vec![0u64; buckets.len() * KEY_BINS];
        pass(&mut |chunk| {
            for &v in chunk {
                if let Some(bin) = low_bin(buckets, order_key(v)) {
                    low[bin] += 1;
                }
            }
        })?;
        Ok(low)
    })
}

/// The values of `ranks`: the high histogram locates each rank's bucket (the high 16 bits of its order key),
/// `low_histogram` counts the low 16 bits of the keys inside those buckets (bucket slot by slot, `low_bin`), and
/// each rank's key is located there.
fn select_in_buckets<E>(
    ranks: &[usize],
    high: &[u64],
    low_histogram: impl FnOnce(&[u32]) -> Result<Vec<u64>, E>,
) -> Result<Vec<f32>, E> {
    if ranks.is_empty() {
        return Ok(Vec::new());
    }
    let located: Vec<(u32, usize)> = ranks.iter().map(|&r| locate(high, r)).collect();
    let mut buckets: Vec<u32> = located.iter().map(|(b, _)| *b).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let low = low_histogram(&buckets)?;
    Ok(located
        .iter()
        .map(|&(bucket, rank_in_bucket)| {
            let slot = buckets.iter().position(|&b| b == bucket).expect("bucket listed");
            let (low_bits, _) = locate(&low[slot * KEY_BINS..(slot + 1) * KEY_BINS], rank_in_bucket);
            from_order_key((bucket << 16) | low_bits)
        })
        .collect())
}

/// Where `key` counts in the low histogram of `buckets`, if its bucket is one of them.
fn low_bin(buckets: &[u32], key: u32) -> Option<usize> {
    let slot = buckets.iter().position(|&b| b == key >> 16)?;
    Some(slot * KEY_BINS + (key & 0xFFFF) as usize)
}

/// Counts of `bin(order key)` over `bins` bins: one histogram per thread's share of the values, then summed.
fn histogram(values: &[f32], bins: usize, bin: impl Fn(u32) -> Option<usize> + Sync) -> Vec<u64> {
    let piece = values.len().div_ceil(rayon::current_num_threads()).max(1 << 20);
    values
        .par_chunks(piece)
        .map(|chunk| {
            let mut counts = vec![0u64; bins];
            for &v in chunk {
                if let Some(b) = bin(order_key(v)) {
                    counts[b] += 1;
                }
            }
            counts
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0; bins])
}

/// The bin holding rank `rank`, and the rank within that bin.
fn locate(counts: &[u64], rank: usize) -> (u32, usize) {
    let mut below = 0usize;
    for (bin, &count) in counts.iter().enumerate() {
        if rank < below + count as usize {
            return (bin as u32, rank - below);
        }
        below += count as usize;
    }
    unreachable!("rank {rank} beyond {below} counted values")
}

/// A u32 whose unsigned order is `f32::total_cmp`'s order.
#[inline(always)]
fn order_key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 }
}

fn from_order_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 { key & 0x7FFF_FFFF } else { !key })
}

/// Tier index of a unit: the first tier whose threshold it reaches.
#[inline]
pub fn tier_of(score: f32, thresholds: &[f32]) -> u8 {
    // Thresholds descend, so the tier is the number of thresholds above the score (branch-free count).
    thresholds.iter().map(|t| (score < *t) as u8).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_thresholds_are_the_in_memory_ones() {
        let tiers = tiers_from_quantiles(&[0.9, 0.7], &[8, 4, 2]).unwrap();
        // Many ties and a spread of magnitudes, in chunks of uneven sizes.
        let units: Vec<f32> =
            (0..100_003u32).map(|i| ((i.wrapping_mul(2_654_435_761) >> 12) % 5000) as f32 * 1e-4 + 1e-9).collect();
        let mut passes = 0;
        let streamed = thresholds_streamed(&tiers, &mut |each| {
            passes += 1;
            units.chunks(777).for_each(&mut *each);
            Ok::<_, ()>(())
        });
        assert_eq!(streamed.unwrap(), Some(thresholds(&units, &tiers)));
        assert_eq!(passes, 2);
        let empty = thresholds_streamed(&tiers, &mut |_| Ok::<_, ()>(()));
        assert_eq!(empty.unwrap(), None);
    }

    #[test]
    fn quantile_thresholds_give_the_shares() {
        let tiers = tiers_from_quantiles(&[0.9, 0.7], &[8, 4, 2]).unwrap();
        let units: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let original = units.clone();
        let th = thresholds(&units, &tiers);
        let mut counts = [0; 3];
        for s in original {
            counts[tier_of(s, &th) as usize] += 1;
        }
        assert_eq!(counts, [100, 200, 700]);
    }

    #[test]
    fn order_statistics_equal_a_sort() {
        // Negative, zero, repeated and widely spread values, more than one histogram chunk.
        let values: Vec<f32> = (0..200_003u64)
            .map(|i| {
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                match i % 5 {
                    0 => 0.0,
                    1 => -(h as f32) * 1e-3,
                    2 => 3.25,
                    _ => (h as f32).sqrt() * 1e-6,
                }
            })
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f32::total_cmp);
        let ranks = [0, 1, 17, 40_000, 40_001, 100_000, 160_002, 199_999, 200_002];
        let want: Vec<u32> = ranks.iter().map(|&r| sorted[r].to_bits()).collect();
        let bits = |v: Vec<f32>| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(order_statistics(&values, &ranks)), want);
        // The fallback, on its own.
        assert_eq!(bits(order_statistics_by_histogram(&values, &ranks)), want);
        // Small inputs are selected directly.
        let small = &values[..1000];
        let mut sorted_small = small.to_vec();
        sorted_small.sort_by(f32::total_cmp);
        assert_eq!(
            bits(order_statistics(small, &[0, 500, 999])),
            bits(vec![sorted_small[0], sorted_small[500], sorted_small[999]])
        );
    }

    #[test]
    fn a_misleading_sample_still_gives_exact_order_statistics() {
        // Every sampled position holds a huge value, so the sample's brackets miss the middle ranks (n/4, n/2) and
        // both take one histogram fallback; the lowest and the top ranks are still bracketed by the sample.
        let n = 1 << 18;
        let mut values: Vec<f32> = (0..n).map(|i| (i % 1009) as f32 - 500.0).collect();
        for i in 0..(n / 64).clamp(1 << 10, 1 << 14) {
            values[sample_position(i, n)] = 1e9;
        }
        let mut sorted = values.clone();
        sorted.sort_by(f32::total_cmp);
        let ranks = [0, 1000, n / 4, n / 2, n - 1];
        let got = order_statistics(&values, &ranks);
        let want: Vec<f32> = ranks.iter().map(|&r| sorted[r]).collect();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(got[4], 1e9);
    }

    #[test]
    fn a_run_is_every_weight_that_shares_the_unit() {
        let (rows, cols) = (3, 10);
        for granularity in [Granularity::Weight, Granularity::Group(4), Granularity::Channel, Granularity::Tensor] {
            for index in 0..rows * cols {
                let unit = granularity.unit_of(index, cols);
                let same = (index..rows * cols).take_while(|&i| granularity.unit_of(i, cols) == unit).count();
                let run = granularity.run_from(index, cols).min(rows * cols - index);
                assert_eq!(run, same, "{granularity:?} at {index}");
            }
        }
    }

    #[test]
    fn impossible_tiers_are_refused() {
        assert!(tiers_from_quantiles(&[0.7, 0.9], &[8, 4, 2]).is_err());
        assert!(tiers_from_quantiles(&[0.9], &[8, 4, 2]).is_err());
        assert!(validate_tiers(&[Tier { share: 0.5, bits: 4 }, Tier { share: 0.4, bits: 2 }]).is_err());
        assert!(validate_tiers(&[Tier { share: 1.0, bits: 7 }]).is_err());
        assert_eq!(index_bits(3), 2);
        assert_eq!(index_bits(2), 1);
        assert_eq!(index_bits(5), 3);
    }
}
