//! GGUF v3 files (spec: ggml's docs/gguf.md): metadata in the order given, tensor data aligned to 32 bytes, written
//! through a temporary file that is renamed into place only when complete.

use std::io::Write;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use super::header::DEFAULT_ALIGNMENT;
use crate::error::{Error, Result};
use crate::quant::ggml::BlockType;

/// One tensor to write: its GGUF name, shape (outermost first), type and encoded blocks.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: BlockType,
    pub data: Vec<u8>,
}

/// Writes a GGUF file and returns its size in bytes. `general.alignment` must not be in `metadata` (the data is
/// aligned to the default 32 bytes, which needs no key).
pub fn write(path: &Path, metadata: &[(String, Value)], tensors: &[GgufTensor]) -> Result<u64> {
    for t in tensors {
        let expected = t.ty.bytes_for(t.shape.iter().product());
        if expected != Some(t.data.len()) || t.shape.last().is_none_or(|&cols| !t.ty.fits(cols)) {
            return Err(Error::InvalidArgument(format!(
                "tensor `{}` of shape {:?} cannot be stored as {} in {} bytes",
                t.name,
                t.shape,
                t.ty,
                t.data.len()
            )));
        }
    }
    let mut written = 0u64;
    crate::output::write_file_with(path, |file| {
        let mut w = Counting { inner: std::io::BufWriter::new(file), count: 0 };
        header(&mut w, metadata, tensors)?;
        for t in tensors {
            pad(&mut w)?;
            w.write_all(&t.data)?;
        }
        // ggml pads after every tensor, the last included; strict readers read the padded size.
        pad(&mut w)?;
        w.flush()?;
        written = w.count;
        Ok(())
    })?;
    Ok(written)
}

/// Counts what passes through, for the padding and the size.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<W>) -> std::io::Result<()> {
    let padding = w.count.next_multiple_of(DEFAULT_ALIGNMENT) - w.count;
    w.write_all(&vec![0u8; padding as usize])
}

fn header<W: Write>(w: &mut Counting<W>, metadata: &[(String, Value)], tensors: &[GgufTensor]) -> std::io::Result<()> {
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        string(w, key)?;
        w.write_all(&value_type(value).to_le_bytes())?;
        self::value(w, value)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        string(w, &t.name)?;
        w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
        // GGUF lists dimensions innermost first.
        for &d in t.shape.iter().rev() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&t.ty.ggml_id().to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        offset = (offset + t.data.len() as u64).next_multiple_of(DEFAULT_ALIGNMENT);
    }
    Ok(())
}

fn string<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// `gguf_type` of a value. An empty array is written as an array of strings (the only kind GGUF readers expect
/// to find empty: merges of a tokenizer without any).
fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn value<W: Write>(w: &mut W, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => string(w, s),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Array(items) => {
            let element = items.first().map_or(8, value_type);
            if items.iter().any(|item| value_type(item) != element) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "an array mixes value types"));
            }
            w.write_all(&element.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| value(w, item))
        }
    }
}
