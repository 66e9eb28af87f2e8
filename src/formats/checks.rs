//! Checks every reader applies before a model is used: the layer count the configuration declares, every
//! expected tensor with its shape, finite values, and token ids inside the embedding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Architecture, Stored, Weights};

pub type Sourced = BTreeMap<String, (Stored, PathBuf)>;

/// Token ids must name rows of the embedding; `what` says where they came from.
pub fn check_token_ids(path: &Path, what: &str, ids: &[u64], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id >= vocab as u64) {
        Some(id) => Err(Error::bad_file(
            path,
            format!("{what} {id} is outside the vocabulary (the embedding has {vocab} rows)"),
        )),
        None => Ok(()),
    }
}

/// The tokenizer never produces an id the embedding lacks.
pub fn check_tokenizer(path: &Path, tokenizer: &tokenizers::Tokenizer, vocab: usize) -> Result<()> {
    let largest = tokenizer.get_vocab(true).into_values().max().unwrap_or(0) as u64;
    check_token_ids(path, "the tokenizer's largest token id", &[largest], vocab)
}

/// Every expected tensor present with the shape the config implies, nothing non-finite.
pub fn validate(source: &Path, architecture: &Architecture, mut tensors: Sourced) -> Result<Weights> {
    check_layer_count(source, architecture, tensors.keys())?;
    let mut weights = Weights::default();
    for (name, shape) in architecture.expected_tensors() {
        let (tensor, file) = tensors
            .remove(&name)
            .ok_or_else(|| Error::MissingTensor { path: source.to_path_buf(), name: name.clone() })?;
        if tensor.dims() != shape.as_slice() {
            // GPT-2 Conv1D weights were transposed on load: report shapes as stored in the file.
            let as_stored = |mut dims: Vec<usize>| {
                if architecture.stored_transposed(&name) {
                    dims.reverse();
                }
                dims
            };
            let (expected, actual) = (as_stored(shape), as_stored(tensor.dims().to_vec()));
            return Err(Error::ShapeMismatch { path: file, name, expected, actual });
        }
        weights.insert_stored(name, tensor);
    }
    check_finite(source, &weights)?;
    Ok(weights)
}

/// The weights hold exactly the layers the configuration declares (checked before the expected tensors are
/// listed, so an absurd layer count costs nothing).
pub fn check_layer_count<'a>(
    source: &Path,
    architecture: &Architecture,
    names: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let layers: std::collections::BTreeSet<usize> = names.filter_map(|n| crate::model::layer_of(n)).collect();
    let declared = architecture.num_layers();
    let held = layers.len();
    if held == declared && layers.last().is_none_or(|&last| last + 1 == held) {
        return Ok(());
    }
    let numbers = match (layers.first(), layers.last()) {
        (Some(first), Some(last)) => format!(" (numbered {first} to {last})"),
        _ => String::new(),
    };
    Err(Error::bad_file(
        source,
        format!("the configuration declares {declared} layers, but the weights hold {held}{numbers}"),
    ))
}

pub fn check_finite(source: &Path, weights: &Weights) -> Result<()> {
    let bad = weights
        .0
        .par_iter()
        .map(|(name, t)| Ok((name, t.count_non_finite()?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .find(|(_, count)| *count > 0);
    match bad {
        Some((name, count)) => Err(Error::NonFinite { path: source.to_path_buf(), name: name.clone(), count }),
        None => Ok(()),
    }
}
