//! Evaluation (METHOD.md section 6): perplexity with its standard error, the original's 64-token `seed` loss,
//! and KL divergence against the unquantized model.

pub mod corpus;
pub mod perplexity;
pub mod seed;

pub use corpus::{WindowSpec, read_text, split_calibration, tokens_for, windows};
pub use perplexity::{Kld, KldStats, PplReport, ReferenceLogits, check_same_vocabulary, evaluate_ppl};
pub use seed::{SeedReport, evaluate_seed, seed_texts};

/// log Σ exp(row), with f64 sums.
pub(crate) fn log_sum_exp(row: &[f32]) -> f64 {
    let max = crate::math::max(row);
    max as f64 + crate::math::sum_exp_shifted(row, max).ln()
}

/// log Σ exp over a row's logits seen so far (`log_z`, −∞ before any) and `more`: the head applied a block of
/// vocabulary rows at a time.
pub(crate) fn add_log_sum_exp(log_z: f64, more: &[f32]) -> f64 {
    let block = log_sum_exp(more);
    let high = log_z.max(block);
    high + ((log_z - high).exp() + (block - high).exp()).ln()
}

/// log-softmax of one row of logits.
pub(crate) fn log_softmax(row: &[f32]) -> Vec<f32> {
    log_softmax_with(row, log_sum_exp(row))
}

pub(crate) fn log_softmax_with(row: &[f32], log_z: f64) -> Vec<f32> {
    row.iter().map(|&v| (v as f64 - log_z) as f32).collect()
}
