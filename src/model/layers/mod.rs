//! Building blocks the architectures compose: causal attention and the matrix products under it.

pub mod attention;
pub mod decoder;
pub mod gemm;
