//! Reading safetensors files into f32 tensors, with errors that name the file and the tensor.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Storage, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::cpu;
use crate::error::{Error, Result};

/// Maps a file read-only; safetensors files are read in place, not copied.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and lives only while we copy out of it; a concurrent writer would be a user error.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

pub fn parse_safetensors<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::bad_file(path, format!("not a valid safetensors file ({e})")))
}

/// Every floating-point tensor of a safetensors file, converted to f32, keyed by its stored name, with the
/// dtype it was stored in.
pub fn read_safetensors_f32(path: &Path) -> Result<BTreeMap<String, (Tensor, String)>> {
    let bytes = map_file(path)?;
    let st = parse_safetensors(path, &bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let values = to_f32(path, &name, view.dtype(), view.data())?;
        let tensor = Tensor::from_vec(values, view.shape(), &cpu())?;
        out.insert(name, (tensor, format!("{:?}", view.dtype())));
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

/// Flattened f32 values of a tensor.
pub fn tensor_to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor.
pub fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(crate::error::Error::InvalidArgument("tensor is not on the CPU".into()));
    };
    let all = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| crate::error::Error::InvalidArgument("tensor is not contiguous".into()))?;
    Ok(f(&all[start..end]))
}
