//! Quantizers: each turns a matrix, its plan and its tiers into the stored form (`stored::QuantizedTensor`).
//! `rtn`: min-max grids, round to nearest (the coder every grid quantizer shares). `least_squares`: grids chosen
//! by importance-weighted least squares, then the same coder. `gptq`: error feedback through the inverse Hessian,
//! on least-squares grids.

pub mod gptq;
pub mod least_squares;
pub mod rtn;

pub use super::spec::QuantizerKind;
use super::spec::TensorPlan;
use super::stored::QuantizedTensor;
use super::tiers::Granularity;
use crate::importance::CalibrationStats;

/// Makes the stored form of one matrix.
pub trait Quantizer: Send + Sync {
    /// Short name for labels and reports.
    fn name(&self) -> &'static str;
    /// Quantizes `w` (`[rows, cols]`, row-major) with the tiers `tiers` gives; `inputs` are the statistics of
    /// the matrix's inputs on calibration text, when there is one (quantizers that weigh errors use them).
    fn quantize(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        plan: &TensorPlan,
        tiers: &TierSource,
        inputs: InputStats,
    ) -> QuantizedTensor;
}

/// The quantizer a plan names.
pub fn for_plan(plan: &TensorPlan) -> &'static dyn Quantizer {
    match plan.quantizer {
        QuantizerKind::Rtn => &rtn::Rtn,
        QuantizerKind::LeastSquares => &least_squares::LeastSquares,
        QuantizerKind::Gptq => &gptq::Gptq,
    }
}

/// What calibration saw of one matrix's inputs x (`cols` features).
#[derive(Clone, Copy, Debug, Default)]
pub struct InputStats<'a> {
    /// E[x_j²] per input column.
    pub mean_square: Option<&'a [f32]>,
    /// E[x xᵀ] (`cols × cols`, row-major): GPTQ's Hessian, gathered only when a plan uses GPTQ.
    pub second_moment: Option<&'a [f32]>,
    /// GPTQ's update factor of `second_moment` (`gptq::update_factor`) when it was made beforehand: the pieces of
    /// a matrix, and the matrices that read one input, share one.
    pub update_factor: Option<&'a gptq::UpdateFactor>,
}

impl<'a> InputStats<'a> {
    /// The statistics of matrix `name` with `cols` inputs, where calibration recorded them with that width.
    pub fn of(calibration: Option<&'a CalibrationStats>, name: &str, cols: usize) -> Self {
        let Some(c) = calibration else { return InputStats::default() };
        let (mean_square, second_moment) = (c.column_weights(name, cols), c.second_moment(name, cols));
        InputStats { mean_square, second_moment, update_factor: None }
    }

    /// These statistics with GPTQ's update factor made beforehand; when it could not be made, without the second
    /// moment, so that GPTQ falls back to least squares as it would have found by itself.
    pub fn with_update_factor(self, factor: Option<&'a gptq::UpdateFactor>) -> Self {
        match factor {
            Some(u) => InputStats { update_factor: Some(u), ..self },
            None => InputStats { second_moment: None, ..self },
        }
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
