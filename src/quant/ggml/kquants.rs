//! ggml's k-quants: super-blocks of 256 weights in 16 or 8 sub-blocks whose scales (and mins) are themselves
//! quantized. Q2_K, Q3_K, Q4_K, Q5_K, Q6_K with the layouts of `ggml-common.h`; the reference encoders are
//! llama.cpp's `quantize_row_*_ref`, the weighted ones its `quantize_row_*_impl`.

use super::legacy::{get_f16, put_f16};
use super::search::{
    AffineSearch, GROUP_MAX_EPS, importance_weights, make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants,
    nearest_int, sum_squares,
};

pub const QK_K: usize = 256;

/// A sub-block's search weights (`importance_weights`) and their sum, in llama.cpp's order.
fn sub_block_weights<const N: usize>(xb: &[f32], qw: &[f32], sigma2: f32) -> ([f32; N], f32) {
    let weights: [f32; N] = importance_weights(xb, qw, sigma2);
    let mut sum = 0.0f32;
    for w in weights {
        sum += w;
    }
    (weights, sum)
}

/// Four 2-bit planes: byte `l` of each 32-byte group holds weights l, l+32, l+64, l+96 of its 128.
fn pack_2bit(codes: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for l in 0..32 {
            qs[j / 4 + l] =
                codes[j + l] | (codes[j + l + 32] << 2) | (codes[j + l + 64] << 4) | (codes[j + l + 96] << 6);
        }
    }
}

// ---- Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin (f16)

const Q2_REF: AffineSearch = AffineSearch { rmin: -0.5, rdelta: 0.1, steps: 15, use_mad: true };
const WEIGHTED: AffineSearch = AffineSearch { rmin: -0.9, rdelta: 0.05, steps: 36, use_mad: false };

pub fn encode_q2_k(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    let (d, dmin);
    match qw {
        None => {
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..16 {
                let xb = &x[16 * j..16 * j + 16];
                let weights: [f32; 16] = std::array::from_fn(|l| xb[l].abs());
                (scales[j], mins[j]) = make_qkx_quants(3, xb, &weights, &mut codes[16 * j..16 * j + 16], Q2_REF);
                max_scale = if scales[j] > max_scale { scales[j] } else { max_scale };
                max_min = if mins[j] > max_min { mins[j] } else { max_min };
            }
            let sc = &mut out[0..16];
            if max_scale > 0.0 {
                let iscale = 15.0 / max_scale;
                for j in 0..16 {
                    sc[j] = nearest_int(iscale * scales[j]) as u8;
                }
                d = max_scale / 15.0;
            } else {
                sc.fill(0);
                d = 0.0;
            }
            if max_min > 0.0 {
                let iscale = 15.0 / max_min;
                for j in 0..16 {
                    sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
                }
                dmin = max_min / 15.0;
            } else {
                dmin = 0.0;
            }
        }
        Some(qw) => {
            let sigma2 = sum_squares(&x[..QK_K]) / QK_K as f32;
            let mut sw = [0.0f32; 16];
            for j in 0..16 {
                let xb = &x[16 * j..16 * j + 16];
                let weights: [f32; 16];
                (weights, sw[j]) = sub_block_weights(xb, &qw[16 * j..], sigma2);
                (scales[j], mins[j]) = make_qkx_quants(3, xb, &weights, &mut codes[16 * j..16 * j + 16], WEIGHTED);
            }
            let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
            d = make_qp_quants(15, &scales, &mut ls, &sw);
            dmin = make_qp_quants(15, &mins, &mut lm, &sw);
            for j in 0..16 {
                out[j] = ls[j] | (lm[j] << 4);
            }
        }
    }
    put_f16(out, 80, d);
    put_f16(out, 82, dmin);
    let (d, dmin) = (get_f16(out, 80), get_f16(out, 82));
    for j in 0..16 {
        let dl = d * (out[j] & 0xf) as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * (out[j] >> 4) as f32;
        for i in 0..16 {
            codes[16 * j + i] = nearest_int((x[16 * j + i] + ml) / dl).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&codes, &mut out[16..80]);
}

pub fn decode_q2_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (get_f16(b, 80), get_f16(b, 82));
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let mut out = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xf) as f32, min * (sc >> 4) as f32);
                for l in 0..16 {
                    y[out] = dl * ((q[l + 16 * half] >> shift) & 3) as i8 as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

// ---- Q3_K: hmask[32], qs[64], scales[12] (6-bit, offset 32), d (f16)

pub fn encode_q3_k(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut levels = [0i32; QK_K];
    let mut scales = [0.0f32; 16];
    out[96..108].fill(0);
    let d = match qw {
        None => {
            let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
            for j in 0..16 {
                scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut levels[16 * j..16 * j + 16]);
                if scales[j].abs() > amax {
                    amax = scales[j].abs();
                    max_scale = scales[j];
                }
            }
            if max_scale != 0.0 {
                let iscale = -32.0 / max_scale;
                for j in 0..16 {
                    let l = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) as i32 + 32;
                    set_q3_scale(&mut out[96..108], j, l);
                }
                1.0 / iscale
            } else {
                0.0
            }
        }
        Some(qw) => {
            let sigma2 = 2.0 * sum_squares(&x[..QK_K]) / QK_K as f32;
            let mut sw = [0.0f32; 16];
            for j in 0..16 {
                let xb = &x[16 * j..16 * j + 16];
                let weights: [f32; 16];
                (weights, sw[j]) = sub_block_weights(xb, &qw[16 * j..], sigma2);
                scales[j] = make_qx_quants(4, xb, &mut levels[16 * j..16 * j + 16], Some(&weights));
            }
            let mut ls = [0i32; 16];
            let d = make_qx_quants(32, &scales, &mut ls, Some(&sw));
            for (j, &l) in ls.iter().enumerate() {
                set_q3_scale(&mut out[96..108], j, l);
            }
            d
        }
    };
    put_f16(out, 108, d);
    let d = get_f16(out, 108);
    for j in 0..16 {
        let dl = d * q3_scale(&out[96..108], j) as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 0..16 {
            levels[16 * j + i] = nearest_int(x[16 * j + i] / dl).clamp(-4, 3) + 4;
        }
    }
    let hmask = &mut out[0..32];
    hmask.fill(0);
    let mut codes = [0u8; QK_K];
    for j in 0..QK_K {
        let mut l = levels[j];
        if l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        codes[j] = l as u8;
    }
    pack_2bit(&codes, &mut out[32..96]);
}

fn set_q3_scale(scales: &mut [u8], j: usize, l: i32) {
    if j < 8 {
        scales[j] = (l & 0xf) as u8;
    } else {
        scales[j - 8] |= ((l & 0xf) << 4) as u8;
    }
    scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
}

fn q3_scale(scales: &[u8], j: usize) -> i32 {
    let low = if j < 8 { scales[j] & 0xf } else { scales[j - 8] >> 4 };
    (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32
}

pub fn decode_q3_k(b: &[u8], y: &mut [f32]) {
    let d_all = get_f16(b, 108);
    let (hm, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * q3_scale(scales, is) as f32;
                is += 1;
                for l in 0..16 {
                    let i = l + 16 * half;
                    let low = ((q[i] >> shift) & 3) as i8;
                    let high = if hm[i] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

// ---- Q4_K / Q5_K: d, dmin (f16), scales[12] (6-bit scales and mins), [qh[32]], qs[128]

fn set_scale_min_k4(scales: &mut [u8], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        scales[j - 4] |= (ls >> 4) << 6;
        scales[j] |= (lm >> 4) << 6;
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The eight (scale, min) pairs of a Q4_K/Q5_K super-block written to `scales[12]` and d/dmin at `out[0..4]`;
/// returns the codes in `[0, nmax]` requantized against the stored (rounded) scales.
fn encode_affine_k(x: &[f32], qw: Option<&[f32]>, nmax: i32, out: &mut [u8], codes: &mut [u8; QK_K]) {
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    out[4..16].fill(0);
    match qw {
        None => {
            let search = if nmax == 15 {
                AffineSearch { rmin: -1.0, rdelta: 0.1, steps: 20, use_mad: false }
            } else {
                AffineSearch { rmin: -0.5, rdelta: 0.1, steps: 15, use_mad: false }
            };
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..8 {
                let xb = &x[32 * j..32 * j + 32];
                let av_x = (sum_squares(xb) / 32.0).sqrt();
                let weights: [f32; 32] = std::array::from_fn(|l| av_x + xb[l].abs());
                (scales[j], mins[j]) = make_qkx_quants(nmax, xb, &weights, &mut codes[32 * j..32 * j + 32], search);
                max_scale = if scales[j] > max_scale { scales[j] } else { max_scale };
                max_min = if mins[j] > max_min { mins[j] } else { max_min };
            }
            let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
                set_scale_min_k4(&mut out[4..16], j, ls, lm);
            }
            put_f16(out, 0, max_scale / 63.0);
            put_f16(out, 2, max_min / 63.0);
        }
        Some(qw) => {
            let sigma2 = 2.0 * sum_squares(&x[..QK_K]) / QK_K as f32;
            let mut sw = [0.0f32; 8];
            for j in 0..8 {
                let xb = &x[32 * j..32 * j + 32];
                let weights: [f32; 32];
                (weights, sw[j]) = sub_block_weights(xb, &qw[32 * j..], sigma2);
                (scales[j], mins[j]) = make_qkx_quants(nmax, xb, &weights, &mut codes[32 * j..32 * j + 32], WEIGHTED);
            }
            let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
            let d = make_qp_quants(63, &scales, &mut ls, &sw);
            let m = make_qp_quants(63, &mins, &mut lm, &sw);
            for j in 0..8 {
                set_scale_min_k4(&mut out[4..16], j, ls[j].min(63), lm[j].min(63));
            }
            put_f16(out, 0, d);
            put_f16(out, 2, m);
        }
    }
    let (d, dmin) = (get_f16(out, 0), get_f16(out, 2));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &out[4..16]);
        let dl = d * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            codes[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dl).clamp(0, nmax) as u8;
        }
    }
}

pub fn encode_q4_k(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    encode_affine_k(x, qw, 15, out, &mut codes);
    let qs = &mut out[16..144];
    for (n, j) in (0..QK_K).step_by(64).enumerate() {
        for l in 0..32 {
            qs[32 * n + l] = codes[j + l] | (codes[j + l + 32] << 4);
        }
    }
}

pub fn decode_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (get_f16(b, 0), get_f16(b, 2));
    let scales = &b[4..16];
    for n in 0..4 {
        let q = &b[16 + 32 * n..48 + 32 * n];
        let (sc1, m1) = scale_min_k4(2 * n, scales);
        let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1 as f32, min * m1 as f32, d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            y[64 * n + l] = d1 * (q[l] & 0xf) as f32 - m1;
            y[64 * n + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

pub fn encode_q5_k(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    encode_affine_k(x, qw, 31, out, &mut codes);
    out[16..48].fill(0);
    let (mut m1, mut m2) = (1u8, 2u8);
    for (n, base) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let (mut l1, mut l2) = (codes[base + j], codes[base + j + 32]);
            if l1 > 15 {
                l1 -= 16;
                out[16 + j] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                out[16 + j] |= m2;
            }
            out[48 + 32 * n + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
}

pub fn decode_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (get_f16(b, 0), get_f16(b, 2));
    let (scales, qh) = (&b[4..16], &b[16..48]);
    let (mut u1, mut u2) = (1u8, 2u8);
    for n in 0..4 {
        let ql = &b[48 + 32 * n..80 + 32 * n];
        let (sc1, m1) = scale_min_k4(2 * n, scales);
        let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1 as f32, min * m1 as f32, d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * n + l] = d1 * ((ql[l] & 0xf) + h1) as f32 - m1;
            y[64 * n + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
        u1 <<= 2;
        u2 <<= 2;
    }
}

// ---- Q6_K: ql[128], qh[64], scales[16] (i8), d (f16); x = d·scale·(q − 32)

pub fn encode_q6_k(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut levels = [0i32; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        let weights = qw.map(|qw| &qw[16 * ib..16 * ib + 16]);
        scales[ib] = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut levels[16 * ib..16 * ib + 16], weights);
        if scales[ib].abs() > max_abs {
            max_abs = scales[ib].abs();
            max_scale = scales[ib];
        }
    }
    if max_abs < GROUP_MAX_EPS {
        out[..210].fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(out, 208, 1.0 / iscale);
    for ib in 0..16 {
        out[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d = get_f16(out, 208);
    for j in 0..16 {
        let dl = d * out[192 + j] as i8 as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 0..16 {
            levels[16 * j + i] = nearest_int(x[16 * j + i] / dl).clamp(-32, 31) + 32;
        }
    }
    let l = |i: usize| levels[i] as u8;
    for (n, j) in (0..QK_K).step_by(128).enumerate() {
        let (ql, qh) = (64 * n, 128 + 32 * n);
        for k in 0..32 {
            out[ql + k] = (l(j + k) & 0xf) | ((l(j + k + 64) & 0xf) << 4);
            out[ql + 32 + k] = (l(j + k + 32) & 0xf) | ((l(j + k + 96) & 0xf) << 4);
            out[qh + k] = (l(j + k) >> 4)
                | ((l(j + k + 32) >> 4) << 2)
                | ((l(j + k + 64) >> 4) << 4)
                | ((l(j + k + 96) >> 4) << 6);
        }
    }
}

pub fn decode_q6_k(b: &[u8], y: &mut [f32]) {
    let d = get_f16(b, 208);
    for n in 0..2 {
        let (ql, qh, sc) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..160 + 32 * n], &b[192 + 8 * n..200 + 8 * n]);
        let yo = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            yo[l] = d * sc[is] as i8 as f32 * q1 as f32;
            yo[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            yo[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            yo[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}
