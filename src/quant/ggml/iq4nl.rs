//! IQ4_NL: 32 weights on a fixed non-uniform 4-bit grid times one f16 scale (`ggml-common.h`'s `kvalues_iq4nl`).
//! The encoder is llama.cpp's `quantize_iq4_nl` (seven scales tried around the first fit); without an importance the
//! weights are x², as there.

use half::f16;

use super::legacy::get_f16;
use super::search::{GROUP_MAX_EPS, best_index, importance_weights, signed_max, sum_squares};

pub const QK: usize = 32;
pub const VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
const TRIES: i32 = 7;

pub fn encode(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let sigma2 = sum_squares(x) * (2.0 / QK as f32);
    let weights: [f32; QK] = match qw {
        Some(qw) => importance_weights(x, qw, sigma2),
        None => std::array::from_fn(|j| x[j] * x[j]),
    };
    let (amax, max) = signed_max(x);
    let scale = if amax < GROUP_MAX_EPS { 0.0 } else { fit_scale(x, &weights, max) };
    out[0..2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
    let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    for j in 0..QK / 2 {
        out[2 + j] = best_index(&VALUES, id * x[j]) | (best_index(&VALUES, id * x[j + QK / 2]) << 4);
    }
}

/// The least-squares scale over the grid for each of 2·TRIES + 2 starting scales, keeping the best.
fn fit_scale(x: &[f32], weights: &[f32; QK], max: f32) -> f32 {
    let v0 = VALUES[0] as f32;
    let sums = |id: f32| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..QK {
            let q = VALUES[best_index(&VALUES, id * x[j]) as usize] as f32;
            sumqx += weights[j] * q * x[j];
            sumq2 += weights[j] * q * q;
        }
        (sumqx, sumq2)
    };
    let (sumqx, sumq2) = sums(1.0 / (-max / v0));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -TRIES..=TRIES {
        let (sumqx, sumq2) = sums((itry + VALUES[0] as i32) as f32 / max);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

pub fn decode(b: &[u8], y: &mut [f32]) {
    let d = get_f16(b, 0);
    for j in 0..QK / 2 {
        y[j] = d * VALUES[(b[2 + j] & 0xf) as usize] as f32;
        y[j + QK / 2] = d * VALUES[(b[2 + j] >> 4) as usize] as f32;
    }
}
