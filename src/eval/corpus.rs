//! Evaluation text -> token windows.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Model;

/// Reads an evaluation text: it must exist, be UTF-8 and hold more than whitespace.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::error::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(path, format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Err(Error::bad_file(path, "the text is empty"));
    }
    Ok(text)
}

/// How the evaluation text is cut into windows.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// Tokens per window (a BOS, when used, is one of them).
    pub ctx: usize,
    pub max_windows: Option<usize>,
    pub bos: bool,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self { ctx: 512, max_windows: None, bos: false }
    }
}

/// The tokens `windows` needs from `text`: with a window limit, only the beginning of the text is tokenized (the
/// whole of WikiText-2's test split costs ~90 MB of tokenizer memory, more than a small model), cut where two
/// longer cuts of the text agree, so the tokens are those of the whole text.
pub fn tokens_for(model: &Model, text: &str, spec: WindowSpec) -> Result<Vec<u32>> {
    let Some(windows) = spec.max_windows else { return model.encode(text) };
    let wanted = windows.saturating_mul(spec.ctx);
    let mut cut = wanted.saturating_mul(8).max(1 << 12);
    while cut < text.len() {
        let short = model.encode(&text[..text.floor_char_boundary(cut)])?;
        let long = model.encode(&text[..text.floor_char_boundary(cut + cut / 4)])?;
        let agreed = short.iter().zip(&long).take_while(|(a, b)| a == b).count();
        if agreed >= wanted {
            return Ok(long[..agreed].to_vec());
        }
        cut = cut.saturating_mul(2);
    }
    model.encode(text)
}

/// Non-overlapping windows of `spec.ctx` tokens, in text order; a trailing partial window is dropped.
/// `text_name` names the text in errors.
pub fn windows(model: &Model, tokens: &[u32], spec: WindowSpec, text_name: &Path) -> Result<Vec<Vec<u32>>> {
    let max = model.architecture.max_context();
    if spec.ctx < 2 {
        return Err(Error::InvalidArgument(format!("--ctx {}: a window needs at least 2 tokens", spec.ctx)));
    }
    if spec.ctx > max {
        return Err(Error::InvalidArgument(format!("--ctx {} is longer than the model's context ({max})", spec.ctx)));
    }
    let bos = if spec.bos {
        Some(model.bos_token_id.ok_or_else(|| Error::InvalidArgument("--bos: the model has no BOS token".into()))?)
    } else {
        None
    };
    let text_per_window = spec.ctx - bos.is_some() as usize;
    let available = tokens.len() / text_per_window;
    if available == 0 {
        return Err(Error::bad_file(
            text_name,
            format!("the text has {} tokens, fewer than one window of {}", tokens.len(), text_per_window),
        ));
    }
    let count = spec.max_windows.map_or(available, |m| m.min(available));
    if count == 0 {
        return Err(Error::InvalidArgument("--max-windows must be at least 1".into()));
    }
    Ok(tokens
        .chunks_exact(text_per_window)
        .take(count)
        .map(|chunk| bos.into_iter().chain(chunk.iter().copied()).collect())
        .collect())
}

/// Calibration windows taken from the END of a token stream, and the part before them, which evaluation may
/// use: calibration never sees a scored token.
pub fn split_calibration<'a>(
    tokens: &'a [u32],
    windows: usize,
    window_tokens: usize,
    text_name: &Path,
) -> Result<(&'a [u32], Vec<Vec<u32>>)> {
    let needed = windows * window_tokens;
    if windows == 0 || window_tokens < 2 {
        return Err(Error::InvalidArgument("calibration needs at least one window of 2 tokens".into()));
    }
    if tokens.len() < 2 * needed {
        return Err(Error::bad_file(
            text_name,
            format!("{} tokens are too few to hold out {needed} calibration tokens and still evaluate", tokens.len()),
        ));
    }
    let cut = tokens.len() - needed;
    Ok((&tokens[..cut], tokens[cut..].chunks_exact(window_tokens).map(<[u32]>::to_vec).collect()))
}
