//! Least-squares grids: each block's scale (and min) chosen to minimise the importance-weighted squared error
//! Σ a_j (w_j − q(w_j))², where a_j is E[x_j²] of the weight's input column on calibration text (so the sum is
//! the expected squared error of the layer's output), or 1 without calibration. Codes are then rounded to the
//! nearest level exactly as in `rtn`, and the stored form is the same: only the grid differs.
//!
//! The search is llama.cpp's (`make_qkx2_quants`): a range of candidate inverse scales around the min-max one,
//! the codes each gives, and for those codes the (scale, min) that solve the weighted least-squares problem in
//! closed form; the best candidate is refined by re-coding and solving again. The min-max grid is a candidate too,
//! so a least-squares grid never has a larger weighted error than RTN's on its block.

use half::f16;

use super::rtn::{self, GridFit};
use super::{InputStats, Quantizer, TierSource};
use crate::quant::spec::{Grid, TensorPlan};
use crate::quant::stored::{BlockGrid, QuantizedTensor};

/// Importance-weighted least-squares scale (and min) per block, round to nearest.
pub struct LeastSquares;

impl Quantizer for LeastSquares {
    fn name(&self) -> &'static str {
        "least-squares"
    }
    fn quantize(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        plan: &TensorPlan,
        tiers: &TierSource,
        inputs: InputStats,
    ) -> QuantizedTensor {
        let weights = column_weights(inputs.mean_square, cols);
        rtn::quantize_fitted(w, rows, cols, plan, tiers, GridFit::LeastSquares(&weights))
    }
}

/// Per-column weights scaled to mean 1, with a floor so that a column never seen active (E[x²] = 0) still has
/// its error counted a little and no block's problem is degenerate. Without calibration every column counts 1.
pub fn column_weights(columns: Option<&[f32]>, cols: usize) -> Vec<f32> {
    let Some(c) = columns.filter(|c| c.len() == cols) else { return vec![1.0; cols] };
    let mean = c.iter().map(|&v| v.max(0.0) as f64).sum::<f64>() / cols.max(1) as f64;
    if !(mean > 0.0 && mean.is_finite()) {
        return vec![1.0; cols];
    }
    c.iter().map(|&v| (v.max(0.0) as f64 / mean) as f32 + FLOOR).collect()
}

const FLOOR: f32 = 1e-3;
/// Candidate inverse scales: (levels + RMIN + RDELTA·i) / range for i in 0..=NSTEP (llama.cpp's Q4_K search).
const RMIN: f32 = -1.0;
const RDELTA: f32 = 0.1;
const NSTEP: usize = 20;
/// Re-code-and-solve rounds after the search.
const REFINE: usize = 2;

crate::math::dispatch! {
    /// The grid of one tier of one block: values `x` with weights `a`, spanning `[lo, hi]` (compiled for AVX2
    /// where the CPU has it: the search is most of a least-squares quantization's time).
    pub fn fit(grid: Grid, bits: u8, x: &[f32], a: &[f32], lo: f32, hi: f32) -> BlockGrid {
        let min_max = rtn::fit(grid, bits, lo, hi);
        if hi <= lo || x.len() < 2 {
            return min_max;
        }
        let candidate = match grid {
            Grid::Asymmetric => search_asymmetric(bits, x, a, lo, hi),
            Grid::Symmetric => search_symmetric(bits, x, a, lo.abs().max(hi.abs())),
        };
        let Some(candidate) = candidate.and_then(|(scale, min)| stored(grid, bits, scale, min)) else {
            return min_max;
        };
        if weighted_error(&candidate, x, a) < weighted_error(&min_max, x, a) { candidate } else { min_max }
    }
}

/// The best (scale, min) of the asymmetric search, before f16 rounding.
#[inline(always)]
fn search_asymmetric(bits: u8, x: &[f32], a: &[f32], lo: f32, hi: f32) -> Option<(f32, f32)> {
    let levels = ((1u32 << bits) - 1) as f32;
    let sums = Sums::of(x, a);
    let lattice = |shift: f32, inv_scale: f32| Lattice { shift, inv_scale, offset: 0.0, max_code: levels };
    let mut best: Option<(f64, f32, f32)> = None;
    for step in 0..=NSTEP {
        let inv_scale = (levels + RMIN + RDELTA * step as f32) / (hi - lo);
        keep_better(&mut best, sums.solve_asymmetric(code_sums(x, a, lattice(lo, inv_scale))));
    }
    for _ in 0..REFINE {
        let (_, scale, min) = best?;
        keep_better(&mut best, sums.solve_asymmetric(code_sums(x, a, lattice(min, 1.0 / scale))));
    }
    best.map(|(_, scale, min)| (scale, min))
}

/// The best scale of the symmetric search (levels −m..m, zero a level), before f16 rounding.
#[inline(always)]
fn search_symmetric(bits: u8, x: &[f32], a: &[f32], amax: f32) -> Option<(f32, f32)> {
    let m = ((1u32 << (bits - 1)) - 1) as f32;
    let sums = Sums::of(x, a);
    let lattice = |inv_scale: f32| Lattice { shift: 0.0, inv_scale, offset: m, max_code: 2.0 * m };
    let mut best: Option<(f64, f32, f32)> = None;
    for step in 0..=NSTEP {
        let inv_scale = (m - 0.5 + RDELTA * step as f32) / amax;
        keep_better(&mut best, sums.solve_symmetric(code_sums(x, a, lattice(inv_scale))));
    }
    for _ in 0..REFINE {
        let (_, scale, _) = best?;
        keep_better(&mut best, sums.solve_symmetric(code_sums(x, a, lattice(1.0 / scale))));
    }
    best.map(|(_, scale, _)| (scale, 0.0))
}

/// Keeps the candidate (error, scale, min) with the smaller error.
#[inline(always)]
fn keep_better(best: &mut Option<(f64, f32, f32)>, candidate: Option<(f64, f32, f32)>) {
    if let Some(c) = candidate.filter(|c| best.is_none_or(|b| c.0 < b.0)) {
        *best = Some(c);
    }
}

/// The candidate as stored (f16 parameters), when it is a usable grid.
#[inline(always)]
fn stored(grid: Grid, bits: u8, scale: f32, min: f32) -> Option<BlockGrid> {
    let (scale, min) = (f16::from_f32(scale), f16::from_f32(min));
    (scale.is_finite() && min.is_finite() && scale.to_f32() > 0.0).then_some(BlockGrid { scale, min, grid, bits })
}

/// Σ a (x − q(x))² on `grid`, codes rounded to nearest as the coder does.
#[inline(always)]
pub fn weighted_error(grid: &BlockGrid, x: &[f32], a: &[f32]) -> f64 {
    let fast = grid.fast();
    let lattice = Lattice { shift: fast.min, inv_scale: fast.inv_scale, offset: fast.offset, max_code: fast.max_code };
    let mut levels = [0f32; RUN];
    let mut total = 0f64;
    for (xs, ws) in x.chunks(RUN).zip(a.chunks(RUN)) {
        let errors = &mut levels[..xs.len()];
        for (e, &v) in errors.iter_mut().zip(xs) {
            *e = v - (lattice.level(v) * fast.scale + fast.min);
        }
        total += weighted_squares_run(errors, ws);
    }
    total
}

/// Σ w·d² over a run, in 8 f32 lanes then f64.
#[inline(always)]
fn weighted_squares_run(d: &[f32], w: &[f32]) -> f64 {
    let mut acc = [0f32; 8];
    let (dc, wc) = (d.chunks_exact(8), w.chunks_exact(8));
    let (dr, wr) = (dc.remainder(), wc.remainder());
    for (d, w) in dc.zip(wc) {
        for j in 0..8 {
            acc[j] += w[j] * d[j] * d[j];
        }
    }
    for (j, (d, w)) in dr.iter().zip(wr).enumerate() {
        acc[j] += w * d * d;
    }
    lane_total(acc)
}

/// The lanes of (Σ w·l, Σ w·l², Σ w·l·x) over a run.
#[inline(always)]
fn level_sums_run(l: &[f32], x: &[f32], w: &[f32]) -> [[f32; 8]; 3] {
    let (mut al, mut all, mut alx) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let (lc, xc, wc) = (l.chunks_exact(8), x.chunks_exact(8), w.chunks_exact(8));
    let (lr, xr, wr) = (lc.remainder(), xc.remainder(), wc.remainder());
    for ((l, x), w) in lc.zip(xc).zip(wc) {
        for j in 0..8 {
            let wl = w[j] * l[j];
            al[j] += wl;
            all[j] += wl * l[j];
            alx[j] += wl * x[j];
        }
    }
    for (j, ((l, x), w)) in lr.iter().zip(xr).zip(wr).enumerate() {
        let wl = w * l;
        al[j] += wl;
        all[j] += wl * l;
        alx[j] += wl * x;
    }
    [al, all, alx]
}

/// The lanes widened to f64 and added (the closed-form errors subtract sums of this size from each other).
#[inline(always)]
fn lane_total(l: [f32; 8]) -> f64 {
    l.iter().map(|&v| v as f64).sum()
}

/// Codes on a grid: code = clamp(round((x − shift)·inv_scale) + offset, 0, max_code), level = code − offset.
#[derive(Clone, Copy)]
struct Lattice {
    shift: f32,
    inv_scale: f32,
    offset: f32,
    max_code: f32,
}

impl Lattice {
    /// The level of `v` (its code minus the offset), as the coder rounds it.
    #[inline(always)]
    fn level(&self, v: f32) -> f32 {
        let c = (v - self.shift) * self.inv_scale + self.offset + 0.5;
        let c = if c > 0.0 { c } else { 0.0 };
        let c = if c < self.max_code { c } else { self.max_code };
        // SAFETY: c lies in [0, max_code] (a NaN became 0 above), so it fits an i32; the unchecked conversion
        // vectorizes where `as` would not.
        (unsafe { c.to_int_unchecked::<i32>() }) as f32 - self.offset
    }
}

/// The sums of a block that do not depend on the codes.
struct Sums {
    /// Σ a, Σ a x, Σ a x².
    a: f64,
    ax: f64,
    axx: f64,
}

/// The sums that do: Σ a l, Σ a l², Σ a l x over the codes l.
struct CodeSums {
    al: f64,
    all: f64,
    alx: f64,
}

impl Sums {
    /// In f64 throughout: the closed-form errors subtract these from each other, and at 8 bits what is left
    /// is a millionth of them.
    #[inline(always)]
    fn of(x: &[f32], a: &[f32]) -> Sums {
        let (mut s, mut sx, mut sxx) = (0f64, 0f64, 0f64);
        for (&v, &w) in x.iter().zip(a) {
            let (v, w) = (v as f64, w as f64);
            s += w;
            sx += w * v;
            sxx += w * v * v;
        }
        Sums { a: s, ax: sx, axx: sxx }
    }

    #[inline(always)]
    /// The (scale, min) minimising Σ a (scale·l + min − x)² for these codes, and that error.
    fn solve_asymmetric(&self, c: CodeSums) -> Option<(f64, f32, f32)> {
        let det = self.a * c.all - c.al * c.al;
        if det <= 1e-12 * self.a * c.all {
            return None;
        }
        let scale = (self.a * c.alx - self.ax * c.al) / det;
        let min = (c.all * self.ax - c.al * c.alx) / det;
        if scale.is_nan() || scale <= 0.0 {
            return None;
        }
        let error = scale * scale * c.all + 2.0 * scale * min * c.al + min * min * self.a
            - 2.0 * scale * c.alx
            - 2.0 * min * self.ax
            + self.axx;
        Some((error, scale as f32, min as f32))
    }

    #[inline(always)]
    /// The scale minimising Σ a (scale·l − x)², and that error (min 0).
    fn solve_symmetric(&self, c: CodeSums) -> Option<(f64, f32, f32)> {
        if c.all.is_nan() || c.all <= 0.0 {
            return None;
        }
        let scale = c.alx / c.all;
        (scale > 0.0).then(|| (self.axx - c.alx * c.alx / c.all, scale as f32, 0.0))
    }
}

/// The sums over the levels l that `lattice` gives `x`: per run of at most RUN weights, in 8 f32 lanes, then f64.
#[inline(always)]
fn code_sums(x: &[f32], a: &[f32], lattice: Lattice) -> CodeSums {
    let mut sums = CodeSums { al: 0.0, all: 0.0, alx: 0.0 };
    let mut levels = [0f32; RUN];
    for (xs, ws) in x.chunks(RUN).zip(a.chunks(RUN)) {
        let [al, all, alx] = match avx2::level_sums_run(xs, ws, lattice) {
            Some(lanes) => lanes,
            None => {
                // Levels through a buffer first: two plain loops vectorize where one with three sums did not.
                let levels = &mut levels[..xs.len()];
                for (l, &v) in levels.iter_mut().zip(xs) {
                    *l = lattice.level(v);
                }
                level_sums_run(levels, xs, ws)
            }
        }
        .map(lane_total);
        (sums.al, sums.all, sums.alx) = (sums.al + al, sums.all + all, sums.alx + alx);
    }
    sums
}

/// The same sums written with AVX2 intrinsics: the search's inner loop, which LLVM would not vectorize whole.
/// The operations and their order are those of `Lattice::level` and `level_sums_run`, so both paths agree bit
/// for bit.
mod avx2 {
    use super::Lattice;

    /// The lanes (Σ a l, Σ a l², Σ a l x) of one run, or None where the CPU lacks AVX2.
    #[inline(always)]
    pub(super) fn level_sums_run(x: &[f32], a: &[f32], lattice: Lattice) -> Option<[[f32; 8]; 3]> {
        #[cfg(target_arch = "x86_64")]
        if crate::math::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 (checked above).
            return Some(unsafe { lanes(x, a, lattice) });
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes(x: &[f32], a: &[f32], lattice: Lattice) -> [[f32; 8]; 3] {
        use std::arch::x86_64::*;
        let n = x.len().min(a.len());
        let whole = n / 8 * 8;
        let (shift, inv_scale) = (_mm256_set1_ps(lattice.shift), _mm256_set1_ps(lattice.inv_scale));
        let (offset, half) = (_mm256_set1_ps(lattice.offset), _mm256_set1_ps(0.5));
        let (zero, max_code) = (_mm256_setzero_ps(), _mm256_set1_ps(lattice.max_code));
        let (mut al, mut all, mut alx) = (zero, zero, zero);
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 8 <= whole <= both lengths.
            let (v, w) = unsafe { (_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(a.as_ptr().add(i))) };
            let c = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, shift), inv_scale), offset), half);
            // max/min return their second operand for a NaN: 0, as `level` does.
            let c = _mm256_min_ps(_mm256_max_ps(c, zero), max_code);
            let l = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvttps_epi32(c)), offset);
            let wl = _mm256_mul_ps(w, l);
            al = _mm256_add_ps(al, wl);
            all = _mm256_add_ps(all, _mm256_mul_ps(wl, l));
            alx = _mm256_add_ps(alx, _mm256_mul_ps(wl, v));
            i += 8;
        }
        let mut out = [[0f32; 8]; 3];
        // SAFETY: each destination holds 8 f32.
        unsafe {
            _mm256_storeu_ps(out[0].as_mut_ptr(), al);
            _mm256_storeu_ps(out[1].as_mut_ptr(), all);
            _mm256_storeu_ps(out[2].as_mut_ptr(), alx);
        }
        for (j, (&v, &w)) in x[whole..n].iter().zip(&a[whole..n]).enumerate() {
            let l = lattice.level(v);
            let wl = w * l;
            out[0][j] += wl;
            out[1][j] += wl * l;
            out[2][j] += wl * v;
        }
        out
    }
}

/// Weights are summed in f32 over runs of at most this many, then in f64: long blocks (whole rows, whole
/// tensors) keep their precision.
const RUN: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::spec::GroupSize;

    fn noisy(n: usize, seed: f32) -> Vec<f32> {
        // Heavy-ish tails, like trained weights: a few outliers per block.
        (0..n)
            .map(|i| {
                let u = ((i as f32 * 12.9898 + seed).sin() * 43758.545).fract();
                let v = u * 2.0 - 1.0;
                0.02 * v + 0.08 * v.powi(9)
            })
            .collect()
    }

    #[test]
    fn least_squares_grids_never_lose_to_min_max_and_usually_win() {
        let x = noisy(4096, 1.0);
        let a: Vec<f32> = noisy(4096, 7.0).iter().map(|v| 0.1 + v.abs() * 20.0).collect();
        for grid in [Grid::Asymmetric, Grid::Symmetric] {
            for bits in [2u8, 3, 4, 5, 6, 8] {
                let (mut ours, mut theirs) = (0.0, 0.0);
                for (xb, ab) in x.chunks(32).zip(a.chunks(32)) {
                    let (lo, hi) = crate::math::min_max(xb);
                    let ls = fit(grid, bits, xb, ab, lo, hi);
                    let mm = rtn::fit(grid, bits, lo, hi);
                    let (e_ls, e_mm) = (weighted_error(&ls, xb, ab), weighted_error(&mm, xb, ab));
                    assert!(e_ls <= e_mm, "{grid:?} {bits}b: {e_ls} > {e_mm}");
                    (ours, theirs) = (ours + e_ls, theirs + e_mm);
                }
                // Outliers stretch min-max grids; at few bits the least-squares grid gives them up.
                if bits <= 4 {
                    assert!(ours < 0.8 * theirs, "{grid:?} {bits}b: {ours} vs {theirs}");
                }
            }
        }
    }

    #[test]
    fn the_weights_decide_which_columns_are_kept_accurate() {
        let (rows, cols) = (16, 128);
        let w = noisy(rows * cols, 3.0);
        // Even columns carry 100x the input energy of odd ones.
        let energy: Vec<f32> = (0..cols).map(|j| if j % 2 == 0 { 100.0 } else { 1.0 }).collect();
        let plan = TensorPlan {
            quantizer: super::super::QuantizerKind::LeastSquares,
            ..TensorPlan::uniform(3, GroupSize::G(32), Grid::Asymmetric)
        };
        let inputs = |m| InputStats { mean_square: Some(m), second_moment: None };
        let error_on = |q: &QuantizedTensor, parity: usize| -> f64 {
            let d = q.dequantize().unwrap();
            (0..rows * cols).filter(|i| (i % cols) % 2 == parity).map(|i| ((w[i] - d[i]) as f64).powi(2)).sum()
        };
        let weighted = LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, inputs(&energy));
        let unweighted = LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, InputStats::default());
        assert!(error_on(&weighted, 0) < error_on(&unweighted, 0));
        assert!(error_on(&weighted, 1) > error_on(&unweighted, 1));
        // The stored form decodes as any grid does: codes on the block's f16 grid.
        assert_eq!(weighted.dequantize().unwrap().len(), rows * cols);
    }

    #[test]
    fn the_avx2_sums_are_the_portable_sums_bit_for_bit() {
        let x = noisy(203, 5.0);
        let a: Vec<f32> = noisy(203, 9.0).iter().map(|v| v.abs() * 10.0).collect();
        let lattice = Lattice { shift: -0.1, inv_scale: 31.7, offset: 0.0, max_code: 15.0 };
        let levels: Vec<f32> = x.iter().map(|&v| lattice.level(v)).collect();
        for n in [0, 5, 8, 64, 203] {
            if let Some(fast) = avx2::level_sums_run(&x[..n], &a[..n], lattice) {
                assert_eq!(fast, level_sums_run(&levels[..n], &x[..n], &a[..n]), "{n} weights");
            }
        }
    }

    #[test]
    fn degenerate_blocks_fall_back_to_min_max() {
        let x = [0.25f32; 32];
        let a = [1.0f32; 32];
        let g = fit(Grid::Asymmetric, 4, &x, &a, 0.25, 0.25);
        assert_eq!(weighted_error(&g, &x, &a), 0.0);
        let zero_weights = [0.0f32; 32];
        let y = noisy(32, 2.0);
        let (lo, hi) = crate::math::min_max(&y);
        assert_eq!(fit(Grid::Symmetric, 3, &y, &zero_weights, lo, hi), rtn::fit(Grid::Symmetric, 3, lo, hi));
    }
}
