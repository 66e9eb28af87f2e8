//! The original's "local importance from the neighbourhood": each weight's magnitude blended with the mean
//! magnitude of its row neighbours. s_ij = (1 - α)|w_ij| + α · mean(|w_ik|, |k - j| <= r), clipped at the row ends.

use rayon::prelude::*;

pub fn scores(w: &[f32], cols: usize, alpha: f32, radius: usize) -> Vec<f32> {
    let mut out = crate::memory::zeroed_f32(w.len());
    out.par_chunks_mut(cols).zip(w.par_chunks(cols)).for_each(|(out, row)| row_scores(row, out, alpha, radius));
    out
}

fn row_scores(row: &[f32], out: &mut [f32], alpha: f32, radius: usize) {
    let cols = row.len();
    let full_window = 1.0 / (2 * radius + 1) as f32;
    {
        // A running window sum makes every mean O(1); f64 keeps the running sum from drifting along long rows.
        let mut sum: f64 = row[..radius.min(cols)].iter().map(|v| v.abs() as f64).sum();
        for (j, v) in row.iter().enumerate() {
            if j + radius < cols {
                sum += row[j + radius].abs() as f64;
            }
            if j > radius {
                sum -= row[j - radius - 1].abs() as f64;
            }
            let (lo, hi) = (j.saturating_sub(radius), (j + radius + 1).min(cols));
            let inv = if hi - lo == 2 * radius + 1 { full_window } else { 1.0 / (hi - lo) as f32 };
            out[j] = (1.0 - alpha) * v.abs() + alpha * sum as f32 * inv;
        }
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
