//! ggml's 32-weight blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (layouts from `ggml-common.h`). The reference encoders
//! are llama.cpp's `quantize_row_*_ref`; the weighted ones are its `quantize_row_*_impl` (Q8_0, which llama.cpp
//! leaves unweighted, gets the same symmetric search).

use half::f16;

use super::search::{AffineSearch, importance_weights, make_qkx_quants, make_qx_quants, signed_max, sum_squares};

pub const QK: usize = 32;

pub(super) fn put_f16(out: &mut [u8], at: usize, v: f32) {
    out[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

pub(super) fn get_f16(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Low nibbles hold weights 0..16, high nibbles 16..32; the fifth bits (Q5) go to a little-endian u32.
fn pack_nibbles(codes: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (codes[j], codes[j + QK / 2]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh
}

fn unpack_nibbles(qs: &[u8], qh: u32, codes: &mut [u8; QK]) {
    for j in 0..QK / 2 {
        codes[j] = (qs[j] & 0x0f) | ((((qh >> j) << 4) & 0x10) as u8);
        codes[j + QK / 2] = (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
    }
}

/// σ² of llama.cpp's weighted 32-blocks: the row's mean square.
pub fn row_sigma2(row: &[f32]) -> f32 {
    sum_squares(row) / row.len() as f32
}

const AFFINE: AffineSearch = AffineSearch { rmin: -0.9, rdelta: 0.05, steps: 36, use_mad: false };

// ---- Q4_0: d (f16), 16 bytes of nibbles; x = d·(q − 8)

pub fn encode_q4_0(x: &[f32], weighted: Option<(&[f32], f32)>, out: &mut [u8]) {
    let mut codes = [0u8; QK];
    let d = symmetric_fit(8, x, weighted, &mut codes);
    put_f16(out, 0, d);
    pack_nibbles(&codes, &mut out[2..18]);
}

pub fn decode_q4_0(b: &[u8], y: &mut [f32]) {
    let d = get_f16(b, 0);
    let mut codes = [0u8; QK];
    unpack_nibbles(&b[2..18], 0, &mut codes);
    for j in 0..QK {
        y[j] = (codes[j] as i32 - 8) as f32 * d;
    }
}

// ---- Q4_1: d, m (f16), 16 bytes of nibbles; x = d·q + m

pub fn encode_q4_1(x: &[f32], weighted: Option<(&[f32], f32)>, out: &mut [u8]) {
    let mut codes = [0u8; QK];
    let (d, m) = affine_fit(15, x, weighted, &mut codes);
    put_f16(out, 0, d);
    put_f16(out, 2, m);
    pack_nibbles(&codes, &mut out[4..20]);
}

pub fn decode_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (get_f16(b, 0), get_f16(b, 2));
    let mut codes = [0u8; QK];
    unpack_nibbles(&b[4..20], 0, &mut codes);
    for j in 0..QK {
        y[j] = codes[j] as f32 * d + m;
    }
}

// ---- Q5_0: d (f16), qh (u32), 16 bytes of nibbles; x = d·(q − 16)

pub fn encode_q5_0(x: &[f32], weighted: Option<(&[f32], f32)>, out: &mut [u8]) {
    let mut codes = [0u8; QK];
    let d = symmetric_fit(16, x, weighted, &mut codes);
    put_f16(out, 0, d);
    let qh = pack_nibbles(&codes, &mut out[6..22]);
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub fn decode_q5_0(b: &[u8], y: &mut [f32]) {
    let d = get_f16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut codes = [0u8; QK];
    unpack_nibbles(&b[6..22], qh, &mut codes);
    for j in 0..QK {
        y[j] = (codes[j] as i32 - 16) as f32 * d;
    }
}

// ---- Q5_1: d, m (f16), qh (u32), 16 bytes of nibbles; x = d·q + m

pub fn encode_q5_1(x: &[f32], weighted: Option<(&[f32], f32)>, out: &mut [u8]) {
    let mut codes = [0u8; QK];
    let (d, m) = affine_fit(31, x, weighted, &mut codes);
    put_f16(out, 0, d);
    put_f16(out, 2, m);
    let qh = pack_nibbles(&codes, &mut out[8..24]);
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

pub fn decode_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (get_f16(b, 0), get_f16(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let mut codes = [0u8; QK];
    unpack_nibbles(&b[8..24], qh, &mut codes);
    for j in 0..QK {
        y[j] = codes[j] as f32 * d + m;
    }
}

// ---- Q8_0: d (f16), 32 signed bytes; x = d·q

pub fn encode_q8_0(x: &[f32], weighted: Option<(&[f32], f32)>, out: &mut [u8]) {
    match weighted {
        None => {
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(out, 0, d);
            for j in 0..QK {
                out[2 + j] = (x[j] * id).round() as i8 as u8;
            }
        }
        Some((qw, sigma2)) => {
            let mut codes = [0i32; QK];
            let d = make_qx_quants(128, x, &mut codes, Some(&importance_weights::<QK>(x, qw, sigma2)));
            put_f16(out, 0, d);
            for j in 0..QK {
                out[2 + j] = (codes[j] - 128) as i8 as u8;
            }
        }
    }
}

pub fn decode_q8_0(b: &[u8], y: &mut [f32]) {
    let d = get_f16(b, 0);
    for j in 0..QK {
        y[j] = b[2 + j] as i8 as f32 * d;
    }
}

/// Scale from the signed extreme, codes in `[0, 2 nmax)` (`quantize_row_q4_0_ref`, `quantize_row_q5_0_ref`).
fn symmetric_reference(nmax: i8, x: &[f32], codes: &mut [u8; QK]) -> f32 {
    let d = signed_max(x).1 / -(nmax as f32);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let offset = nmax as f32 + 0.5;
    for j in 0..QK {
        codes[j] = ((x[j] * id + offset) as i8).min(2 * nmax - 1) as u8;
    }
    d
}

/// Min-max affine grid (`quantize_row_q4_1_ref`, `quantize_row_q5_1_ref`): returns (d, min).
fn affine_reference(nmax: u8, x: &[f32], codes: &mut [u8; QK]) -> (f32, f32) {
    let (min, max) = min_max(x);
    let d = (max - min) / nmax as f32;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..QK {
        codes[j] = (((x[j] - min) * id + 0.5) as u8).min(nmax);
    }
    (d, min)
}

/// The symmetric scale and codes: the reference fit, or llama.cpp's weighted search.
fn symmetric_fit(nmax: i8, x: &[f32], weighted: Option<(&[f32], f32)>, codes: &mut [u8; QK]) -> f32 {
    let Some((qw, sigma2)) = weighted else { return symmetric_reference(nmax, x, codes) };
    let mut levels = [0i32; QK];
    let d = make_qx_quants(nmax as i32, x, &mut levels, Some(&importance_weights::<QK>(x, qw, sigma2)));
    for j in 0..QK {
        codes[j] = levels[j] as u8;
    }
    d
}

/// The affine scale and min: the reference min-max fit, or llama.cpp's weighted search.
fn affine_fit(nmax: u8, x: &[f32], weighted: Option<(&[f32], f32)>, codes: &mut [u8; QK]) -> (f32, f32) {
    let Some((qw, sigma2)) = weighted else { return affine_reference(nmax, x, codes) };
    let weights = importance_weights::<QK>(x, qw, sigma2);
    let (d, min) = make_qkx_quants(nmax as i32, x, &weights, codes, AFFINE);
    (d, -min)
}
