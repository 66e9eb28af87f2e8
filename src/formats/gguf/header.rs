//! A bounded reader of the GGUF header (spec: ggml's docs/gguf.md). Every count, length and dimension is checked
//! against what the file can hold before anything is allocated; the alignment must be a positive power of two;
//! tensor sizes are computed with checked arithmetic and every tensor must lie inside the file. Metadata and
//! tensors keep the file's order, so a writer can carry them over as they were.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::error::{Error, Result};
use crate::quant::ggml::BlockType;

const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 8;
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// What a GGUF header says: its metadata and where each tensor's blocks lie.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    /// Key-value pairs in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
}

/// One tensor: its shape (outermost first, as candle and Hugging Face write shapes), its block type and the
/// byte range of its data in the file (checked to lie inside it).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: BlockType,
    pub start: usize,
    pub size: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

impl Header {
    pub fn metadata_map(&self) -> HashMap<String, Value> {
        self.metadata.iter().cloned().collect()
    }
}

pub fn read(path: &Path, bytes: &[u8]) -> Result<Header> {
    let mut r = Reader { bytes, at: 0 };
    r.header().map_err(|problem| Error::bad_file(path, format!("not a valid GGUF file ({problem})")))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Parse<&[u8]> {
        if n > self.remaining() {
            return Err(format!("it ends at byte {} where {n} more bytes were expected", self.bytes.len()));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Parse<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `min_size` bytes each, bounded by the bytes left.
    fn count(&mut self, what: &str, min_size: usize) -> Parse<usize> {
        let n = self.u64()?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(format!("{what} {n} cannot fit in the {} bytes left", self.remaining()));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Parse<String> {
        let len = self.count("string length", 1)?;
        // GGUF strings should be UTF-8 without a terminator; some writers add one.
        let bytes = self.take(len)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, kind: u32, depth: usize) -> Parse<Value> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("a boolean holds {b}")),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                let element = self.u32()?;
                let len = self.count("array length", min_size(element)?)?;
                let mut values = Vec::with_capacity(len);
                for _ in 0..len {
                    values.push(self.value(element, depth + 1)?);
                }
                Value::Array(values)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown value type {other}")),
        })
    }

    fn header(&mut self) -> Parse<Header> {
        if self.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err("no GGUF magic".into());
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!("version {version} is not supported (2 or 3)"));
        }
        // A tensor info takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes; a key-value 13.
        let tensor_count = self.count("tensor count", 24)?;
        let kv_count = self.count("metadata count", 13)?;
        let mut metadata = Vec::with_capacity(kv_count);
        let mut keys = std::collections::HashSet::new();
        for _ in 0..kv_count {
            let key = self.string()?;
            let kind = self.u32()?;
            let value = self.value(kind, 0).map_err(|e| format!("metadata `{key}`: {e}"))?;
            if !keys.insert(key.clone()) {
                return Err(format!("metadata `{key}` appears twice"));
            }
            metadata.push((key, value));
        }
        let alignment = alignment(&metadata)?;
        let mut infos = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = self.string()?;
            let info = self.tensor_info().map_err(|e| format!("tensor `{name}`: {e}"))?;
            infos.push((name, info));
        }
        let data_start = (self.at as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        let mut names = std::collections::HashSet::new();
        for (name, (shape, ty, offset, size)) in infos {
            let start = (offset % alignment == 0).then(|| data_start.checked_add(offset)).flatten();
            let inside = start.and_then(|s| s.checked_add(size)).is_some_and(|end| end <= self.bytes.len() as u64);
            if !inside {
                return Err(format!(
                    "tensor `{name}` ({size} bytes at offset {offset} of the data) lies outside the file or is not \
                     aligned to {alignment} bytes"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!("tensor `{name}` appears twice"));
            }
            let (start, size) = (start.unwrap_or_default() as usize, size as usize);
            tensors.push(TensorInfo { name, shape, ty, start, size });
        }
        Ok(Header { version, metadata, tensors })
    }

    /// Shape (outermost first), type, offset in the data section and size in bytes (checked) of one tensor.
    fn tensor_info(&mut self) -> Parse<(Vec<usize>, BlockType, u64, u64)> {
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!("{n_dims} dimensions (1 to {MAX_DIMS})"));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64()?);
        }
        let kind = self.u32()?;
        let ty = BlockType::from_ggml_id(kind).ok_or_else(|| format!("ggml type {kind} is not supported"))?;
        let offset = self.u64()?;
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or("its dimensions overflow")?;
        let (block, block_bytes) = (ty.block_weights() as u64, ty.block_bytes() as u64);
        if elements == 0 || dims[0] % block != 0 {
            return Err(format!("dimensions {dims:?} do not hold whole {} blocks of {block}", ty.name()));
        }
        let size = (elements / block).checked_mul(block_bytes).ok_or("its size overflows")?;
        if size > self.bytes.len() as u64 {
            return Err(format!("{size} bytes of data, more than the whole file"));
        }
        // GGUF lists dimensions innermost first; our shapes are outermost first.
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        Ok((shape, ty, offset, size))
    }
}

/// The smallest encoding of one value of a type, which bounds how many an array can hold.
fn min_size(kind: u32) -> Parse<usize> {
    Ok(match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        other => return Err(format!("unknown array element type {other}")),
    })
}

/// `general.alignment`: a positive power of two stored as u32 (default 32).
fn alignment(metadata: &[(String, Value)]) -> Parse<u64> {
    match metadata.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(*a as u64),
        Some(Value::U32(a)) => Err(format!("general.alignment is {a}, not a positive power of two")),
        Some(_) => Err("general.alignment is not stored as a u32".into()),
    }
}
