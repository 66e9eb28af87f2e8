//! Vectorized `exp` for the hot loops of evaluation: attention softmax, SwiGLU and the log-sum-exp of every
//! logits row (~60M exponentials per 512-token window of SmolLM2, ~10% of a window's time with libm's scalar exp).
//!
//! `exp` below is a Cody–Waite range reduction with a degree-6 polynomial: relative error under 3e-7 (libm's
//! `expf` is under 1 ulp = 6e-8), exact 0 for -inf. Written as plain scalar code that LLVM vectorizes, compiled
//! twice: for AVX2+FMA when the CPU has them (checked once at run time) and for the baseline target otherwise.

use std::sync::OnceLock;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without SSE4.1's `roundps`.
const ROUNDER: f32 = 12_582_912.0;

/// e^x for x in f32's range; below -87.3 (where e^x is subnormal) it returns 0, which softmax sums want.
/// Branch-free integer bit tricks only, so loops over it vectorize.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let clamped = x.clamp(-87.3, 88.3);
    let shifted = clamped * LOG2_E + ROUNDER;
    // The low mantissa bits of `shifted` hold round(x * log2 e) offset by ROUNDER's bit pattern.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let n = shifted - ROUNDER;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n_int + 127) << 23) as u32);
    if x < -87.3 { 0.0 } else { p * scale }
}

/// Σ values in 8 independent lanes (a sequential f32 sum would not vectorize).
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn kernel($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    kernel($($arg),*)
                }
                // The same AVX2 code with AVX-512's 32 registers and encodings: fewer spills.
                #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    kernel($($arg),*)
                }
                match $crate::math::Simd::best() {
                    // SAFETY: the CPU has the features of the variant (detected at run time).
                    Some($crate::math::Simd::Avx512) => return unsafe { avx512($($arg),*) },
                    Some($crate::math::Simd::Avx2) => return unsafe { avx2($($arg),*) },
                    None => {}
                }
            }
            kernel($($arg),*)
        }
    };
}

/// Kernels compiled three times (AVX-512 registers, AVX2+FMA and baseline) are declared with this macro; rustc
/// never contracts a*b+c into an FMA on its own, so all give bit-identical results.
pub(crate) use dispatch;

/// The x86-64 vector extensions our kernels are compiled for: AVX2 with FMA, and the same with AVX-512F and VL
/// (32 registers, the same operations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    Avx2,
    Avx512,
}

impl Simd {
    /// The best this CPU has (detected once: every dispatched kernel call asks).
    pub(crate) fn best() -> Option<Simd> {
        static BEST: OnceLock<Option<Simd>> = OnceLock::new();
        *BEST.get_or_init(|| [Simd::Avx512, Simd::Avx2].into_iter().find(|s| s.here()))
    }

    /// All that this CPU has (tests compare each with the portable code).
    #[cfg(test)]
    pub(crate) fn supported() -> Vec<Simd> {
        [Simd::Avx2, Simd::Avx512].into_iter().filter(|s| s.here()).collect()
    }

    /// Whether the CPU has it (a caller given a `Simd` checks before running code compiled for it). The standard
    /// library caches what it detects, so asking is a load.
    pub(crate) fn here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Simd::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Simd::Avx512 => {
                Simd::Avx2.here() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    }
}

dispatch! {
    /// (min, max) of `values`, in eight lanes; (inf, -inf) when empty.
    pub fn min_max(values: &[f32]) -> (f32, f32) {
        let (mut lo, mut hi) = ([f32::INFINITY; 8], [f32::NEG_INFINITY; 8]);
        let mut chunks = values.chunks_exact(8);
        for chunk in &mut chunks {
            for j in 0..8 {
                lo[j] = lo[j].min(chunk[j]);
                hi[j] = hi[j].max(chunk[j]);
            }
        }
        for &v in chunks.remainder() {
            (lo[0], hi[0]) = (lo[0].min(v), hi[0].max(v));
        }
        (lo.into_iter().fold(f32::INFINITY, f32::min), hi.into_iter().fold(f32::NEG_INFINITY, f32::max))
    }
}

dispatch! {
    /// Σ v², in f32 lanes (a run of a few hundred values keeps f32 precision).
    pub fn sum_of_squares(values: &[f32]) -> f64 {
        let mut lanes = [0f32; 8];
        let mut chunks = values.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += x * x;
            }
        }
        (lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|x| x * x).sum::<f32>()) as f64
    }
}

dispatch! {
    /// `row[i] = e^(row[i] - shift)`, returning the sum (in f64 across blocks of 256, so long rows keep precision).
    pub fn exp_shifted_in_place(row: &mut [f32], shift: f32) -> f64 {
        let mut total = 0f64;
        for block in row.chunks_mut(256) {
            for x in block.iter_mut() {
                *x = exp(*x - shift);
            }
            total += lane_sum(block) as f64;
        }
        total
    }
}

dispatch! {
    /// Σ e^(row[i] - shift), in f64 across blocks of 256.
    pub fn sum_exp_shifted(row: &[f32], shift: f32) -> f64 {
        let mut total = 0f64;
        let mut buffer = [0f32; 256];
        for block in row.chunks(256) {
            let buffer = &mut buffer[..block.len()];
            for (b, &x) in buffer.iter_mut().zip(block) {
                *b = exp(x - shift);
            }
            total += lane_sum(buffer) as f64;
        }
        total
    }
}

dispatch! {
    /// SwiGLU's `silu(gate) * up`, written into `gate`.
    pub fn silu_mul_in_place(gate: &mut [f32], up: &[f32]) -> () {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

dispatch! {
    /// The largest element (-inf for an empty slice; NaN elements are ignored).
    pub fn max(row: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane = lane.max(x);
            }
        }
        chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_within_3e_7_relative() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn dispatched_kernels_agree_with_scalar_formulas() {
        let row: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 7.0 - 5.0).collect();
        let shift = max(&row);
        assert_eq!(shift, row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let want: f64 = row.iter().map(|&x| ((x - shift) as f64).exp()).sum();
        assert!((sum_exp_shifted(&row, shift) - want).abs() < 1e-6 * want);
        let mut shifted = row.clone();
        assert!((exp_shifted_in_place(&mut shifted, shift) - want).abs() < 1e-6 * want);
        let mut gate = row.clone();
        silu_mul_in_place(&mut gate, &row);
        for (g, x) in gate.iter().zip(&row) {
            let want = (*x as f64) / (1.0 + (-*x as f64).exp()) * *x as f64;
            assert!((*g as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
        }
    }
}
