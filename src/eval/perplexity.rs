//! Perplexity over non-overlapping windows, and KL divergence against a recorded reference (llama.cpp style).

use std::time::Instant;

use half::f16;
use rayon::prelude::*;
use serde::Serialize;

use super::add_log_sum_exp;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::model::tensor_io::with_f32_slice;
use crate::model::{Model, argmax};
use candle_core::Tensor;

/// Vocabulary rows of the head applied at once: 4096 x 576 f32 is 9 MB of weights for SmolLM2 and 8 MB of logits
/// per window at ctx 512, where the whole head in f32 is 113 MB and a window's full logits 100 MB.
const HEAD_BLOCK: usize = 4096;
/// Windows that go through a model whose layers are made as it runs (decoded or dequantized) together, so each
/// layer is made once per group.
const LAYER_GROUP: usize = 4;

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
    let vocab = model.architecture.vocab_size();
    if let Kld::Against(reference) = &kld {
        if reference.windows.len() < windows.len() {
            return Err(Error::InvalidArgument("the KLD reference holds fewer windows than this evaluation".into()));
        }
        if reference.vocab != vocab {
            return Err(Error::InvalidArgument("the KLD reference has another vocabulary size".into()));
        }
    }
    let group = if model.makes_layers() { LAYER_GROUP } else { 1 };
    for (g, chunk) in windows.chunks(group).enumerate() {
        job.checkpoint()?;
        let first = g * group + 1;
        let stage = match chunk.len() {
            1 => format!("evaluate window {first}: layer"),
            n => format!("evaluate windows {first}-{}: layer", first + n - 1),
        };
        let layers = model.architecture.num_layers() as u64;
        let ids: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let hiddens = model.forward_hidden_reporting(&ids, &mut |done| {
            job.report(&stage, done as u64, layers, None);
            job.checkpoint()
        })?;
        let scored = (chunk.iter().zip(&hiddens).enumerate())
            .map(|(j, (window, hidden))| {
                let reference = match &kld {
                    Kld::Against(r) => Some(&r.windows[g * group + j][..]),
                    _ => None,
                };
                Positions::of(window, hidden, reference)
            })
            .collect::<Result<Vec<_>>>()?;
        let running = score_positions(model, &scored)?;
        for (positions, running) in scored.iter().zip(running) {
            if matches!(kld, Kld::Record) {
                recorded.push(log_probabilities(model, positions, &running)?);
            }
            scores.extend(running.iter().map(|r| r.score(positions.reference.is_some())));
        }
        let running_nll = scores.iter().map(|s| s.nll).sum::<f64>() / scores.len() as f64;
        let done = (g * group + chunk.len()) as u64;
        job.report("evaluate", done, windows.len() as u64, Some(running_nll.exp()));
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

/// A window's scored positions: their final hidden states, the token each predicts, and the reference's
/// log-probabilities there (`[positions, vocab]`) when KL divergence is measured.
pub(crate) struct Positions<'a> {
    hidden: Tensor,
    targets: &'a [u32],
    reference: Option<&'a [f16]>,
}

impl<'a> Positions<'a> {
    /// Every position of `window` but the last, which predicts nothing.
    pub(crate) fn of(window: &'a [u32], hidden: &Tensor, reference: Option<&'a [f16]>) -> Result<Self> {
        let scored = window.len() - 1;
        Ok(Positions { hidden: hidden.narrow(0, 0, scored)?, targets: &window[1..], reference })
    }
}

/// One position's figures over the vocabulary blocks seen so far.
#[derive(Clone, Copy)]
pub(crate) struct Running {
    /// log Σ exp(logit).
    log_z: f64,
    target_logit: f64,
    /// The largest logit and its token (the first, on ties).
    best: (f32, usize),
    /// Against a reference with log-probabilities log p: Σ p·log p, Σ p·logit, Σ p, and its argmax.
    p_log_p: f64,
    p_logit: f64,
    p_sum: f64,
    reference_best: (f32, usize),
}

impl Running {
    const START: Running = Running {
        log_z: f64::NEG_INFINITY,
        target_logit: f64::NAN,
        best: (f32::NEG_INFINITY, 0),
        p_log_p: 0.0,
        p_logit: 0.0,
        p_sum: 0.0,
        reference_best: (f32::NEG_INFINITY, 0),
    };

    /// Takes in the logits of tokens `first..first + logits.len()`.
    fn update(&mut self, first: usize, logits: &[f32], target: usize, reference: Option<&[f16]>) {
        self.log_z = add_log_sum_exp(self.log_z, logits);
        if (first..first + logits.len()).contains(&target) {
            self.target_logit = logits[target - first] as f64;
        }
        let best = argmax(logits);
        if logits[best] > self.best.0 {
            self.best = (logits[best], first + best);
        }
        let Some(reference) = reference else { return };
        for (i, (log_p, &logit)) in reference[first..first + logits.len()].iter().zip(logits).enumerate() {
            let log_p = log_p.to_f32();
            let p = (log_p as f64).exp();
            self.p_log_p += p * log_p as f64;
            self.p_logit += p * logit as f64;
            self.p_sum += p;
            if log_p > self.reference_best.0 {
                self.reference_best = (log_p, first + i);
            }
        }
    }

    pub(crate) fn nll(&self) -> f64 {
        self.log_z - self.target_logit
    }

    fn score(&self, against_reference: bool) -> TokenScore {
        if !against_reference {
            return TokenScore { nll: self.nll(), kl: 0.0, top1_agrees: true };
        }
        // Σ p (log p − log q) with log q = logit − log Z.
        let kl = self.p_log_p - self.p_logit + self.p_sum * self.log_z;
        TokenScore { nll: self.nll(), kl: kl.max(0.0), top1_agrees: self.best.1 == self.reference_best.1 }
    }
}

/// Every position's running figures over the whole vocabulary: the head is applied a block of rows at a time,
/// each block (decoded once) to all the windows' positions.
pub(crate) fn score_positions(model: &Model, windows: &[Positions]) -> Result<Vec<Vec<Running>>> {
    let vocab = model.architecture.vocab_size();
    let mut running: Vec<Vec<Running>> = windows.iter().map(|w| vec![Running::START; w.targets.len()]).collect();
    for_each_head_block(model, |first, head_block| {
        let cols = head_block.dim(0)?;
        for (positions, running) in windows.iter().zip(&mut running) {
            let logits = model.logits(&positions.hidden, head_block)?;
            with_f32_slice(&logits, |logits| {
                running.par_iter_mut().zip(logits.par_chunks(cols)).enumerate().for_each(|(i, (r, row))| {
                    let reference = positions.reference.map(|r| &r[i * vocab..][..vocab]);
                    r.update(first, row, positions.targets[i] as usize, reference);
                })
            })?;
        }
        Ok(())
    })?;
    Ok(running)
}

/// Calls `each(first row, rows)` for every block of `HEAD_BLOCK` rows of the head, in order.
pub(crate) fn for_each_head_block(model: &Model, mut each: impl FnMut(usize, &Tensor) -> Result<()>) -> Result<()> {
    let vocab = model.architecture.vocab_size();
    let head = model.architecture.head_name();
    for first in (0..vocab).step_by(HEAD_BLOCK) {
        each(first, &model.weight_rows(head, first..vocab.min(first + HEAD_BLOCK))?)?;
    }
    Ok(())
}

/// The log-probabilities of every position (`[positions, vocab]`, f16) for a later KL divergence: the head's
/// blocks once more, now that each position's log Z is known.
fn log_probabilities(model: &Model, positions: &Positions, running: &[Running]) -> Result<Vec<f16>> {
    let vocab = model.architecture.vocab_size();
    let mut out = vec![f16::ZERO; running.len() * vocab];
    for_each_head_block(model, |first, head_block| {
        let cols = head_block.dim(0)?;
        let logits = model.logits(&positions.hidden, head_block)?;
        with_f32_slice(&logits, |logits| {
            out.par_chunks_mut(vocab).zip(logits.par_chunks(cols)).zip(running).for_each(|((out, row), r)| {
                for (o, &logit) in out[first..first + cols].iter_mut().zip(row) {
                    *o = f16::from_f64(logit as f64 - r.log_z);
                }
            })
        })
    })?;
    Ok(out)
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
