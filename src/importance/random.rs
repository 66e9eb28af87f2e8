//! Random scores for the ablation: reproducible per (seed, tensor name), independent of the weights.

pub fn scores(n: usize, seed: u64, name: &str) -> Vec<f32> {
    scores_from(0, n, seed, name)
}

/// Scores `first..first + n` of the tensor's stream (splitmix64 steps its state by a constant, so any position
/// of the stream is reached at once).
pub fn scores_from(first: usize, n: usize, seed: u64, name: &str) -> Vec<f32> {
    let mut out = vec![0f32; n];
    scores_into(first, seed, name, &mut out);
    out
}

/// `scores_from(first, out.len(), ..)` into `out`.
pub fn scores_into(first: usize, seed: u64, name: &str, out: &mut [f32]) {
    let mut state = (seed ^ fnv1a(name.as_bytes())).wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(first as u64));
    out.iter_mut().for_each(|s| *s = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32);
}

pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}
