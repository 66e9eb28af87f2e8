//! f32 views of candle tensors: a flat copy, or the contiguous slice in place.

use candle_core::{Storage, Tensor};

use crate::error::Result;

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
