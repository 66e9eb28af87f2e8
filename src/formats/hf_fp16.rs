//! Dequantized weights as plain fp16 safetensors in Hugging Face layout, so other tools can load the result.
//! A tensor with values beyond f16's range is stored as f32, so the export always loads again. The folder also
//! holds the `quantization.toml` that made it; its metadata names our format, which marks it as ours.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use half::f16;

use super::hf::{config_json, write_tokenizer};
use super::safetensors::{Array, f16_bytes, safetensors_metadata, write_safetensors};
use crate::error::Result;
use crate::model::{Model, Weights, tensor_to_vec};
use crate::quant::QuantConfig;

pub const FORMAT: &str = "nash-swarm-hf-fp16/1";
const FORMAT_KEY: &str = "nash_swarm_format";

pub fn export(model: &Model, config: &QuantConfig, weights: &Weights, out: &Path) -> Result<()> {
    let mut arrays = Vec::new();
    for (name, tensor) in &weights.0 {
        // GPT-2 keeps its Conv1D weights as [in, out] on disk.
        let transposed = model.architecture.stored_transposed(name);
        let tensor = tensor.to_f32()?;
        let tensor = if transposed { tensor.t()?.contiguous()? } else { tensor };
        let values = tensor_to_vec(&tensor)?;
        let (dtype, bytes) = if values.iter().all(|v| v.abs() <= f16::MAX.to_f32()) {
            ("F16", f16_bytes(&values.into_iter().map(f16::from_f32).collect::<Vec<_>>()))
        } else {
            ("F32", values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        arrays.push(Array { name: name.clone(), dtype, shape: tensor.dims().to_vec(), bytes: Cow::Owned(bytes) });
    }
    let metadata =
        BTreeMap::from([("format".to_string(), "pt".to_string()), (FORMAT_KEY.to_string(), FORMAT.to_string())]);
    crate::output::write_dir(out, |dir| {
        write_safetensors(&dir.join("model.safetensors"), &arrays, &metadata)?;
        let io = |e| crate::Error::io(dir, e);
        std::fs::write(dir.join(super::packed::CONFIG_FILE), config.to_toml()).map_err(io)?;
        std::fs::write(dir.join("config.json"), config_json(&model.architecture)).map_err(io)?;
        write_tokenizer(&model.tokenizer, &dir.join("tokenizer.json"))
    })
}

/// An earlier export of this kind (what `--export-hf` may replace without `--force`).
pub fn is_hf_export(dir: &Path) -> bool {
    dir.join(super::packed::CONFIG_FILE).is_file()
        && safetensors_metadata(&dir.join("model.safetensors"))
            .is_some_and(|m| m.get(FORMAT_KEY).map(String::as_str) == Some(FORMAT))
}
