//! Perplexity over non-overlapping windows, and KL divergence against a recorded reference (llama.cpp style).

use std::time::Instant;

use half::f16;
use rayon::prelude::*;
use serde::Serialize;

use super::{log_softmax, log_softmax_with, log_sum_exp};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Model, argmax};

/// Rows of logits computed at once: 128 x 49152 f32 is 25 MB for SmolLM2, against 100 MB for a whole window.
const HEAD_ROWS: usize = 128;
/// Windows that go through a lazily dequantized model together (their hidden states are ~1 MB each).
const LAZY_GROUP: usize = 16;

#[derive(Clone, Debug, Serialize)]
pub struct PplReport {
    pub windows: usize,
    pub tokens_scored: usize,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    /// Standard error of that mean.
    pub nll_stderr: f64,
    pub ppl: f64,
    pub seconds: f64,
    /// Tokens run through the model (scored or not) per second.
    pub tokens_per_second: f64,
    pub kld: Option<KldStats>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct KldStats {
    /// Mean KL(reference || model) per scored token (nats).
    pub mean: f64,
    pub p99: f64,
    /// Share of scored tokens where both models' argmax agree.
    pub top1_agreement: f64,
}

/// The reference model's log-probabilities at every scored position, kept as f16 to halve the memory.
pub struct ReferenceLogits {
    windows: Vec<Vec<f16>>,
    vocab: usize,
}

/// What to do about KL divergence during an evaluation.
pub enum Kld<'a> {
    Skip,
    /// Keep this model's log-probabilities as the reference for later runs.
    Record,
    Against(&'a ReferenceLogits),
}

/// Per scored token: NLL, and with a reference, KL and whether the argmax agrees.
struct TokenScore {
    nll: f64,
    kl: f64,
    top1_agrees: bool,
}

pub fn evaluate_ppl(
    model: &Model,
    windows: &[Vec<u32>],
    kld: Kld,
    job: &Job,
) -> Result<(PplReport, Option<ReferenceLogits>)> {
    let start = Instant::now();
    let mut scores: Vec<TokenScore> = Vec::new();
    let mut recorded = Vec::new();
    let head = model.head()?;
    let vocab = head.dim(0)?;
    if let Kld::Against(reference) = &kld {
        if reference.windows.len() < windows.len() {
            return Err(Error::InvalidArgument("the KLD reference holds fewer windows than this evaluation".into()));
        }
        if reference.vocab != vocab {
            return Err(Error::InvalidArgument("the KLD reference has another vocabulary size".into()));
        }
    }
    // A model with lazy weights takes its windows in groups, so each layer is made once per group.
    let group = if model.lazy.is_some() { LAZY_GROUP } else { 1 };
    for (g, chunk) in windows.chunks(group).enumerate() {
        job.checkpoint()?;
        let hiddens = model.forward_hidden(&chunk.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        for (j, (window, hidden)) in chunk.iter().zip(hiddens).enumerate() {
            let w = g * group + j;
            let scored = window.len() - 1;
            let reference = match &kld {
                Kld::Against(r) => Some(&r.windows[w][..]),
                _ => None,
            };
            let record = matches!(kld, Kld::Record);
            let blocks: Vec<(Vec<TokenScore>, Vec<f16>)> = (0..scored.div_ceil(HEAD_ROWS))
                .into_par_iter()
                .map(|b| {
                    let rows = b * HEAD_ROWS..scored.min((b + 1) * HEAD_ROWS);
                    let logits = model.logits(&hidden.narrow(0, rows.start, rows.len())?, &head)?;
                    with_f32_slice(&logits, |logits| {
                        let rows_of = || rows.clone().zip(logits.chunks_exact(vocab));
                        let scores = rows_of()
                            .map(|(i, row)| {
                                score_token(row, window[i + 1], reference.map(|r| &r[i * vocab..][..vocab]))
                            })
                            .collect();
                        let recorded = if record {
                            rows_of().flat_map(|(_, row)| log_softmax(row).into_iter().map(f16::from_f32)).collect()
                        } else {
                            Vec::new()
                        };
                        (scores, recorded)
                    })
                })
                .collect::<Result<_>>()?;
            let mut window_record = Vec::with_capacity(if record { scored * vocab } else { 0 });
            for (block_scores, block_record) in blocks {
                scores.extend(block_scores);
                window_record.extend(block_record);
            }
            if record {
                recorded.push(window_record);
            }
            let running_nll = scores.iter().map(|s| s.nll).sum::<f64>() / scores.len() as f64;
            job.report("evaluate", w as u64 + 1, windows.len() as u64, Some(running_nll.exp()));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let tokens_run: usize = windows.iter().map(|w| w.len()).sum();
    let nlls: Vec<f64> = scores.iter().map(|s| s.nll).collect();
    let (nll, nll_stderr) = mean_and_stderr(&nlls);
    check_finite_result(model, "mean NLL", nll)?;
    let kld_stats = matches!(kld, Kld::Against(_)).then(|| kld_stats(&scores));
    let report = PplReport {
        windows: windows.len(),
        tokens_scored: scores.len(),
        nll,
        nll_stderr,
        ppl: nll.exp(),
        seconds,
        tokens_per_second: tokens_run as f64 / seconds,
        kld: kld_stats,
    };
    let reference = matches!(kld, Kld::Record).then_some(ReferenceLogits { windows: recorded, vocab });
    Ok((report, reference))
}

fn score_token(row: &[f32], target: u32, reference: Option<&[f16]>) -> TokenScore {
    // One log-sum-exp pass serves both the NLL and the log-probabilities the KL needs.
    let log_z = log_sum_exp(row);
    let nll = log_z - row[target as usize] as f64;
    let Some(reference) = reference else { return TokenScore { nll, kl: 0.0, top1_agrees: true } };
    let log_q = log_softmax_with(row, log_z);
    let mut kl = 0.0f64;
    let mut best_ref = 0;
    for (i, (p, q)) in reference.iter().zip(&log_q).enumerate() {
        let log_p = p.to_f32();
        if log_p > reference[best_ref].to_f32() {
            best_ref = i;
        }
        kl += (log_p as f64).exp() * (log_p - q) as f64;
    }
    TokenScore { nll, kl: kl.max(0.0), top1_agrees: best_ref == argmax(row) }
}

/// KLD compares distributions over the same tokens: the reference must share the model's vocabulary.
pub fn check_same_vocabulary(model: &Model, reference: &Model) -> Result<()> {
    let (a, b) = (model.architecture.vocab_size(), reference.architecture.vocab_size());
    if a != b || model.tokenizer.get_vocab(true) != reference.tokenizer.get_vocab(true) {
        return Err(Error::InvalidArgument(format!(
            "--reference {}: its vocabulary ({b} tokens) is not the model's ({a} tokens), so KLD cannot compare them",
            reference.source.display()
        )));
    }
    Ok(())
}

/// NaN or infinity from an evaluation is an error naming the model, never a result.
pub(crate) fn check_finite_result(model: &Model, what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value.exp().is_finite() {
        return Ok(());
    }
    Err(Error::NotFinite(format!(
        "{}: the evaluation gave a {what} of {value}: the model's outputs overflow or are not numbers",
        model.source.display()
    )))
}

pub(crate) fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

fn kld_stats(scores: &[TokenScore]) -> KldStats {
    let mut kl: Vec<f64> = scores.iter().map(|s| s.kl).collect();
    kl.sort_by(f64::total_cmp);
    let p99_index = ((0.99 * kl.len() as f64).ceil() as usize).clamp(1, kl.len()) - 1;
    KldStats {
        mean: kl.iter().sum::<f64>() / kl.len() as f64,
        p99: kl[p99_index],
        top1_agreement: scores.iter().filter(|s| s.top1_agrees).count() as f64 / scores.len() as f64,
    }
}
