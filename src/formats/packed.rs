//! Our packed format: a folder with
//! - `model.safetensors`: per quantized matrix `NAME::codes.T` (U8, tier T's integer codes packed LSB-first at
//!   the tier's bit width, in storage order: block by block, tier by tier, weights in row-major order),
//!   `NAME::params` (F16, per block and tier present: scale then min for the asymmetric grid, scale for the
//!   symmetric one), `NAME::tiers` (U8, each unit's tier packed at ceil(log2 k) bits, only when k > 1); every
//!   other tensor as F16 under its own name. `__metadata__` names the format, the configuration, the source
//!   model and its SHA-256, each matrix's plan and shape, and the bit report.
//! - `quantization.toml`: the configuration that reproduces it; `config.json`, `tokenizer.json`.
//!
//! The arrays hold exactly the bits the bit report counts (each array rounded up to whole bytes).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use half::f16;
use serde::{Deserialize, Serialize};

use super::checks::{check_layer_count, check_tokenizer, validate};
use super::hf::{config_json, load_tokenizer, write_tokenizer};
use super::safetensors::{
    Array, f16_bytes, map_file, parse_safetensors, safetensors_metadata, safetensors_size, write_safetensors,
};
use crate::error::{Error, Result};
use crate::model::{Model, SourceFormat, Weights, cpu};
use crate::quant::spec::TensorPlan;
use crate::quant::stored::{QuantizedTensor, TierCodes, TierMap};
use crate::quant::tiers::index_bits;
use crate::quant::{QuantConfig, Quantized};

pub const FORMAT: &str = "nash-swarm-packed/1";
pub const CONFIG_FILE: &str = "quantization.toml";

/// What the metadata records for each quantized matrix.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixEntry {
    rows: usize,
    cols: usize,
    plan: TensorPlan,
}

fn arrays(q: &Quantized) -> Vec<Array<'_>> {
    let mut arrays = Vec::new();
    for (name, t) in &q.tensors {
        for (i, codes) in t.codes.iter().enumerate().filter(|(_, c)| c.count > 0) {
            arrays.push(Array {
                name: format!("{name}::codes.{i}"),
                dtype: "U8",
                shape: vec![codes.packed.len()],
                bytes: Cow::Borrowed(&codes.packed),
            });
        }
        if !t.params.is_empty() {
            arrays.push(Array {
                name: format!("{name}::params"),
                dtype: "F16",
                shape: vec![t.params.len()],
                bytes: Cow::Owned(f16_bytes(&t.params)),
            });
        }
        let map_bits = index_bits(t.plan.tiers.len());
        if map_bits > 0 {
            debug_assert_eq!(t.tier_map.bits, map_bits);
            arrays.push(Array {
                name: format!("{name}::tiers"),
                dtype: "U8",
                shape: vec![t.tier_map.packed.len()],
                bytes: Cow::Borrowed(&t.tier_map.packed),
            });
        }
    }
    for (name, (shape, values)) in &q.fp16 {
        arrays.push(Array {
            name: name.clone(),
            dtype: "F16",
            shape: shape.clone(),
            bytes: Cow::Owned(f16_bytes(values)),
        });
    }
    arrays
}

fn metadata(model: &Model, q: &Quantized, source_sha256: &str) -> BTreeMap<String, String> {
    let matrices: BTreeMap<&String, MatrixEntry> = q
        .tensors
        .iter()
        .map(|(name, t)| (name, MatrixEntry { rows: t.rows, cols: t.cols, plan: t.plan.clone() }))
        .collect();
    BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), serde_json::to_string(&q.config).expect("serializes")),
        ("matrices".to_string(), serde_json::to_string(&matrices).expect("serializes")),
        ("bits".to_string(), serde_json::to_string(&q.bits).expect("serializes")),
        ("architecture".to_string(), model.architecture.name().to_string()),
        ("source".to_string(), crate::model::display_name(&model.source)),
        ("source_sha256".to_string(), source_sha256.to_string()),
    ])
}

/// Exact size in bytes of the packed `model.safetensors` for this result (without writing it).
pub fn packed_size(model: &Model, q: &Quantized) -> usize {
    safetensors_size(&arrays(q), &metadata(model, q, &"0".repeat(64)))
}

/// SHA-256 of the source weights: the GGUF file, or the safetensors files of a folder in name order.
pub fn source_sha256(model: &Model) -> Result<String> {
    let files: Vec<std::path::PathBuf> = if model.source.is_file() {
        vec![model.source.clone()]
    } else {
        let mut files: Vec<_> = std::fs::read_dir(&model.source)
            .map_err(|e| Error::io(&model.source, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        files
    };
    crate::pypi::sha256_files(&files)
}

/// Writes the packed folder atomically. Returns the size of `model.safetensors` in bytes.
pub fn export(model: &Model, q: &Quantized, out: &Path) -> Result<u64> {
    let sha = source_sha256(model)?;
    let arrays = arrays(q);
    let metadata = metadata(model, q, &sha);
    crate::output::write_dir(out, |dir| {
        write_safetensors(&dir.join("model.safetensors"), &arrays, &metadata)?;
        let io = |e| Error::io(dir, e);
        std::fs::write(dir.join(CONFIG_FILE), q.config.to_toml()).map_err(io)?;
        std::fs::write(dir.join("config.json"), config_json(&model.architecture)).map_err(io)?;
        write_tokenizer(&model.tokenizer, &dir.join("tokenizer.json"))
    })?;
    let file = out.join("model.safetensors");
    Ok(std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?.len())
}

/// An earlier packed export of ours: `quantization.toml` beside a `model.safetensors` whose metadata names our
/// format (what `quantize --out` may replace without `--force`, and what `load` opens as packed).
pub fn is_packed_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        && safetensors_metadata(&dir.join("model.safetensors"))
            .is_some_and(|m| m.get("format").map(String::as_str) == Some(FORMAT))
}

/// Opens a packed folder: unpacks and dequantizes every matrix.
pub fn load(dir: &Path) -> Result<Model> {
    let architecture = super::hf::read_config(dir)?;
    let path = dir.join("model.safetensors");
    let bytes = map_file(&path)?;
    let st = parse_safetensors(&path, &bytes)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::bad_file(&path, format!("not a valid safetensors file ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::bad_file(&path, format!("not a {FORMAT} file (no matching `format` metadata)")));
    }
    let bad = |problem: String| Error::bad_file(&path, problem);
    let matrices: BTreeMap<String, MatrixEntry> = serde_json::from_str(meta.get("matrices").map_or("", |s| s))
        .map_err(|e| bad(format!("invalid `matrices` metadata: {e}")))?;
    let names: Vec<String> = st.names().into_iter().filter(|n| !n.contains("::")).map(str::to_string).collect();
    check_layer_count(&path, &architecture, names.iter().chain(matrices.keys()))?;
    let expected: BTreeMap<String, Vec<usize>> = architecture.expected_tensors().into_iter().collect();
    let mut weights = Weights::default();
    for (name, entry) in &matrices {
        let array = |suffix: &str| st.tensor(&format!("{name}::{suffix}")).ok();
        check_matrix(entry, expected.get(name), &array)
            .map_err(|problem| bad(format!("matrix `{name}`: {problem}")))?;
        let bytes = |suffix: &str| array(suffix).map(|v| v.data().to_vec());
        let matrix = stored_matrix(entry, &bytes).map_err(|problem| bad(format!("matrix `{name}`: {problem}")))?;
        weights.insert(name, matrix.to_tensor(name).map_err(|e| bad(e.to_string()))?);
    }
    for (name, view) in st.tensors() {
        if name.contains("::") {
            continue;
        }
        if view.dtype() != safetensors::Dtype::F16 {
            return Err(bad(format!("tensor `{name}` is {:?}, expected F16", view.dtype())));
        }
        let values: Vec<f32> = view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
        weights.insert(name, candle_core::Tensor::from_vec(values, view.shape(), &cpu())?);
    }
    let sourced = weights.0.into_iter().map(|(k, t)| (k, (t, path.clone()))).collect();
    let weights = validate(dir, &architecture, sourced)?;
    let tokenizer = load_tokenizer(dir)?;
    check_tokenizer(&dir.join("tokenizer.json"), &tokenizer, architecture.vocab_size())?;
    let bos_token_id = architecture.bos_token_id();
    let stored_dtypes = matrices.iter().map(|(n, e)| (n.clone(), e.plan.label())).collect();
    Ok(Model {
        source: dir.to_path_buf(),
        format: SourceFormat::Packed,
        architecture,
        weights,
        tokenizer: Arc::new(tokenizer),
        bos_token_id,
        stored_dtypes,
        lazy: None,
        made: Default::default(),
    })
}

/// Reads a packed folder's configuration.
pub fn read_config(dir: &Path) -> Result<QuantConfig> {
    QuantConfig::read(&dir.join(CONFIG_FILE))
}

/// The metadata's plan agrees with the architecture's shape and with every array's dtype and size, so decoding
/// allocates only what the file's codes can fill.
fn check_matrix<'a>(
    entry: &MatrixEntry,
    expected: Option<&Vec<usize>>,
    array: &dyn Fn(&str) -> Option<safetensors::tensor::TensorView<'a>>,
) -> std::result::Result<(), String> {
    let (rows, cols, plan) = (entry.rows, entry.cols, &entry.plan);
    match expected {
        None => return Err("not a weight of this architecture".into()),
        Some(shape) if shape.as_slice() != [rows, cols] => {
            return Err(format!("the metadata says [{rows}, {cols}], the configuration implies {shape:?}"));
        }
        Some(_) => {}
    }
    crate::quant::tiers::validate_tiers(&plan.tiers).map_err(|e| format!("invalid plan: {e}"))?;
    let dtype_of = |suffix: &str| array(suffix).map(|v| v.dtype());
    for (suffix, dtype) in [("tiers", safetensors::Dtype::U8), ("params", safetensors::Dtype::F16)] {
        if dtype_of(suffix).is_some_and(|d| d != dtype) {
            return Err(format!("`{suffix}` is {:?}, expected {dtype:?}", dtype_of(suffix).unwrap()));
        }
    }
    let mut code_capacity = 0usize;
    for (t, tier) in plan.tiers.iter().enumerate() {
        let Some(codes) = array(&format!("codes.{t}")) else { continue };
        if codes.dtype() != safetensors::Dtype::U8 {
            return Err(format!("`codes.{t}` is {:?}, expected U8", codes.dtype()));
        }
        code_capacity += codes.data().len() * 8 / tier.bits as usize;
    }
    let weights = rows.checked_mul(cols).ok_or("rows times columns overflow")?;
    if code_capacity < weights {
        return Err(format!("the codes hold at most {code_capacity} weights, the plan needs {weights}"));
    }
    if plan.tiers.len() > 1 {
        let map = array("tiers").ok_or("tier map missing")?;
        let needed = crate::quant::pack::packed_len(plan.granularity.units(rows, cols), index_bits(plan.tiers.len()));
        if map.data().len() != needed {
            return Err(format!("the tier map has {} bytes, the plan needs {needed}", map.data().len()));
        }
    }
    Ok(())
}

/// Rebuilds a matrix's stored form from its arrays.
fn stored_matrix(
    entry: &MatrixEntry,
    array: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> std::result::Result<QuantizedTensor, String> {
    let plan = &entry.plan;
    let (rows, cols, k) = (entry.rows, entry.cols, plan.tiers.len());
    let tier_map = if k > 1 {
        let packed = array("tiers").ok_or("tier map missing")?;
        TierMap { units: plan.granularity.units(rows, cols), bits: index_bits(k), packed }
    } else {
        TierMap::default()
    };
    let codes = plan
        .tiers
        .iter()
        .enumerate()
        .map(|(t, tier)| {
            let packed = array(&format!("codes.{t}")).unwrap_or_default();
            TierCodes { bits: tier.bits, count: packed.len() * 8 / tier.bits as usize, packed }
        })
        .collect();
    let params =
        array("params").unwrap_or_default().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect();
    let q = QuantizedTensor {
        rows,
        cols,
        plan: plan.clone(),
        tier_map,
        codes,
        params,
        squared_error: 0.0,
        squared_norm: 0.0,
    };
    Ok(q)
}
