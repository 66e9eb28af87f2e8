//! A bounded reader of the GGUF header (spec: ggml's docs/gguf.md). Every count, length and dimension is checked
//! against what the file can hold before anything is allocated; the alignment must be a positive power of two;
//! tensor sizes are computed with checked arithmetic and every tensor must lie inside the file. The result is
//! candle's `Content`, so candle then only decodes blocks it has been shown to fit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};

use crate::error::{Error, Result};

const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 8;
const DEFAULT_ALIGNMENT: u64 = 32;

pub fn read(path: &Path, bytes: &[u8]) -> Result<Content> {
    let mut r = Reader { bytes, at: 0 };
    r.content().map_err(|problem| Error::bad_file(path, format!("not a valid GGUF file ({problem})")))
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

    fn content(&mut self) -> Parse<Content> {
        if self.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err("no GGUF magic".into());
        }
        let magic = match self.u32()? {
            2 => VersionedMagic::GgufV2,
            3 => VersionedMagic::GgufV3,
            v => return Err(format!("version {v} is not supported (2 or 3)")),
        };
        // A tensor info takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes; a key-value 13.
        let tensor_count = self.count("tensor count", 24)?;
        let kv_count = self.count("metadata count", 13)?;
        let mut metadata = HashMap::new();
        for _ in 0..kv_count {
            let key = self.string()?;
            let kind = self.u32()?;
            let value = self.value(kind, 0).map_err(|e| format!("metadata `{key}`: {e}"))?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(format!("metadata `{key}` appears twice"));
            }
        }
        let alignment = alignment(&metadata)?;
        let mut infos = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = self.string()?;
            let info = self.tensor_info().map_err(|e| format!("tensor `{name}`: {e}"))?;
            infos.push((name, info));
        }
        let data_start = (self.at as u64).div_ceil(alignment) * alignment;
        let mut tensor_infos = HashMap::new();
        for (name, (info, size)) in infos {
            let end = (info.offset % alignment == 0)
                .then(|| data_start.checked_add(info.offset)?.checked_add(size))
                .flatten()
                .filter(|&end| end <= self.bytes.len() as u64);
            if end.is_none() {
                return Err(format!(
                    "tensor `{name}` ({size} bytes at offset {} of the data) lies outside the file or is not \
                     aligned to {alignment} bytes",
                    info.offset
                ));
            }
            if tensor_infos.insert(name.clone(), info).is_some() {
                return Err(format!("tensor `{name}` appears twice"));
            }
        }
        Ok(Content { magic, metadata, tensor_infos, tensor_data_offset: data_start })
    }

    /// Dimensions, type and offset of one tensor, and its size in bytes (checked).
    fn tensor_info(&mut self) -> Parse<(TensorInfo, u64)> {
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!("{n_dims} dimensions (1 to {MAX_DIMS})"));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64()?);
        }
        let kind = self.u32()?;
        let dtype = ggml_type(kind).ok_or_else(|| format!("ggml type {kind} is not supported"))?;
        let offset = self.u64()?;
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or("its dimensions overflow")?;
        let (block, block_bytes) = (dtype.block_size() as u64, dtype.type_size() as u64);
        if elements == 0 || dims[0] % block != 0 {
            return Err(format!("dimensions {dims:?} do not hold whole {dtype:?} blocks of {block}"));
        }
        let size = (elements / block).checked_mul(block_bytes).ok_or("its size overflows")?;
        if size > self.bytes.len() as u64 {
            return Err(format!("{size} bytes of data, more than the whole file"));
        }
        // GGUF lists dimensions innermost first; candle's shapes are outermost first.
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        Ok((TensorInfo { ggml_dtype: dtype, shape: shape.into(), offset }, size))
    }
}

/// The ggml block types candle decodes, by their id in ggml.h.
fn ggml_type(id: u32) -> Option<GgmlDType> {
    use GgmlDType::*;
    Some(match id {
        0 => F32,
        1 => F16,
        2 => Q4_0,
        3 => Q4_1,
        6 => Q5_0,
        7 => Q5_1,
        8 => Q8_0,
        9 => Q8_1,
        10 => Q2K,
        11 => Q3K,
        12 => Q4K,
        13 => Q5K,
        14 => Q6K,
        15 => Q8K,
        30 => BF16,
        _ => return None,
    })
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
fn alignment(metadata: &HashMap<String, Value>) -> Parse<u64> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(*a as u64),
        Some(Value::U32(a)) => Err(format!("general.alignment is {a}, not a positive power of two")),
        Some(_) => Err("general.alignment is not stored as a u32".into()),
    }
}
