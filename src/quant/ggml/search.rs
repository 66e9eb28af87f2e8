//! The scale searches of ggml's quantizers (`ggml-quants.c`), in the same float operations and order so the blocks
//! they lead to are byte-identical to llama.cpp's. Each takes an optional per-weight importance; without one it
//! falls back to the weighting llama.cpp uses for that search.

pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even, through the float adder (ggml's `nearest_int`; |x| < 2^22).
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0f32;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// The value of `values` (ascending) nearest to `x` (ggml's `best_index_int8`).
#[inline(always)]
pub fn best_index(values: &[i8; 16], x: f32) -> u8 {
    if x <= values[0] as f32 {
        return 0;
    }
    if x >= values[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < values[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (values[hi - 1] as f32) < (values[hi] as f32) - x { (hi - 1) as u8 } else { hi as u8 }
}

/// The largest magnitude and the signed value that has it (the first on ties).
#[inline(always)]
pub fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Σ x², in order.
pub fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// llama.cpp's weight of each value in a search given an importance `qw`: `qw · sqrt(σ² + x²)`.
pub fn importance_weights<const N: usize>(x: &[f32], qw: &[f32], sigma2: f32) -> [f32; N] {
    std::array::from_fn(|j| qw[j] * (sigma2 + x[j] * x[j]).sqrt())
}

/// Symmetric codes `l + nmax` in `[0, 2 nmax)` and their scale, searched over 19 candidate scales for the least
/// weighted squared error (`make_qx_quants` with rmse_type 1; weights default to x²).
pub fn make_qx_quants(nmax: i32, x: &[f32], codes: &mut [i32], weights: Option<&[f32]>) -> f32 {
    let (amax, max) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let weight = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..x.len() {
        let l = clamp(nearest_int(iscale * x[i]));
        codes[i] = l + nmax;
        let w = weight(i);
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * is as f32) / max;
        let (mut slx, mut sl2) = (0.0f32, 0.0f32);
        for i in 0..x.len() {
            let l = clamp(nearest_int(iscale * x[i]));
            let w = weight(i);
            slx += w * x[i] * l as f32;
            sl2 += w * l as f32 * l as f32;
        }
        if sl2 > 0.0 && slx * slx > best * sl2 {
            for i in 0..x.len() {
                codes[i] = nmax + clamp(nearest_int(iscale * x[i]));
            }
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    scale
}

/// Q3_K's reference search: symmetric codes refined one weight at a time (`make_q3_quants` with do_rmse).
pub fn make_q3_quants(nmax: i32, x: &[f32], codes: &mut [i32]) -> f32 {
    let (amax, max) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..x.len() {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        codes[i] = l;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..x.len() {
            let w = x[i] * x[i];
            let mut slx = sumlx - w * x[i] * codes[i] as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * codes[i] as f32 * codes[i] as f32;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != codes[i] {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        codes[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    codes.iter_mut().for_each(|c| *c += nmax);
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Parameters of the affine (scale + min) searches.
#[derive(Clone, Copy)]
pub struct AffineSearch {
    pub rmin: f32,
    pub rdelta: f32,
    pub steps: i32,
    pub use_mad: bool,
}

/// Affine codes in `[0, nmax]` with `x ≈ scale·l − min`, the scale and min fitted by weighted least squares over
/// `steps + 1` candidate grids: returns (scale, min). `make_qkx2_quants` and `make_qkx3_quants` in one (they
/// differ only in defaults the callers here always supply).
pub fn make_qkx_quants(nmax: i32, x: &[f32], weights: &[f32], codes: &mut [u8], search: AffineSearch) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min_ggml(x[i]);
        max = max.max_ggml(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        codes.fill(0);
        return (0.0, -min);
    }
    let error = |d: f32, w: f32| if search.use_mad { w * d.abs() } else { w * (d * d) };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        codes[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        let diff = scale * codes[i] as f32 + min - x[i];
        best_error += error(diff, weights[i]);
    }
    if search.steps < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    for is in 0..=search.steps {
        iscale = (search.rmin + search.rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let w = weights[i];
            sum_l += w * l as f32;
            sum_l2 += w * l as f32 * l as f32;
            sum_xl += w * l as f32 * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += error(diff, weights[i]);
            }
            if cur_error < best_error {
                codes[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Non-negative codes in `[0, nmax]` for the sub-block scales of a super-block (`make_qp_quants`).
pub fn make_qp_quants(nmax: i32, x: &[f32], codes: &mut [u8], weights: &[f32]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, &v| m.max_ggml(v));
    if max < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..x.len() {
        codes[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..x.len() {
        let diff = x[i] - scale * codes[i] as f32;
        best_mse += weights[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1f32 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..x.len() {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    let mut levels = [0i32; 16];
    for i in 0..x.len() {
        let l = nearest_int(iscale * x[i]).min(nmax);
        levels[i] = l;
        sumlx += weights[i] * x[i] * l as f32;
        suml2 += weights[i] * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..x.len() {
            let w = weights[i];
            let mut slx = sumlx - w * x[i] * levels[i] as f32;
            let mut sl2 = suml2 - w * levels[i] as f32 * levels[i] as f32;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != levels[i] {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for i in 0..x.len() {
        codes[i] = levels[i] as u8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// C's `if (v < m) m = v` / `if (v > m) m = v`, which differ from `f32::min`/`max` only on NaN (refused earlier).
trait GgmlMinMax {
    fn min_ggml(self, v: f32) -> f32;
    fn max_ggml(self, v: f32) -> f32;
}

impl GgmlMinMax for f32 {
    #[inline(always)]
    fn min_ggml(self, v: f32) -> f32 {
        if v < self { v } else { self }
    }
    #[inline(always)]
    fn max_ggml(self, v: f32) -> f32 {
        if v > self { v } else { self }
    }
}
