//! Building blocks the architectures compose: causal attention and the matrix products under it.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(not(target_arch = "x86_64"))]
pub mod avx512 {
    //! No AVX-512 off x86-64: `available` is false, so the products are never called.
    pub fn available() -> bool {
        false
    }
    pub fn product(
        _: &[f32],
        _: &[f32],
        _: super::gemm::BLayout,
        _: &mut [f32],
        _: (usize, usize, usize),
        _: usize,
        _: bool,
    ) {
        unreachable!("the AVX-512 kernel exists only on x86-64")
    }
}
pub mod decoder;
pub mod factor;
pub mod gemm;
