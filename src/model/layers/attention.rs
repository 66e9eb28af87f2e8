//! Causal softmax attention over all positions, shared by every architecture.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::gemm::Kernel;
use crate::error::Result;
use crate::model::tensor_io::with_f32_slice;

/// Query rows per task: small enough to skip most of the masked upper triangle, large enough for an efficient GEMM.
const ROW_BLOCK: usize = 64;

/// `softmax(q k^T * scale + causal mask) v` for `q: [1, H, T, hd]` and `k, v: [1, KV, T, hd]` (H a multiple
/// of KV: grouped-query attention), returned as `[T, H * hd]`. With a `window`, position i sees only the keys
/// j with i − j < window (sliding-window attention).
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, window: Option<usize>) -> Result<Tensor> {
    let (_, heads, t, hd) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let window = window.unwrap_or(usize::MAX).max(1);
    // Any fast kernel at all (ours runs every block size when it is the only one).
    let out = match Kernel::for_rows(1) {
        Some(any) => {
            let kernel = |rows| Kernel::for_rows(rows).unwrap_or(any);
            blocked_attention(&kernel, &q.contiguous()?, &k.contiguous()?, &v.contiguous()?, scale, window)?
        }
        None => {
            let (k, v) = (repeat_kv(k, heads / kv_heads)?, repeat_kv(v, heads / kv_heads)?);
            candle_attention(q, &k, &v, scale, window)?
        }
    };
    Ok(out.transpose(1, 2)?.reshape((t, heads * hd))?)
}

/// The reference formulation on candle ops: full `[T, T]` scores with an additive mask.
fn candle_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, window: usize) -> Result<Tensor> {
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&causal_mask(q.dim(2)?, window)?)?;
    Ok(candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)?)
}

/// One task per (head, block of query rows): rows `r0..r1` only attend to keys `0..r1`, so the GEMMs skip the
/// masked upper triangle except within the diagonal block. `kernel` picks the products' kernel by a block's rows.
fn blocked_attention(
    kernel: &(dyn Fn(usize) -> Kernel + Sync),
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    window: usize,
) -> Result<Tensor> {
    let (_, heads, t, hd) = q.dims4()?;
    let group = heads / k.dim(1)?;
    let mut out = vec![0f32; heads * t * hd];
    with_f32_slice(q, |q| {
        with_f32_slice(k, |k| {
            with_f32_slice(v, |v| {
                out.par_chunks_mut(t * hd).enumerate().for_each(|(head, out)| {
                    out.par_chunks_mut(ROW_BLOCK * hd).enumerate().for_each(|(block, out)| {
                        let r0 = block * ROW_BLOCK;
                        let rows = out.len() / hd;
                        let keys = r0 + rows;
                        let kv = head / group;
                        let q = &q[(head * t + r0) * hd..][..rows * hd];
                        let (k, v) = (&k[kv * t * hd..][..keys * hd], &v[kv * t * hd..][..keys * hd]);
                        let kernel = kernel(rows);
                        let mut scores = vec![0f32; rows * keys];
                        kernel.a_bt(q, k, &mut scores, (rows, keys, hd), keys);
                        for (i, row) in scores.chunks_mut(keys).enumerate() {
                            let end = r0 + i + 1;
                            softmax_range(row, end.saturating_sub(window), end, scale as f32);
                        }
                        kernel.a_b(&scores, v, out, (rows, hd, keys), hd);
                    })
                })
            })
        })
    })???;
    Ok(Tensor::from_vec(out, (1, heads, t, hd), &Device::Cpu)?)
}

/// Softmax over `row[start..end]` scaled by `scale`; the masked rest becomes 0.
fn softmax_range(row: &mut [f32], start: usize, end: usize, scale: f32) {
    let (head, rest) = row.split_at_mut(end);
    let (before, live) = head.split_at_mut(start);
    live.iter_mut().for_each(|x| *x *= scale);
    let max = crate::math::max(live);
    let inv = (1.0 / crate::math::exp_shifted_in_place(live, max)) as f32;
    live.iter_mut().for_each(|x| *x *= inv);
    before.fill(0.0);
    rest.fill(0.0);
}

/// `[T, T]` additive mask: 0 where key j is visible from query i (j <= i and i - j < window), -inf elsewhere.
fn causal_mask(t: usize, window: usize) -> Result<Tensor> {
    let visible = |i: usize, j: usize| j <= i && i - j < window;
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..t).map(move |j| if visible(i, j) { 0.0 } else { f32::NEG_INFINITY })).collect();
    Ok(Tensor::from_vec(mask, (t, t), &Device::Cpu)?)
}

fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, kv, n_rep, t, hd))?.reshape((b, kv * n_rep, t, hd))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// Plain loops in f64: softmax over keys (i + 1 - window)..=i for every query i.
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        (heads, kv_heads, t, hd): (usize, usize, usize, usize),
        scale: f64,
        window: usize,
    ) -> Vec<f64> {
        let mut out = vec![0f64; t * heads * hd];
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            for i in 0..t {
                let first = (i + 1).saturating_sub(window);
                let logits: Vec<f64> = (first..=i)
                    .map(|j| {
                        (0..hd).map(|d| q[(h * t + i) * hd + d] as f64 * k[(g * t + j) * hd + d] as f64).sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                for (j, l) in (first..).zip(&logits) {
                    for d in 0..hd {
                        out[i * heads * hd + h * hd + d] += (l - max).exp() / z * v[(g * t + j) * hd + d] as f64;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn both_backends_match_naive_grouped_causal_attention_with_and_without_a_window() {
        // 150 positions: not a multiple of the row block, so the last block is partial; windows of 1, one
        // inside a block, one across blocks.
        let (heads, kv_heads, t, hd) = (4, 2, 150, 16);
        let q = pseudo_random(heads * t * hd, 1);
        let k = pseudo_random(kv_heads * t * hd, 2);
        let v = pseudo_random(kv_heads * t * hd, 3);
        let scale = 1.0 / (hd as f64).sqrt();
        let tensor = |data: &[f32], h: usize| Tensor::from_vec(data.to_vec(), (1, h, t, hd), &Device::Cpu).unwrap();
        let (qt, kt, vt) = (tensor(&q, heads), tensor(&k, kv_heads), tensor(&v, kv_heads));
        for window in [usize::MAX, 1, 16, 100] {
            let want = naive(&q, &k, &v, (heads, kv_heads, t, hd), scale, window);
            let (k2, v2) = (repeat_kv(&kt, 2).unwrap(), repeat_kv(&vt, 2).unwrap());
            let mut results = vec![("candle", candle_attention(&qt, &k2, &v2, scale, window).unwrap())];
            for (backend, kernel) in [("OpenBLAS", Kernel::blas()), ("AVX-512", Kernel::avx512())] {
                match kernel {
                    Some(kernel) => {
                        results.push((backend, blocked_attention(&|_| kernel, &qt, &kt, &vt, scale, window).unwrap()))
                    }
                    None => eprintln!("{backend} is not here: its attention is not checked"),
                }
            }
            for (backend, got) in results {
                let got = got.transpose(1, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let worst = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-5, "{backend}, window {window}: max abs diff {worst}");
            }
        }
    }
}
