//! What a strategy costs a player besides bits. The allocation minimises the sum over players at a bit budget;
//! any cost that is additive over tensors fits (weight error now; a measured sensitivity later).

use crate::error::{Error, Result};
use crate::quant::stored::QuantizedTensor;

pub trait Cost: Sync {
    /// The error of storing `w` (`[rows, cols]` of the tensor `name`) as `q`; `scores` are its importance.
    fn error(&self, name: &str, w: &[f32], scores: &[f32], q: &QuantizedTensor) -> Result<f64>;
}

/// Σ importance · (w − q(w))²: the importance-weighted weight error (METHOD.md section 5).
pub struct WeightedError;

impl Cost for WeightedError {
    fn error(&self, _name: &str, w: &[f32], scores: &[f32], q: &QuantizedTensor) -> Result<f64> {
        let dequantized = q.dequantize().map_err(Error::Inconsistent)?;
        Ok(w.iter().zip(&dequantized).zip(scores).map(|((w, d), s)| *s as f64 * ((w - d) as f64).powi(2)).sum())
    }
}
