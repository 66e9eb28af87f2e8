//! The original prototype's protocol: N texts of the evaluation set, each truncated to 64 tokens; the mean of
//! the per-text mean causal-LM losses. Texts are the lines of the evaluation file (WikiText rows), skipping
//! section headings (` = Title = `) and lines of fewer than 8 tokens, in file order.

use serde::Serialize;

use super::perplexity::{Positions, Running, score_positions};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::model::Model;

pub const SEED_TOKENS: usize = 64;
pub const SEED_TEXTS: usize = 50;
const MIN_TOKENS: usize = 8;

#[derive(Clone, Debug, Serialize)]
pub struct SeedReport {
    pub texts: usize,
    pub tokens_scored: usize,
    /// Mean over texts of each text's mean NLL (nats).
    pub loss: f64,
    /// Standard error of that mean over texts.
    pub loss_stderr: f64,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// The first `count` qualifying lines, tokenized and truncated to 64 tokens (with BOS in front when asked).
pub fn seed_texts(model: &Model, text: &str, count: usize, bos: bool) -> Result<Vec<Vec<u32>>> {
    let bos = if bos { model.bos_token_id } else { None };
    let mut texts = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('=')) {
        let ids = model.encode(line)?;
        if ids.len() >= MIN_TOKENS {
            let keep = SEED_TOKENS - bos.is_some() as usize;
            texts.push(bos.into_iter().chain(ids.into_iter().take(keep)).collect());
        }
        if texts.len() == count {
            return Ok(texts);
        }
    }
    if texts.is_empty() {
        return Err(Error::InvalidArgument(format!("no line of the text has at least {MIN_TOKENS} tokens")));
    }
    Ok(texts)
}

pub fn evaluate_seed(model: &Model, texts: &[Vec<u32>], job: &Job) -> Result<SeedReport> {
    let start = std::time::Instant::now();
    let mut losses = Vec::with_capacity(texts.len());
    // A model whose layers are made as it runs takes all texts at once (64 tokens each): each layer is made once.
    let group = if model.makes_layers() { texts.len() } else { 1 };
    for chunk in texts.chunks(group) {
        job.checkpoint()?;
        let hiddens = model.forward_hidden(&chunk.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        let positions =
            chunk.iter().zip(&hiddens).map(|(ids, h)| Positions::of(ids, h, None)).collect::<Result<Vec<_>>>()?;
        for running in score_positions(model, &positions)? {
            losses.push(running.iter().map(Running::nll).sum::<f64>() / running.len() as f64);
            job.report("seed loss", losses.len() as u64, texts.len() as u64, None);
        }
    }
    let (loss, loss_stderr) = super::perplexity::mean_and_stderr(&losses);
    super::perplexity::check_finite_result(model, "seed loss", loss)?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens: usize = texts.iter().map(Vec::len).sum();
    Ok(SeedReport {
        texts: texts.len(),
        tokens_scored: tokens - texts.len(),
        loss,
        loss_stderr,
        seconds,
        tokens_per_second: tokens as f64 / seconds,
    })
}
