//! The original's "local importance from the neighbourhood": each weight's magnitude blended with the mean
//! magnitude of its row neighbours. s_ij = (1 - α)|w_ij| + α · mean(|w_ik|, |k - j| <= r), clipped at the row ends.

use rayon::prelude::*;

pub fn scores(w: &[f32], cols: usize, alpha: f32, radius: usize) -> Vec<f32> {
    let mut out = crate::memory::zeroed_f32(w.len());
    scores_into(w, cols, alpha, radius, &mut out);
    out
}

pub fn scores_into(w: &[f32], cols: usize, alpha: f32, radius: usize, out: &mut [f32]) {
    let block = cols.max(1) * ROWS_AT_ONCE;
    out.par_chunks_mut(block)
        .zip(w.par_chunks(block))
        .for_each(|(out, rows)| block_scores(rows, out, cols, alpha, radius));
}

/// Rows scored side by side: each row's running window sum is a chain of dependent f64 additions, and four
/// independent chains keep the adder busy where one would wait on itself.
const ROWS_AT_ONCE: usize = 4;

crate::math::dispatch! {
    /// Scores of the rows in `rows` (`cols` each) into `out`.
    pub fn block_scores(rows: &[f32], out: &mut [f32], cols: usize, alpha: f32, radius: usize) -> () {
        if rows.len() == cols * ROWS_AT_ONCE {
            rows_side_by_side::<ROWS_AT_ONCE>(rows, out, cols, alpha, radius);
        } else {
            for (row, out) in rows.chunks(cols).zip(out.chunks_mut(cols)) {
                rows_side_by_side::<1>(row, out, cols, alpha, radius);
            }
        }
    }
}

/// The scores of `L` consecutive rows. A running window sum makes every mean O(1); f64 keeps it from drifting
/// along long rows (the sum of a few f32 magnitudes and their differences are exact in f64).
#[inline(always)]
fn rows_side_by_side<const L: usize>(rows: &[f32], out: &mut [f32], cols: usize, alpha: f32, radius: usize) {
    let rows: [&[f32]; L] = std::array::from_fn(|l| &rows[l * cols..(l + 1) * cols]);
    let mut sums: [f64; L] = rows.map(|row| row[..radius.min(cols)].iter().map(|v| v.abs() as f64).sum());
    let full_window = 1.0 / (2 * radius + 1) as f32;
    let score = |v: f32, sum: f64, inv: f32| (1.0 - alpha) * v.abs() + alpha * sum as f32 * inv;
    // Near a row end the window is clipped (its size varies); in between it is whole and the loop has no branches.
    let clipped = |j: usize, sums: &mut [f64; L], out: &mut [f32]| {
        let (lo, hi) = (j.saturating_sub(radius), (j + radius + 1).min(cols));
        let inv = if hi - lo == 2 * radius + 1 { full_window } else { 1.0 / (hi - lo) as f32 };
        for (l, sum) in sums.iter_mut().enumerate() {
            let entering = if j + radius < cols { rows[l][j + radius].abs() as f64 } else { 0.0 };
            let leaving = if j > radius { rows[l][j - radius - 1].abs() as f64 } else { 0.0 };
            *sum += entering - leaving;
            out[l * cols + j] = score(rows[l][j], *sum, inv);
        }
    };
    let whole = (radius + 1).min(cols)..cols.saturating_sub(radius).max((radius + 1).min(cols));
    for j in 0..whole.start {
        clipped(j, &mut sums, out);
    }
    for j in whole.clone() {
        for (l, sum) in sums.iter_mut().enumerate() {
            *sum += rows[l][j + radius].abs() as f64 - rows[l][j - radius - 1].abs() as f64;
            out[l * cols + j] = score(rows[l][j], *sum, full_window);
        }
    }
    for j in whole.end..cols {
        clipped(j, &mut sums, out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blends_each_weight_with_its_neighbourhood_mean() {
        let w = [1.0, -3.0, 2.0, 0.0];
        let s = super::scores(&w, 4, 0.5, 1);
        // j = 0: window {0, 1}, mean 2; j = 1: {0, 1, 2}, mean 2; j = 3: {2, 3}, mean 1.
        let expected = [0.5 * 1.0 + 0.5 * 2.0, 0.5 * 3.0 + 0.5 * 2.0, 0.5 * 2.0 + 0.5 * 5.0 / 3.0, 0.5 * 1.0];
        for (a, b) in s.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
        assert_eq!(super::scores(&w, 4, 0.0, 3), vec![1.0, 3.0, 2.0, 0.0]);
    }
}
