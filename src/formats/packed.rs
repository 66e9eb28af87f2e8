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
use std::io::{Seek, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use half::f16;
use serde::{Deserialize, Serialize};

use super::checks::{check_layer_count, check_tokenizer, validate};
use super::hf::{config_json, load_tokenizer, write_tokenizer};
use super::safetensors::{
    Array, Entry, f16_bytes, map_file, parse_safetensors, safetensors_header, safetensors_metadata, safetensors_size,
};
use crate::error::{Error, Result};
use crate::importance::CalibrationStats;
use crate::job::Job;
use crate::memory::Bytes;
use crate::model::{Layout, Mapped, Model, SourceFormat, Stored, Weights};
use crate::quant::bits::BitReport;
use crate::quant::ggml::BlockType;
use crate::quant::plan::{Treated, quantize_each};
use crate::quant::spec::TensorPlan;
use crate::quant::stored::{Params, QuantizedTensor, RowAccess, TierCodes, TierMap};
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

/// The arrays one quantized matrix is stored as.
fn matrix_arrays<'a>(name: &str, t: &'a QuantizedTensor) -> Vec<Array<'a>> {
    let mut arrays = Vec::new();
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
            bytes: Cow::Borrowed(t.params.bytes()),
        });
    }
    let map_bits = index_bits(t.plan.tiers.len());
    if map_bits > 0 {
        assert_eq!(t.tier_map.bits, map_bits);
        arrays.push(Array {
            name: format!("{name}::tiers"),
            dtype: "U8",
            shape: vec![t.tier_map.packed.len()],
            bytes: Cow::Borrowed(&t.tier_map.packed),
        });
    }
    arrays
}

/// What the header says of an f16 tensor.
fn f16_entry(name: &str, shape: &[usize]) -> Entry {
    let len = shape.iter().product::<usize>() * 2;
    Entry { name: name.to_string(), dtype: "F16", shape: shape.to_vec(), len }
}

fn metadata(
    model: &Model,
    config: &QuantConfig,
    matrices: &BTreeMap<String, MatrixEntry>,
    bits: &BitReport,
    source_sha256: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), serde_json::to_string(config).expect("serializes")),
        ("matrices".to_string(), serde_json::to_string(matrices).expect("serializes")),
        ("bits".to_string(), serde_json::to_string(bits).expect("serializes")),
        ("architecture".to_string(), model.architecture.name().to_string()),
        ("source".to_string(), crate::model::display_name(&model.source)),
        ("source_sha256".to_string(), source_sha256.to_string()),
    ])
}

fn matrix_entry(t: &QuantizedTensor) -> MatrixEntry {
    MatrixEntry { rows: t.rows, cols: t.cols, plan: t.plan.clone() }
}

/// Exact size in bytes of the packed `model.safetensors` for this result (without writing it).
pub fn packed_size(model: &Model, q: &Quantized) -> usize {
    let mut entries: Vec<Entry> = q.tensors.iter().flat_map(|(n, t)| matrix_arrays(n, t)).map(|a| a.entry()).collect();
    entries.extend(q.fp16.iter().map(|(n, (shape, _))| f16_entry(n, shape)));
    let matrices = q.tensors.iter().map(|(n, t)| (n.clone(), matrix_entry(t))).collect();
    safetensors_size(&entries, &metadata(model, &q.config, &matrices, &q.bits, &"0".repeat(64)))
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

/// Writes the packed folder of an in-memory result atomically. Returns the size of `model.safetensors` in bytes.
pub fn export(model: &Model, q: &Quantized, out: &Path) -> Result<u64> {
    let sha = source_sha256(model)?;
    crate::output::write_dir(out, |dir| {
        let mut writer = PackedWriter::new(dir)?;
        for (name, t) in &q.tensors {
            writer.add_matrix(name, t)?;
        }
        for (name, (shape, values)) in &q.fp16 {
            writer.add_f16_rows(name, shape, 0..shape.first().copied().unwrap_or(1), values)?;
        }
        writer.finish(model, &q.config, &q.bits, &sha)?;
        write_companions(dir, model, &q.config)
    })?;
    file_size(&out.join("model.safetensors"))
}

/// What `quantize_to` made.
#[derive(Debug)]
pub struct Written {
    pub bits: BitReport,
    pub quantize_seconds: f64,
    pub size_bytes: u64,
}

/// Quantizes `model` straight into a packed folder, each tensor written as it is made, so the quantized model
/// is never held in memory whole.
pub fn quantize_to(
    model: &Model,
    config: &QuantConfig,
    calibration: Option<&CalibrationStats>,
    job: &Job,
    out: &Path,
) -> Result<Written> {
    let sha = source_sha256(model)?;
    let mut made = None;
    crate::output::write_dir(out, |dir| {
        let mut writer = PackedWriter::new(dir)?;
        let (bits, seconds) = quantize_each(model, config, calibration, job, |name, treated| match &treated {
            Treated::Quantized { tensor, rows, of_rows } => {
                writer.add_matrix_rows(name, tensor, rows.clone(), *of_rows)
            }
            Treated::Fp16 { shape, rows, values } => writer.add_f16_rows(name, shape, rows.clone(), values),
        })?;
        writer.finish(model, config, &bits, &sha)?;
        write_companions(dir, model, config)?;
        made = Some((bits, seconds));
        Ok(())
    })?;
    let (bits, quantize_seconds) = made.expect("written");
    Ok(Written { bits, quantize_seconds, size_bytes: file_size(&out.join("model.safetensors"))? })
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len())
}

/// The files beside `model.safetensors`: the configuration, config.json and the tokenizer.
fn write_companions(dir: &Path, model: &Model, config: &QuantConfig) -> Result<()> {
    let io = |e| Error::io(dir, e);
    std::fs::write(dir.join(CONFIG_FILE), config.to_toml()).map_err(io)?;
    std::fs::write(dir.join("config.json"), config_json(&model.architecture)).map_err(io)?;
    write_tokenizer(&model.tokenizer, &dir.join("tokenizer.json"))
}

/// Writes `model.safetensors` as tensors arrive in name order, one tensor in memory at a time: the quantized
/// matrices' arrays and the f16 tensors go to two scratch files beside it, and at the end the header (whose
/// offsets need every size) is written and both are copied after it.
struct PackedWriter {
    dir: std::path::PathBuf,
    matrices_data: ScratchFile,
    f16_data: ScratchFile,
    matrices: BTreeMap<String, MatrixEntry>,
    /// The matrix whose pieces are being written: bytes of codes so far, and its block parameters' bytes (written
    /// after the codes once the last piece has come).
    open: Option<(usize, Vec<u8>)>,
}

/// Arrays written one after another, and what the header says of them.
struct ScratchFile {
    path: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    entries: Vec<Entry>,
}

impl ScratchFile {
    fn create(path: std::path::PathBuf) -> Result<ScratchFile> {
        let options = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let file = options.map_err(|e| Error::io(&path, e))?;
        Ok(ScratchFile { out: std::io::BufWriter::with_capacity(1 << 20, file), path, entries: Vec::new() })
    }

    fn write(&mut self, arrays: Vec<Array>) -> Result<()> {
        for array in arrays {
            self.out.write_all(&array.bytes).map_err(|e| Error::io(&self.path, e))?;
            self.entries.push(array.entry());
        }
        Ok(())
    }

    /// Appends everything written to `out`, then deletes the scratch file.
    fn copy_into(self, out: &mut std::fs::File, path: &Path) -> Result<()> {
        let mut file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(&self.path, e))?;
        std::io::copy(&mut file, out).map_err(|e| Error::io(path, e))?;
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl PackedWriter {
    fn new(dir: &Path) -> Result<PackedWriter> {
        Ok(PackedWriter {
            dir: dir.to_path_buf(),
            matrices_data: ScratchFile::create(dir.join(".matrices.part"))?,
            f16_data: ScratchFile::create(dir.join(".f16.part"))?,
            matrices: BTreeMap::new(),
            open: None,
        })
    }

    fn add_matrix(&mut self, name: &str, t: &QuantizedTensor) -> Result<()> {
        self.matrices.insert(name.to_string(), matrix_entry(t));
        self.matrices_data.write(matrix_arrays(name, t))
    }

    /// Rows `rows` of a matrix of `of_rows` rows. A multi-tier matrix comes whole; a single-tier one may come in
    /// pieces, in order, each a whole number of bytes of codes but the last: its codes are written as they come
    /// and its block parameters after them, the arrays `matrix_arrays` makes of the whole matrix.
    fn add_matrix_rows(&mut self, name: &str, t: &QuantizedTensor, rows: Range<usize>, of_rows: usize) -> Result<()> {
        if rows == (0..of_rows) {
            return self.add_matrix(name, t);
        }
        assert_eq!(t.plan.tiers.len(), 1, "only single-tier matrices come in pieces");
        let data = &mut self.matrices_data;
        let (written, params) = self.open.get_or_insert_with(|| (0, Vec::new()));
        data.out.write_all(&t.codes[0].packed).map_err(|e| Error::io(&data.path, e))?;
        *written += t.codes[0].packed.len();
        params.extend_from_slice(t.params.bytes());
        if rows.end < of_rows {
            return Ok(());
        }
        let (written, params) = self.open.take().expect("set above");
        let codes = Entry { name: format!("{name}::codes.0"), dtype: "U8", shape: vec![written], len: written };
        data.entries.push(codes);
        if !params.is_empty() {
            data.write(vec![Array {
                name: format!("{name}::params"),
                dtype: "F16",
                shape: vec![params.len() / 2],
                bytes: Cow::Owned(params),
            }])?;
        }
        let entry = MatrixEntry { rows: of_rows, cols: t.cols, plan: t.plan.clone() };
        self.matrices.insert(name.to_string(), entry);
        Ok(())
    }

    /// Rows `rows` of the f16 tensor `name` of shape `shape`: pieces come in order, and the array is complete
    /// with its last row.
    fn add_f16_rows(&mut self, name: &str, shape: &[usize], rows: Range<usize>, values: &[f16]) -> Result<()> {
        let data = &mut self.f16_data;
        data.out.write_all(&f16_bytes(values)).map_err(|e| Error::io(&data.path, e))?;
        if rows.end == shape.first().copied().unwrap_or(1) {
            data.entries.push(f16_entry(name, shape));
        }
        Ok(())
    }

    fn finish(self, model: &Model, config: &QuantConfig, bits: &BitReport, sha: &str) -> Result<()> {
        let path = self.dir.join("model.safetensors");
        let entries: Vec<Entry> = self.matrices_data.entries.iter().chain(&self.f16_data.entries).cloned().collect();
        let header = safetensors_header(&entries, &metadata(model, config, &self.matrices, bits, sha));
        let mut out = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let io = |e| Error::io(&path, e);
        out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&header).map_err(io)?;
        self.matrices_data.copy_into(&mut out, &path)?;
        self.f16_data.copy_into(&mut out, &path)?;
        out.sync_all().map_err(io)
    }
}

/// An earlier packed export of ours: `quantization.toml` beside a `model.safetensors` whose metadata names our
/// format (what `quantize --out` may replace without `--force`, and what `load` opens as packed).
pub fn is_packed_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        && safetensors_metadata(&dir.join("model.safetensors"))
            .is_some_and(|m| m.get("format").map(String::as_str) == Some(FORMAT))
}

/// Opens a packed folder: the codes and f16 tensors stay in the mapped file, decoded when used (a layer at a
/// time, the head and embedding by rows).
pub fn load(dir: &Path) -> Result<Model> {
    let architecture = super::hf::read_config(dir)?;
    let path = dir.join("model.safetensors");
    let file = Arc::new(map_file(&path)?);
    let st = parse_safetensors(&path, &file)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&file)
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
    let in_file = |data: &[u8]| {
        let start = data.as_ptr() as usize - file.as_ptr() as usize;
        start..start + data.len()
    };
    let mut weights = Weights::default();
    for (name, entry) in &matrices {
        let array = |suffix: &str| st.tensor(&format!("{name}::{suffix}")).ok();
        check_matrix(entry, expected.get(name), &array)
            .map_err(|problem| bad(format!("matrix `{name}`: {problem}")))?;
        let bytes =
            |suffix: &str| array(suffix).map(|v| Bytes::Mapped { file: file.clone(), range: in_file(v.data()) });
        let matrix = stored_matrix(entry, &bytes).map_err(|problem| bad(format!("matrix `{name}`: {problem}")))?;
        weights.insert_stored(name, Stored::Packed(Arc::new(RowAccess::new(matrix))));
    }
    for (name, view) in st.tensors() {
        if name.contains("::") {
            continue;
        }
        if view.dtype() != safetensors::Dtype::F16 {
            return Err(bad(format!("tensor `{name}` is {:?}, expected F16", view.dtype())));
        }
        let range = in_file(view.data());
        let mapped = Mapped::new(BlockType::F16, view.shape().to_vec(), file.clone(), range, Layout::Kept, &name)
            .map_err(|e| bad(e.to_string()))?;
        weights.insert_stored(name, Stored::Mapped(mapped));
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
    array: &dyn Fn(&str) -> Option<Bytes>,
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
    let params = Params::from_bytes(array("params").unwrap_or_default());
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
