//! Quantizers: each turns a matrix, its plan and its tiers into the stored form (`stored::QuantizedTensor`).
//! `rtn`: min-max grids, round to nearest (the coder every grid quantizer shares). `least_squares`: grids chosen
//! by importance-weighted least squares, then the same coder.

pub mod least_squares;
pub mod rtn;

pub use super::spec::QuantizerKind;
use super::spec::TensorPlan;
use super::stored::QuantizedTensor;
use super::tiers::Granularity;

/// Makes the stored form of one matrix.
pub trait Quantizer: Send + Sync {
    /// Short name for labels and reports.
    fn name(&self) -> &'static str;
    /// Quantizes `w` (`[rows, cols]`, row-major) with the tiers `tiers` gives; `columns` is E[x²] of each input
    /// column on calibration text, when there is one (quantizers that weigh errors use it).
    fn quantize(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        plan: &TensorPlan,
        tiers: &TierSource,
        columns: Option<&[f32]>,
    ) -> QuantizedTensor;
}

/// The quantizer a plan names.
pub fn for_plan(plan: &TensorPlan) -> &'static dyn Quantizer {
    match plan.quantizer {
        QuantizerKind::Rtn => &rtn::Rtn,
        QuantizerKind::LeastSquares => &least_squares::LeastSquares,
    }
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
    pub(crate) fn fill(&self, granularity: Granularity, cols: usize, first: usize, out: &mut [u8]) {
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
