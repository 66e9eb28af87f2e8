//! s = |w|: the simplest signal, and the baseline the others must beat.

pub fn scores(w: &[f32]) -> Vec<f32> {
    w.iter().map(|v| v.abs()).collect()
}
