//! f32 views of candle tensors: a flat copy, or the contiguous slice in place.

use candle_core::{DType, Storage, Tensor};

use crate::error::Result;

/// Flattened f32 values of a tensor (of any float dtype).
pub fn tensor_to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// The tensor in f32: itself when it is, else a converted copy (weights kept in bf16/f16 become f32 one tensor at
/// a time, when they are used).
pub fn as_f32(t: &Tensor) -> Result<Tensor> {
    Ok(if t.dtype() == DType::F32 { t.clone() } else { t.to_dtype(DType::F32)? })
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor (a bf16/f16 one through an f32 copy).
pub fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() != DType::F32 {
        return with_f32_slice(&as_f32(t)?.contiguous()?, f);
    }
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
