//! Tier specifications and the assignment of tiers from importance (METHOD.md section 2).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const ALLOWED_BITS: [u8; 7] = [2, 3, 4, 5, 6, 8, 16];

/// A share of the weights (or units) and its bit width. Tiers are listed from most to least important.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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

pub fn validate_tiers(tiers: &[Tier]) -> Result<()> {
    if tiers.is_empty() {
        return Err(Error::InvalidArgument("at least one tier is needed".into()));
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
/// O(n) selection per threshold instead of a sort; `units` is reordered.
pub fn thresholds(units: &mut [f32], tiers: &[Tier]) -> Vec<f32> {
    let n = units.len();
    let mut cumulative = 0.0;
    let mut out = Vec::with_capacity(tiers.len().saturating_sub(1));
    let mut upper = n; // selection works on the still-unselected prefix, shrinking as we go.
    for tier in &tiers[..tiers.len() - 1] {
        cumulative += tier.share;
        // The first `above` units in descending order belong to this tier or a more important one.
        let above = ((cumulative * n as f64).round() as usize).min(n);
        if above == 0 {
            out.push(f32::INFINITY);
            continue;
        }
        if above >= n {
            out.push(f32::NEG_INFINITY);
            continue;
        }
        // Ascending order: index n - above is the smallest value that is still "above".
        let k = n - above;
        let slice = &mut units[..upper];
        let (_, kth, _) = slice.select_nth_unstable_by(k, f32::total_cmp);
        out.push(*kth);
        upper = k + 1;
    }
    out
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
    fn quantile_thresholds_give_the_shares() {
        let tiers = tiers_from_quantiles(&[0.9, 0.7], &[8, 4, 2]).unwrap();
        let mut units: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let original = units.clone();
        let th = thresholds(&mut units, &tiers);
        let mut counts = [0; 3];
        for s in original {
            counts[tier_of(s, &th) as usize] += 1;
        }
        assert_eq!(counts, [100, 200, 700]);
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
