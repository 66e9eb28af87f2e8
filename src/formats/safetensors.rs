//! safetensors files: mapped (or read into tensors; errors name the file and the tensor), and written from arrays
//! (the header padded as the format suggests), plus a bounded read of a file's metadata alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{Layout, Mapped, Stored, cpu};
use crate::quant::ggml::BlockType;

/// Maps a file read-only; safetensors files are read in place, not copied.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; a file changed by another process while it is mapped is a user error (and the
    // reason outputs are written to a temporary sibling, then renamed, never in place).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

pub fn parse_safetensors<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::bad_file(path, format!("not a valid safetensors file ({e})")))
}

/// Every floating-point tensor of a safetensors file in f32, keyed by its stored name, with the dtype it was stored
/// in (what tests read fixtures with; models are opened through `map_safetensors`).
pub fn read_safetensors_floats(path: &Path) -> Result<BTreeMap<String, (Tensor, String)>> {
    map_safetensors(path)?.into_iter().map(|(name, (stored, dtype))| Ok((name, (stored.to_f32()?, dtype)))).collect()
}

/// Every floating-point tensor of a safetensors file, keyed by its stored name, with the dtype it was stored in:
/// f32, bf16 and f16 stay in the mapped file (decoded when used), f64 becomes an f32 copy.
pub fn map_safetensors(path: &Path) -> Result<BTreeMap<String, (Stored, String)>> {
    let bytes = Arc::new(map_file(path)?);
    let st = parse_safetensors(path, &bytes)?;
    let base = bytes.as_ptr() as usize;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let encoding = match view.dtype() {
            Dtype::F32 => Some(BlockType::F32),
            Dtype::BF16 => Some(BlockType::Bf16),
            Dtype::F16 => Some(BlockType::F16),
            _ => None,
        };
        let stored = match encoding {
            Some(encoding) => {
                let start = view.data().as_ptr() as usize - base;
                let range = start..start + view.data().len();
                let mapped = Mapped::new(encoding, view.shape().to_vec(), bytes.clone(), range, Layout::Kept, &name)
                    .map_err(|e| Error::bad_file(path, e.to_string()))?;
                Stored::Mapped(mapped)
            }
            None => {
                Stored::Dense(Tensor::from_vec(to_f32(path, &name, view.dtype(), view.data())?, view.shape(), &cpu())?)
            }
        };
        out.insert(name, (stored, format!("{:?}", view.dtype())));
    }
    Ok(out)
}

fn to_f32(path: &Path, name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    let words = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => words(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => words(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => words(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F64 => words(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// One array of a safetensors file.
pub struct Array<'a> {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl Array<'_> {
    pub fn entry(&self) -> Entry {
        Entry { name: self.name.clone(), dtype: self.dtype, shape: self.shape.clone(), len: self.bytes.len() }
    }
}

/// What the header says of one array: its bytes follow the previous array's.
#[derive(Clone)]
pub struct Entry {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub len: usize,
}

/// The safetensors header for these arrays, padded with spaces to a multiple of 8 bytes as the format suggests.
pub fn safetensors_header(arrays: &[Entry], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialize"));
    let mut offset = 0;
    for a in arrays {
        let end = offset + a.len;
        header.insert(
            a.name.clone(),
            serde_json::json!({"dtype": a.dtype, "shape": a.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&header).expect("JSON serializes");
    while !bytes.len().is_multiple_of(8) {
        bytes.push(b' ');
    }
    bytes
}

/// Exact size of the safetensors file these arrays make.
pub fn safetensors_size(arrays: &[Entry], metadata: &BTreeMap<String, String>) -> usize {
    8 + safetensors_header(arrays, metadata).len() + arrays.iter().map(|a| a.len).sum::<usize>()
}

pub fn write_safetensors(path: &Path, arrays: &[Array], metadata: &BTreeMap<String, String>) -> Result<()> {
    let entries: Vec<Entry> = arrays.iter().map(Array::entry).collect();
    let header = safetensors_header(&entries, metadata);
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    let io = |e| Error::io(path, e);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for a in arrays {
        out.write_all(&a.bytes).map_err(io)?;
    }
    out.into_inner().map_err(|e| Error::io(path, e.into_error()))?.sync_all().map_err(io)
}

/// The `__metadata__` of a safetensors file, read from its header alone (bounded); None when it has none.
pub fn safetensors_metadata(path: &Path) -> Option<BTreeMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    // The safetensors crate's own limit on header size.
    if len > 100_000_000 || len > file.metadata().ok()?.len() {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(value.get("__metadata__")?.clone()).ok()
}

pub fn f16_bytes(values: &[half::f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
