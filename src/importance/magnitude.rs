//! s = |w|: the simplest signal, and the baseline the others must beat.

pub fn scores_into(w: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(w).for_each(|(s, v)| *s = v.abs());
}
