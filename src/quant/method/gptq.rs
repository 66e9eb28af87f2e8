//! GPTQ (Frantar et al., 2022): the columns of W ([out, in]) are quantized in order, and each column's rounding
//! error is spread over the columns not yet quantized so that the layer's output error on calibration inputs,
//! (W − Q) E[x xᵀ] (W − Q)ᵀ, stays small. The update uses the upper Cholesky factor U of the inverse Hessian
//! H⁻¹ = UᵀU, H = E[x xᵀ] + damping: after column i, w_j −= U_ij · (w_i − q_i) / U_ii for j > i. Updates are
//! applied lazily in blocks of columns, as in the paper.
//!
//! Each group's grid is chosen by `least_squares::fit` (weighted by E[x_j²]) from the group's weights as they stand
//! when its first column is reached. The grids and the final values then go through the shared coder
//! (`GridFit::Given`), so the stored form is the same as every other grid quantizer's.

use rayon::prelude::*;

use super::least_squares::{self, LeastSquares};
use super::rtn::{self, GridFit};
use super::{InputStats, Quantizer, TierSource};
use crate::quant::spec::{Grid, GroupSize, TensorPlan};
use crate::quant::stored::{BlockGrid, QuantizedTensor};

/// GPTQ on least-squares grids.
pub struct Gptq;

impl Quantizer for Gptq {
    fn name(&self) -> &'static str {
        "gptq"
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
        let group = match plan.group_size {
            GroupSize::G(g) => Some(g.min(cols)),
            GroupSize::Row => Some(cols),
            GroupSize::Tensor => None,
        };
        let bits = plan.tiers[0].bits;
        let solved = match (group, inputs.second_moment, tiers) {
            (Some(group), Some(h), TierSource::Single) if bits < 16 && rows > 0 && cols > 1 => {
                let weights = least_squares::column_weights(inputs.mean_square, cols);
                let made;
                let u = match inputs.update_factor {
                    Some(u) => Some(u),
                    None => {
                        made = update_factor(h, cols);
                        made.as_ref()
                    }
                };
                u.map(|u| gptq(w, rows, cols, group, plan.grid, bits, u, &weights))
            }
            _ => None,
        };
        // Mixed tiers, whole-tensor blocks, fp16, no Hessian or one that is not positive definite even damped:
        // least-squares grids without error feedback.
        let Some((values, grids)) = solved else {
            return LeastSquares.quantize(w, rows, cols, plan, tiers, inputs);
        };
        let mut q = rtn::quantize_fitted(&values, rows, cols, plan, tiers, GridFit::Given(&grids));
        // The coder saw the final values; the error that counts is against the original weights.
        q.squared_error = w.iter().zip(&values).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        q.squared_norm = crate::math::sum_of_squares(w);
        q
    }
}

/// Relative damping added to H's diagonal (the paper's 1% of the mean diagonal), raised tenfold while the
/// Cholesky factorisation fails.
const DAMPING: [f64; 4] = [0.01, 0.1, 1.0, 10.0];
/// Columns per lazy update.
const BLOCK: usize = 128;

/// Whether GPTQ quantizes under `plan` with error feedback (and so needs the update factor of its inputs'
/// second moment): single-tier plans below 16 bits with blocks smaller than the tensor; other plans fall back to
/// least squares.
pub fn feeds_back_errors(plan: &TensorPlan) -> bool {
    plan.quantizer == crate::quant::spec::QuantizerKind::Gptq
        && plan.tiers.len() == 1
        && plan.tiers[0].bits < 16
        && plan.group_size != GroupSize::Tensor
}

/// The factor GPTQ's updates use for inputs of second moment `h` (`n × n`): the upper Cholesky factor of the
/// damped inverse, the damping raised until it factorises; None when it never does. Rows quantize independently
/// given it, so a matrix may be quantized in pieces of rows that share it.
pub fn update_factor(h: &[f32], n: usize) -> Option<UpdateFactor> {
    DAMPING.iter().find_map(|&damping| inverse_cholesky_upper(h, n, damping))
}

/// The quantized values (row-major, each on its group's grid) and the grids (row by row, group by group), with
/// the update factor `u`.
#[allow(clippy::too_many_arguments)]
fn gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    grid: Grid,
    bits: u8,
    u: &UpdateFactor,
    weights: &[f32],
) -> (Vec<f32>, Vec<BlockGrid>) {
    let groups_per_row = cols.div_ceil(group);
    // Column-major working copy: column i of W is the contiguous row i of `wt`.
    let mut wt = vec![0f32; rows * cols];
    for (r, row) in w.chunks_exact(cols).enumerate() {
        row.iter().enumerate().for_each(|(c, &v)| wt[c * rows + r] = v);
    }
    let mut grids = vec![rtn::fit(grid, bits, 0.0, 0.0); rows * groups_per_row];
    // The same grids ready for rounding (no f16 conversions or divisions per weight).
    let mut fast = vec![grids[0].fast(); grids.len()];
    let mut values = vec![0f32; rows * cols];
    let mut errors = vec![0f32; BLOCK * rows];
    for i0 in (0..cols).step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(cols);
        for i in i0..i1 {
            if i % group == 0 {
                let fitted = fit_group(&wt, rows, i, (i + group).min(cols), grid, bits, weights);
                for (r, g) in fitted.into_iter().enumerate() {
                    (grids[r * groups_per_row + i / group], fast[r * groups_per_row + i / group]) = (g, g.fast());
                }
            }
            let (done, rest) = wt.split_at_mut((i + 1) * rows);
            let column = &done[i * rows..];
            let error = &mut errors[(i - i0) * rows..(i - i0 + 1) * rows];
            let d = u.at(i, i);
            for r in 0..rows {
                let (_, q) = fast[r * groups_per_row + i / group].quantize(column[r]);
                values[r * cols + i] = q;
                error[r] = (column[r] - q) / d;
            }
            // Inside the block: every later column at once.
            for j in i + 1..i1 {
                axpy(-u.at(i, j), error, &mut rest[(j - i - 1) * rows..(j - i) * rows]);
            }
        }
        // After the block: the columns beyond it, each taking every error of the block.
        feed_forward(&mut wt[i1 * rows..], &errors[..(i1 - i0) * rows], u, (i0, i1), rows);
    }
    (values, grids)
}

/// Every column `j ≥ i1` (`rest`, column-major, `rows` long each) takes the errors of columns `i0..i1`:
/// column_j −= Σ_i U_ij · error_i, which is one matrix product, `rest += (−Uᵀ) @ errors` (most of GPTQ's work).
fn feed_forward(rest: &mut [f32], errors: &[f32], u: &UpdateFactor, (i0, i1): (usize, usize), rows: usize) {
    let width = i1 - i0;
    let later = rest.len() / rows.max(1);
    let mut minus_ut = vec![0f32; later * width];
    minus_ut.par_chunks_mut(width.max(1)).enumerate().for_each(|(k, row)| {
        row.iter_mut().enumerate().for_each(|(t, v)| *v = -u.at(i0 + t, i1 + k));
    });
    crate::model::gemm::add_matmul(&minus_ut, errors, rest, (later, rows, width))
}

/// The grid of columns `c0..c1` (one group) of every row, from the weights as they stand now.
fn fit_group(wt: &[f32], rows: usize, c0: usize, c1: usize, grid: Grid, bits: u8, weights: &[f32]) -> Vec<BlockGrid> {
    (0..rows)
        .into_par_iter()
        .map(|r| {
            let x: Vec<f32> = (c0..c1).map(|c| wt[c * rows + r]).collect();
            let (lo, hi) = crate::math::min_max(&x);
            least_squares::fit(grid, bits, &x, &weights[c0..c1], lo, hi)
        })
        .collect()
}

crate::math::dispatch! {
    /// y += a·x.
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) -> () {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
    }
}

/// The upper Cholesky factor U of (H + damping·mean(diag H)·I)⁻¹ = UᵀU, in f64; None when the damped H is not
/// positive definite (or U does not fit f32). Columns never seen active (H_jj = 0) get H_jj = 1, so they are
/// quantized without passing error on.
///
/// With P the reversal permutation, P H P = L Lᵀ gives H⁻¹ = (P L⁻¹ P)ᵀ (P L⁻¹ P), and P L⁻¹ P is upper
/// triangular: one factorisation and one triangular inverse.
pub fn inverse_cholesky_upper(h: &[f32], n: usize, damping: f64) -> Option<UpdateFactor> {
    let mean_diagonal = (0..n).map(|i| h[i * n + i] as f64).sum::<f64>() / n as f64;
    if !(mean_diagonal.is_finite() && mean_diagonal >= 0.0) {
        return None;
    }
    let lambda = damping * mean_diagonal.max(f64::MIN_POSITIVE);
    // Reversed and damped.
    let mut a = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] as f64;
        }
        let d = &mut a[i * n + i];
        *d = if *d <= 0.0 { 1.0 } else { *d + lambda };
    }
    let factored = crate::model::layers::factor::inverse_cholesky_factor(&mut a, n)
        .unwrap_or_else(|| cholesky(&mut a, n) && invert_lower(&mut a, n));
    if !factored {
        return None;
    }
    let fits = (0..n).all(|i| a[i * n..=i * n + i].iter().all(|&v| (v as f32).is_finite()));
    fits.then_some(UpdateFactor { reversed_inverse: a, n })
}

/// GPTQ's update factor U (upper triangular, H⁻¹ = UᵀU), kept as the L⁻¹ of the reversed H it is read from
/// (U_ij = L⁻¹ at (n−1−i, n−1−j)) so that no second n² copy is made: 8n² bytes at most, where an f32 copy made
/// beside it took 12n² (805 MB at 8192 columns). Values are rounded to f32 as they are read.
pub struct UpdateFactor {
    reversed_inverse: Vec<f64>,
    n: usize,
}

impl std::fmt::Debug for UpdateFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpdateFactor({0} x {0})", self.n)
    }
}

impl UpdateFactor {
    /// U_ij (zero below the diagonal).
    #[inline(always)]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        if j < i {
            return 0.0;
        }
        self.reversed_inverse[(self.n - 1 - i) * self.n + (self.n - 1 - j)] as f32
    }
}

/// The lower Cholesky factor of `a` (row-major, overwritten; OpenBLAS's LAPACK does this much faster where it is
/// installed): false when `a` is not positive definite.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for i in 0..n {
        for j in 0..=i {
            let (above, row_i) = a.split_at_mut(i * n);
            let row_i = &mut row_i[..n];
            let row_j = if j == i { &row_i[..j] } else { &above[j * n..j * n + j] };
            let s = row_i[j] - dot(&row_i[..j], row_j);
            if j == i {
                if !(s > 0.0 && s.is_finite()) {
                    return false;
                }
                row_i[i] = s.sqrt();
            } else {
                row_i[j] = s / above[j * n + j];
            }
        }
        a[i * n + i + 1..(i + 1) * n].fill(0.0);
    }
    true
}

/// L⁻¹ of a lower-triangular L, in place: row i is (e_i − Σ_{k<i} L_ik · row k) / L_ii. Row i's entries below
/// the diagonal are read (as L_ik) just before they become its running sum, which is zero there until then.
/// Always true (a Cholesky factor's diagonal is positive): a bool only to chain after `cholesky`.
fn invert_lower(l: &mut [f64], n: usize) -> bool {
    for i in 0..n {
        let (done, row) = l.split_at_mut(i * n);
        let row = &mut row[..n];
        for k in 0..i {
            let c = std::mem::take(&mut row[k]);
            if c != 0.0 {
                row[..=k].iter_mut().zip(&done[k * n..k * n + k + 1]).for_each(|(r, &v)| *r -= c * v);
            }
        }
        let d = std::mem::replace(&mut row[i], 1.0);
        row[..=i].iter_mut().for_each(|v| *v /= d);
    }
    true
}

crate::math::dispatch! {
    /// Σ a_i b_i in four f64 lanes.
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        let mut lanes = [0f64; 4];
        let mut ca = a.chunks_exact(4);
        let mut cb = b.chunks_exact(4);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for j in 0..4 {
                lanes[j] += x[j] * y[j];
            }
        }
        let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f64>() + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::spec::QuantizerKind;

    fn uniform(i: usize, seed: f32) -> f32 {
        ((i as f32 * 12.9898 + seed).sin() * 43758.545).fract() * 2.0 - 1.0
    }

    /// Correlated inputs: every feature mixes a few shared factors, so H has large off-diagonal terms.
    fn inputs(tokens: usize, cols: usize) -> Vec<f32> {
        let factors = 6;
        (0..tokens * cols)
            .map(|i| {
                let (t, c) = (i / cols, i % cols);
                let shared: f32 =
                    (0..factors).map(|f| uniform(t * factors + f, 3.0) * uniform(c * factors + f, 5.0)).sum();
                shared + 0.3 * uniform(i, 9.0)
            })
            .collect()
    }

    fn second_moment(x: &[f32], tokens: usize, cols: usize) -> Vec<f32> {
        let mut h = vec![0f32; cols * cols];
        for t in 0..tokens {
            let row = &x[t * cols..(t + 1) * cols];
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += row[i] * row[j] / tokens as f32;
                }
            }
        }
        h
    }

    #[test]
    fn the_feedback_after_a_block_is_the_sum_of_its_column_updates() {
        let (tokens, cols, rows) = (200, 300, 37);
        let h = second_moment(&inputs(tokens, cols), tokens, cols);
        let u = inverse_cholesky_upper(&h, cols, 0.01).unwrap();
        let (i0, i1) = (40, 40 + BLOCK);
        let errors: Vec<f32> = (0..BLOCK * rows).map(|i| uniform(i, 2.0)).collect();
        let start: Vec<f32> = (0..(cols - i1) * rows).map(|i| uniform(i, 7.0)).collect();
        let mut rest = start.clone();
        feed_forward(&mut rest, &errors, &u, (i0, i1), rows);
        for (k, column) in rest.chunks_exact(rows).enumerate() {
            for (r, &got) in column.iter().enumerate() {
                let moved: f64 =
                    (i0..i1).map(|i| u.at(i, i1 + k) as f64 * errors[(i - i0) * rows + r] as f64).sum::<f64>();
                let want = start[k * rows + r] as f64 - moved;
                assert!((got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "column {k}, row {r}");
            }
        }
    }

    #[test]
    fn the_factor_inverts_the_damped_hessian() {
        let (tokens, n) = (200, 40);
        let h = second_moment(&inputs(tokens, n), tokens, n);
        let factor = inverse_cholesky_upper(&h, n, 0.01).unwrap();
        let u: Vec<f32> = (0..n * n).map(|k| factor.at(k / n, k % n)).collect();
        let lambda = 0.01 * (0..n).map(|i| h[i * n + i] as f64).sum::<f64>() / n as f64;
        for i in 0..n {
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0, "upper triangular");
            }
        }
        // (UᵀU)(H + λI) = I.
        for i in 0..n {
            for j in 0..n {
                let mut v = 0f64;
                for k in 0..n {
                    let hinv_ik: f64 = (0..n).map(|m| u[m * n + i] as f64 * u[m * n + k] as f64).sum();
                    v += hinv_ik * (h[k * n + j] as f64 + if k == j { lambda } else { 0.0 });
                }
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((v - expected).abs() < 1e-3, "({i}, {j}): {v}");
            }
        }
        let not_positive = vec![-1.0f32; 4];
        assert!(inverse_cholesky_upper(&not_positive, 2, 0.01).is_none());
    }

    /// The plain factorisation inverts the matrix, and OpenBLAS's LAPACK (used where it is installed) gives the
    /// same lower triangle.
    #[test]
    fn the_plain_and_the_lapack_factors_agree() {
        let (tokens, n) = (300, 150);
        let h = second_moment(&inputs(tokens, n), tokens, n);
        let a: Vec<f64> = (0..n * n).map(|i| h[i] as f64 + if i % (n + 1) == 0 { 0.01 } else { 0.0 }).collect();
        let mut plain = a.clone();
        assert!(cholesky(&mut plain, n) && invert_lower(&mut plain, n));
        // a⁻¹ = L⁻ᵀ L⁻¹ = XᵀX, so (XᵀX) a = I.
        for i in (0..n).step_by(7) {
            for j in (0..n).step_by(5) {
                let v: f64 = (0..n)
                    .map(|k| (0..n).map(|m| plain[m * n + i] * plain[m * n + k]).sum::<f64>() * a[k * n + j])
                    .sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((v - expected).abs() < 1e-6, "({i}, {j}): {v}");
            }
        }
        let mut lapack = a.clone();
        if let Some(factored) = crate::model::layers::factor::inverse_cholesky_factor(&mut lapack, n) {
            assert!(factored);
            for i in 0..n {
                for j in 0..=i {
                    let (p, l) = (plain[i * n + j], lapack[i * n + j]);
                    assert!((p - l).abs() <= 1e-9 * p.abs().max(1.0), "({i}, {j}): {p} vs {l}");
                }
            }
            let mut not_positive = vec![-1.0f64; 4];
            assert_eq!(crate::model::layers::factor::inverse_cholesky_factor(&mut not_positive, 2), Some(false));
        }
    }

    #[test]
    fn error_feedback_lowers_the_output_error_below_least_squares() {
        let (rows, cols, tokens) = (24, 96, 400);
        let w: Vec<f32> = (0..rows * cols).map(|i| 0.05 * uniform(i, 1.0)).collect();
        let x = inputs(tokens, cols);
        let h = second_moment(&x, tokens, cols);
        let mean_square: Vec<f32> = (0..cols).map(|j| h[j * cols + j]).collect();
        let stats = InputStats { mean_square: Some(&mean_square), second_moment: Some(&h), update_factor: None };
        // Output error Σ_t ‖(W − Q) x_t‖² = tr((W − Q) H (W − Q)ᵀ) · tokens.
        let output_error = |q: &[f32]| -> f64 {
            let d: Vec<f64> = w.iter().zip(q).map(|(a, b)| (a - b) as f64).collect();
            (0..rows)
                .map(|r| {
                    let dr = &d[r * cols..(r + 1) * cols];
                    (0..cols)
                        .map(|i| dr[i] * (0..cols).map(|j| h[i * cols + j] as f64 * dr[j]).sum::<f64>())
                        .sum::<f64>()
                })
                .sum()
        };
        for (bits, group) in [(2u8, GroupSize::G(32)), (3, GroupSize::G(32)), (4, GroupSize::Row)] {
            let plan = TensorPlan::uniform(bits, group, Grid::Asymmetric).with_quantizer(QuantizerKind::Gptq);
            let gptq = Gptq.quantize(&w, rows, cols, &plan, &TierSource::Single, stats);
            let ls = LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, stats);
            let (g, l) = (gptq.dequantize().unwrap(), ls.dequantize().unwrap());
            let (eg, el) = (output_error(&g), output_error(&l));
            assert!(eg < 0.8 * el, "{bits} bits {group:?}: GPTQ {eg} vs least squares {el}");
            let squared: f64 = w.iter().zip(&g).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            assert!((gptq.squared_error - squared).abs() <= 1e-9 + 1e-6 * squared);
            assert_eq!(gptq.params.len(), ls.params.len(), "the same stored form");
        }
        // Without a Hessian it is least squares.
        let plan = TensorPlan::uniform(3, GroupSize::G(32), Grid::Asymmetric).with_quantizer(QuantizerKind::Gptq);
        let without = InputStats { mean_square: Some(&mean_square), ..Default::default() };
        let (a, b) = (
            Gptq.quantize(&w, rows, cols, &plan, &TierSource::Single, without),
            LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, without),
        );
        assert_eq!((a.codes, a.params), (b.codes, b.params));
    }
}
