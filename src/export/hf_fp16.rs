//! Dequantized weights as plain fp16 safetensors in Hugging Face layout, so other tools can load the result.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use half::f16;

use super::{Array, config_json, f16_bytes, write_dir_atomically, write_safetensors, write_tokenizer};
use crate::error::Result;
use crate::model::{Architecture, Model, Weights, gpt2, tensor_to_vec};

pub fn export(model: &Model, weights: &Weights, out: &Path) -> Result<()> {
    let mut arrays = Vec::new();
    for (name, tensor) in &weights.0 {
        let conv1d = matches!(model.architecture, Architecture::Gpt2(_)) && gpt2::is_conv1d(name);
        // GPT-2 keeps its Conv1D weights as [in, out] on disk.
        let tensor = if conv1d { tensor.t()?.contiguous()? } else { tensor.clone() };
        let values: Vec<f16> = tensor_to_vec(&tensor)?.into_iter().map(f16::from_f32).collect();
        arrays.push(Array {
            name: name.clone(),
            dtype: "F16",
            shape: tensor.dims().to_vec(),
            bytes: Cow::Owned(f16_bytes(&values)),
        });
    }
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_dir_atomically(out, |dir| {
        write_safetensors(&dir.join("model.safetensors"), &arrays, &metadata)?;
        std::fs::write(dir.join("config.json"), config_json(&model.architecture))
            .map_err(|e| crate::Error::io(dir, e))?;
        write_tokenizer(&model.tokenizer, &dir.join("tokenizer.json"))
    })
}
