//! Building blocks the architectures compose: causal attention and the matrix products under it.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod decoder;
pub mod gemm;
