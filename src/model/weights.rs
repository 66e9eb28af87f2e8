//! Named weights held as stored: candle tensors (f32, bf16, f16), or the bytes of a memory-mapped file (GGUF's
//! ggml blocks, safetensors' arrays) decoded when used. Nothing here holds a whole-model f32 copy: `get` makes
//! one tensor in f32, `rows` only the rows asked for.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::{Architecture, cpu, tensor_io};
use crate::error::{Error, Result};
use crate::quant::ggml::BlockType;
use crate::quant::stored::RowAccess;

/// One weight as the model holds it.
#[derive(Clone, Debug)]
pub enum Stored {
    /// Values in memory (f32, bf16 or f16).
    Dense(Tensor),
    /// Encoded values in a mapped file.
    Mapped(Mapped),
    /// One of our quantized matrices (codes in memory or in a mapped packed export).
    Packed(Arc<RowAccess>),
}

/// A tensor's encoded bytes, in a mapped file (or made in memory, as a GGUF reader would map them): `shape` is
/// ours (`[out, in]` for matrices); the bytes are in the file's layout, which `layout` turns into ours after
/// decoding.
#[derive(Clone)]
pub struct Mapped {
    pub encoding: BlockType,
    pub shape: Vec<usize>,
    bytes: crate::memory::SharedBytes,
    range: Range<usize>,
    layout: Layout,
}

/// How a decoded tensor becomes ours.
#[derive(Clone)]
pub enum Layout {
    /// Already ours.
    Kept,
    /// Stored `[in, out]` (GPT-2's Conv1D).
    Transposed,
    /// llama.cpp's layout of this tensor (permuted q/k rows, shifted norms), undone by the architecture.
    Gguf { architecture: Architecture, name: String },
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} {:?}, {} bytes)", self.encoding, self.shape, self.range.len())
    }
}

impl Mapped {
    /// `range` of `bytes` holding `shape`'s values (in the file's layout) as `encoding`; an error naming `name`
    /// when the sizes disagree.
    pub fn new(
        encoding: BlockType,
        shape: Vec<usize>,
        bytes: crate::memory::SharedBytes,
        range: Range<usize>,
        layout: Layout,
        name: &str,
    ) -> Result<Mapped> {
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = count.and_then(|c| encoding.bytes_for(c));
        if range.end > bytes.len() || expected != Some(range.len()) {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}`: {} bytes of {encoding} cannot hold shape {shape:?}",
                range.len()
            )));
        }
        Ok(Mapped { encoding, shape, bytes, range, layout })
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[self.range.clone()]
    }

    fn decode(&self, bytes: &[u8], count: usize) -> Result<Vec<f32>> {
        crate::quant::ggml::decode(self.encoding, bytes, count).map_err(Error::InvalidArgument)
    }

    /// How many values are NaN or infinite, decoded a slice of blocks at a time (the layout does not matter).
    fn count_non_finite(&self) -> Result<usize> {
        const BLOCKS: usize = 1 << 14;
        let (weights, bytes) = (self.encoding.block_weights(), self.encoding.block_bytes());
        let chunks: Vec<&[u8]> = self.bytes().chunks(BLOCKS * bytes).collect();
        let counts = chunks.par_iter().map(|chunk| {
            let values = self.decode(chunk, chunk.len() / bytes * weights)?;
            Ok(values.iter().filter(|v| !v.is_finite()).count())
        });
        counts.sum::<Result<usize>>()
    }

    /// The whole tensor in f32, in our layout.
    fn to_f32(&self) -> Result<Tensor> {
        let count = self.shape.iter().product();
        let values = self.decode(self.bytes(), count)?;
        match &self.layout {
            Layout::Kept => Ok(Tensor::from_vec(values, self.shape.as_slice(), &cpu())?),
            Layout::Transposed => {
                let stored: Vec<usize> = self.shape.iter().rev().copied().collect();
                Ok(Tensor::from_vec(values, stored, &cpu())?.t()?.contiguous()?)
            }
            Layout::Gguf { architecture, name } => {
                architecture.from_gguf_layout(name, Tensor::from_vec(values, self.shape.as_slice(), &cpu())?)
            }
        }
    }

    /// Rows `rows` of a matrix whose stored rows are ours (`Layout::Kept`).
    fn rows_f32(&self, rows: Range<usize>) -> Result<Vec<f32>> {
        let bytes = self.row_bytes(rows.clone())?;
        self.decode(bytes, rows.len() * self.shape[1])
    }

    /// The bytes of rows `rows` (in range) of a matrix whose stored rows are ours.
    fn row_bytes(&self, rows: Range<usize>) -> Result<&[u8]> {
        let cols = self.shape[1];
        let row_bytes = (self.encoding.bytes_for(cols)).ok_or_else(|| {
            Error::InvalidArgument(format!("rows of {cols} weights are not whole {} blocks", self.encoding))
        })?;
        Ok(&self.bytes()[rows.start * row_bytes..rows.end * row_bytes])
    }
}

impl Stored {
    pub fn dims(&self) -> &[usize] {
        match self {
            Stored::Dense(t) => t.dims(),
            Stored::Mapped(m) => &m.shape,
            Stored::Packed(p) => &p.shape,
        }
    }

    pub fn rank(&self) -> usize {
        self.dims().len()
    }

    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// The tensor in f32 (a converted or decoded copy unless it is held in f32).
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            Stored::Dense(t) => tensor_io::as_f32(t),
            Stored::Mapped(m) => m.to_f32(),
            Stored::Packed(p) => packed_rows(p, 0..p.shape[0]),
        }
    }

    /// Whether `to_f32` costs nothing (the tensor is held in f32).
    pub fn is_f32(&self) -> bool {
        matches!(self, Stored::Dense(t) if t.dtype() == DType::F32)
    }

    /// The columns of a matrix of which `rows` are rows; an error for another shape or rows outside it.
    fn matrix_rows(&self, rows: &Range<usize>) -> Result<usize> {
        let [n, cols] = *self.dims() else {
            return Err(Error::InvalidArgument(format!("rows of a tensor of shape {:?}", self.dims())));
        };
        if rows.start > rows.end || rows.end > n {
            return Err(Error::InvalidArgument(format!("rows {rows:?} of a matrix of {n} rows")));
        }
        Ok(cols)
    }

    /// Rows `rows` of a matrix, in f32.
    pub fn rows(&self, rows: Range<usize>) -> Result<Tensor> {
        let cols = self.matrix_rows(&rows)?;
        match self {
            Stored::Dense(t) => tensor_io::as_f32(&t.narrow(0, rows.start, rows.len())?),
            Stored::Mapped(m) if matches!(m.layout, Layout::Kept) => {
                Ok(Tensor::from_vec(m.rows_f32(rows.clone())?, (rows.len(), cols), &cpu())?)
            }
            Stored::Mapped(m) => Ok(m.to_f32()?.narrow(0, rows.start, rows.len())?.contiguous()?),
            Stored::Packed(p) => packed_rows(p, rows),
        }
    }

    /// The mapped matrix, where this is one held encoded in our layout (its rows decode straight into a buffer).
    fn mapped_in_our_layout(&self) -> Option<&Mapped> {
        match self {
            Stored::Mapped(m) if matches!(m.layout, Layout::Kept) && m.shape.len() == 2 => Some(m),
            _ => None,
        }
    }

    /// Rows `rows` of a matrix decoded into `out` (rows × cols values), where the matrix is held encoded in our
    /// layout; None where it is not (`rows` then makes the copy).
    pub fn rows_into(&self, rows: Range<usize>, out: &mut [f32]) -> Option<Result<()>> {
        let m = self.mapped_in_our_layout()?;
        let decoded = self.matrix_rows(&rows).and_then(|cols| {
            if out.len() != rows.len() * cols {
                let message = format!("rows {rows:?} of {cols} columns into {} values", out.len());
                return Err(Error::InvalidArgument(message));
            }
            let bytes = m.row_bytes(rows)?;
            crate::quant::ggml::decode_into(m.encoding, bytes, out).map_err(Error::InvalidArgument)
        });
        Some(decoded)
    }

    /// Calls `f` with rows `rows` in f32 and their shape: decoded into a buffer from `pool` where the matrix is
    /// held encoded in our layout (fresh memory for every tensor costs a page fault and the kernel's zeroing per
    /// page), else read in place when held in f32 or decoded into a copy. All rows of any tensor, or some of a
    /// matrix.
    pub fn with_rows<R>(
        &self,
        rows: Range<usize>,
        pool: &crate::memory::Pool,
        f: impl FnOnce(&[f32], &[usize]) -> R,
    ) -> Result<R> {
        if self.mapped_in_our_layout().is_some() {
            let cols = self.matrix_rows(&rows)?;
            let mut decoded = pool.take(rows.len() * cols);
            if let Some(done) = self.rows_into(rows.clone(), &mut decoded) {
                done?;
                return Ok(f(&decoded, &[rows.len(), cols]));
            }
        }
        let whole = rows == (0..self.dims().first().copied().unwrap_or(1));
        let tensor = if whole { self.to_f32()? } else { self.rows(rows)? }.contiguous()?;
        tensor_io::with_f32_slice(&tensor, |values| f(values, tensor.dims()))
    }

    /// The rows named by `ids` (an embedding lookup), in f32.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        let n = self.dims().first().copied().unwrap_or(0);
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n) {
            return Err(Error::InvalidArgument(format!("token id {id} is outside the embedding's {n} rows")));
        }
        match self {
            Stored::Mapped(m) if matches!(m.layout, Layout::Kept) && m.shape.len() == 2 => {
                let mut values = Vec::with_capacity(ids.len() * m.shape[1]);
                for &id in ids {
                    values.extend(m.rows_f32(id as usize..id as usize + 1)?);
                }
                Ok(Tensor::from_vec(values, (ids.len(), m.shape[1]), &cpu())?)
            }
            Stored::Mapped(m) => Ok(m.to_f32()?.index_select(&Tensor::new(ids, &cpu())?, 0)?),
            Stored::Packed(p) => {
                let rows: Vec<Tensor> =
                    ids.iter().map(|&id| packed_rows(p, id as usize..id as usize + 1)).collect::<Result<_>>()?;
                Ok(Tensor::cat(&rows, 0)?)
            }
            Stored::Dense(t) => tensor_io::as_f32(&t.index_select(&Tensor::new(ids, &cpu())?, 0)?),
        }
    }

    /// The matrix with rows and columns swapped (GPT-2's Conv1D weights, stored `[in, out]`).
    pub fn transposed(self) -> Result<Stored> {
        match self {
            Stored::Dense(t) => Ok(Stored::Dense(t.t()?.contiguous()?)),
            Stored::Mapped(m) if matches!(m.layout, Layout::Kept) && m.shape.len() == 2 => {
                Ok(Stored::Mapped(Mapped { shape: vec![m.shape[1], m.shape[0]], layout: Layout::Transposed, ..m }))
            }
            Stored::Mapped(m) => Ok(Stored::Dense(m.to_f32()?.t()?.contiguous()?)),
            Stored::Packed(_) => Ok(Stored::Dense(self.to_f32()?.t()?.contiguous()?)),
        }
    }

    /// How many values are NaN or infinite (without an f32 copy of a mapped tensor).
    pub fn count_non_finite(&self) -> Result<usize> {
        match self {
            Stored::Dense(t) => Ok(tensor_io::tensor_to_vec(t)?.iter().filter(|v| !v.is_finite()).count()),
            Stored::Mapped(m) => m.count_non_finite(),
            Stored::Packed(p) => {
                let step = (1 << 20) / p.shape[1].max(1) + 1;
                let chunks: Vec<usize> = (0..p.shape[0]).step_by(step).collect();
                let counts = chunks.par_iter().map(|&r| {
                    let values = p.rows(r..(r + step).min(p.shape[0])).map_err(Error::Inconsistent)?;
                    Ok(values.iter().filter(|v| !v.is_finite()).count())
                });
                counts.sum::<Result<usize>>()
            }
        }
    }

    /// How the values are stored, for reports (`F32`, `BF16`, `Q4_1`).
    pub fn encoding_name(&self) -> String {
        match self {
            Stored::Dense(t) => format!("{:?}", t.dtype()).to_uppercase(),
            Stored::Mapped(m) => m.encoding.name().to_string(),
            Stored::Packed(p) => p.tensor.plan.label(),
        }
    }
}

/// Rows of a quantized matrix as an f32 tensor.
fn packed_rows(p: &RowAccess, rows: Range<usize>) -> Result<Tensor> {
    let values = p.rows(rows.clone()).map_err(Error::Inconsistent)?;
    Ok(Tensor::from_vec(values, (rows.len(), p.shape[1]), &cpu())?)
}

/// Named weights in a deterministic (sorted) order.
#[derive(Clone, Debug, Default)]
pub struct Weights(pub BTreeMap<String, Stored>);

impl Weights {
    /// The weight `name` in f32: converted or decoded on each call unless it is held in f32, so only the tensors
    /// being used exist in f32.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.stored(name)?.to_f32()
    }

    /// The shape of the weight `name` (nothing decoded).
    pub fn dims(&self, name: &str) -> Result<&[usize]> {
        Ok(self.stored(name)?.dims())
    }

    /// The `(rows, cols)` of the matrix `name` (nothing decoded).
    pub fn dims2(&self, name: &str) -> Result<(usize, usize)> {
        match *self.dims(name)? {
            [rows, cols] => Ok((rows, cols)),
            ref other => Err(Error::InvalidArgument(format!("weight `{name}` has shape {other:?}, not a matrix"))),
        }
    }

    /// The weight `name` as held.
    pub fn stored(&self, name: &str) -> Result<&Stored> {
        self.0.get(name).ok_or_else(|| Error::InvalidArgument(format!("weight `{name}` is not loaded")))
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.0.insert(name.into(), Stored::Dense(tensor));
    }

    pub fn insert_stored(&mut self, name: impl Into<String>, stored: Stored) {
        self.0.insert(name.into(), stored);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Stored)> {
        self.0.iter()
    }

    /// The names of the 2-D weights (the matrices).
    pub fn matrix_names(&self) -> Vec<String> {
        self.0.iter().filter(|(_, t)| t.rank() == 2).map(|(n, _)| n.clone()).collect()
    }

    pub fn param_count(&self) -> usize {
        self.0.values().map(Stored::elem_count).sum()
    }

    pub fn f32_bytes(&self) -> usize {
        self.param_count() * 4
    }
}

impl FromIterator<(String, Tensor)> for Weights {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        Weights(iter.into_iter().map(|(n, t)| (n, Stored::Dense(t))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ggml;

    /// A 6 x 64 matrix in Q8_0, mapped from a file.
    fn mapped_q8() -> (Stored, tempfile::TempDir) {
        let values: Vec<f32> = (0..6 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let bytes = ggml::encode(BlockType::Q8_0, &values, 64, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, &bytes).unwrap();
        // SAFETY: the file is ours and not changed while mapped.
        let file = Arc::new(unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()) }.unwrap());
        let mapped = Mapped::new(BlockType::Q8_0, vec![6, 64], file, 0..bytes.len(), Layout::Kept, "w").unwrap();
        (Stored::Mapped(mapped), dir)
    }

    #[test]
    fn rows_decoded_into_a_buffer_are_the_rows_decoded_as_a_tensor() {
        let (stored, _dir) = mapped_q8();
        let mut out = vec![f32::NAN; 3 * 64];
        stored.rows_into(2..5, &mut out).expect("a mapped matrix in our layout").unwrap();
        let tensor = stored.rows(2..5).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(out, tensor);
        // Rows outside the matrix, or a buffer of the wrong size, are errors, not panics.
        assert!(stored.rows_into(5..7, &mut vec![0.0; 2 * 64]).unwrap().is_err());
        assert!(stored.rows_into(0..2, &mut vec![0.0; 64]).unwrap().is_err());
        // Tensors held in memory are not decoded into a buffer.
        let dense = Stored::Dense(Tensor::zeros((2, 4), DType::F32, &cpu()).unwrap());
        assert!(dense.rows_into(0..2, &mut [0.0; 8]).is_none());
        // `with_rows` gives the same rows and shape either way.
        let pool = crate::memory::Pool::default();
        let pooled = stored.with_rows(2..5, &pool, |v, dims| (v.to_vec(), dims.to_vec())).unwrap();
        assert_eq!(pooled, (tensor, vec![3, 64]));
        let held = dense.with_rows(0..2, &pool, |v, dims| (v.to_vec(), dims.to_vec())).unwrap();
        assert_eq!(held, (vec![0.0; 8], vec![2, 4]));
        assert!(stored.with_rows(5..7, &pool, |_, _| ()).is_err());
    }
}
