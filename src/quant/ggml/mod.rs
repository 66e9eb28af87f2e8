//! ggml's block types, the tensor encodings of GGUF files: encoders and decoders with the exact layouts of
//! `ggml-common.h`. Without an importance the encoders are llama.cpp's own (byte for byte what `llama-quantize`
//! writes without an imatrix). With an importance (E[x²] of each input column, what `llama-imatrix` collects),
//! each block is encoded both by llama.cpp's importance-weighted search and by the reference, and the one with the
//! smaller error Σ importance·(w − q)² is kept: never worse than llama.cpp with the same importance.

mod iq4nl;
mod kquants;
mod legacy;
pub mod preset;
mod search;

use half::{bf16, f16};
use rayon::prelude::*;

/// A GGUF tensor type we read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BlockType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q6K,
    Q5K,
    Q5_1,
    Q5_0,
    Q4K,
    Q4_1,
    Q4_0,
    Iq4Nl,
    Q3K,
    Q2K,
}

impl BlockType {
    /// Every type, most bits first.
    pub const ALL: [BlockType; 14] = [
        BlockType::F32,
        BlockType::F16,
        BlockType::Bf16,
        BlockType::Q8_0,
        BlockType::Q6K,
        BlockType::Q5K,
        BlockType::Q5_1,
        BlockType::Q5_0,
        BlockType::Q4K,
        BlockType::Q4_1,
        BlockType::Q4_0,
        BlockType::Iq4Nl,
        BlockType::Q3K,
        BlockType::Q2K,
    ];

    /// `ggml_type` as stored in GGUF tensor infos.
    pub fn ggml_id(self) -> u32 {
        match self {
            BlockType::F32 => 0,
            BlockType::F16 => 1,
            BlockType::Q4_0 => 2,
            BlockType::Q4_1 => 3,
            BlockType::Q5_0 => 6,
            BlockType::Q5_1 => 7,
            BlockType::Q8_0 => 8,
            BlockType::Q2K => 10,
            BlockType::Q3K => 11,
            BlockType::Q4K => 12,
            BlockType::Q5K => 13,
            BlockType::Q6K => 14,
            BlockType::Iq4Nl => 20,
            BlockType::Bf16 => 30,
        }
    }

    pub fn from_ggml_id(id: u32) -> Option<BlockType> {
        BlockType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// ggml's name (`Q4_K`, `IQ4_NL`, `BF16`).
    pub fn name(self) -> &'static str {
        match self {
            BlockType::F32 => "F32",
            BlockType::F16 => "F16",
            BlockType::Bf16 => "BF16",
            BlockType::Q8_0 => "Q8_0",
            BlockType::Q6K => "Q6_K",
            BlockType::Q5K => "Q5_K",
            BlockType::Q5_1 => "Q5_1",
            BlockType::Q5_0 => "Q5_0",
            BlockType::Q4K => "Q4_K",
            BlockType::Q4_1 => "Q4_1",
            BlockType::Q4_0 => "Q4_0",
            BlockType::Iq4Nl => "IQ4_NL",
            BlockType::Q3K => "Q3_K",
            BlockType::Q2K => "Q2_K",
        }
    }

    /// A type by its ggml name, any case.
    pub fn parse(name: &str) -> Option<BlockType> {
        BlockType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Weights per block.
    pub fn block_weights(self) -> usize {
        match self {
            BlockType::F32 | BlockType::F16 | BlockType::Bf16 => 1,
            BlockType::Q6K | BlockType::Q5K | BlockType::Q4K | BlockType::Q3K | BlockType::Q2K => kquants::QK_K,
            _ => legacy::QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::F32 => 4,
            BlockType::F16 | BlockType::Bf16 => 2,
            BlockType::Q8_0 => 34,
            BlockType::Q6K => 210,
            BlockType::Q5K => 176,
            BlockType::Q5_1 => 24,
            BlockType::Q5_0 => 22,
            BlockType::Q4K => 144,
            BlockType::Q4_1 => 20,
            BlockType::Q4_0 | BlockType::Iq4Nl => 18,
            BlockType::Q3K => 110,
            BlockType::Q2K => 84,
        }
    }

    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_weights() as f64
    }

    pub fn is_quantized(self) -> bool {
        self.block_weights() > 1
    }

    /// Whether rows of `cols` weights split into whole blocks (k-quants need multiples of 256).
    pub fn fits(self, cols: usize) -> bool {
        cols > 0 && cols.is_multiple_of(self.block_weights())
    }

    /// Bytes of `count` weights (a whole number of blocks), or None when they do not fill whole blocks.
    pub fn bytes_for(self, count: usize) -> Option<usize> {
        count.is_multiple_of(self.block_weights()).then(|| count / self.block_weights() * self.block_bytes())
    }
}

impl std::fmt::Display for BlockType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How blocks are chosen when an importance is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    /// Each block the better of llama.cpp's weighted encoding and the reference (ours).
    BestOfBoth,
    /// Exactly what llama-quantize writes with this importance as its imatrix.
    LikeLlamaCpp,
}

/// Encodes row-major `[rows, cols]` weights as `ty`. `importance` (one non-negative value per column) selects the
/// importance-weighted encoding; without it, the reference. Rows run in parallel; every row is encoded the same
/// way wherever it runs.
pub fn encode(ty: BlockType, weights: &[f32], cols: usize, importance: Option<&[f32]>) -> Result<Vec<u8>, String> {
    encode_with(ty, weights, cols, importance, Choice::BestOfBoth)
}

/// The blocks llama-quantize writes for these weights with `importance` as its imatrix (for comparisons).
pub fn encode_like_llama_cpp(
    ty: BlockType,
    weights: &[f32],
    cols: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, String> {
    encode_with(ty, weights, cols, importance, Choice::LikeLlamaCpp)
}

fn encode_with(
    ty: BlockType,
    weights: &[f32],
    cols: usize,
    importance: Option<&[f32]>,
    choice: Choice,
) -> Result<Vec<u8>, String> {
    if !ty.fits(cols) || !weights.len().is_multiple_of(cols) {
        return Err(format!("{ty} needs rows of a multiple of {} weights; these have {cols}", ty.block_weights()));
    }
    if let Some(at) = weights.iter().position(|v| !v.is_finite()) {
        return Err(format!("weight {at} is {} and cannot be encoded", weights[at]));
    }
    if let Some(imp) = importance {
        if imp.len() != cols {
            return Err(format!("importance has {} values for rows of {cols}", imp.len()));
        }
        if imp.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("importance values must be finite and non-negative".into());
        }
    }
    // llama.cpp's Q8_0 ignores the imatrix.
    let importance = importance.filter(|_| !(choice == Choice::LikeLlamaCpp && ty == BlockType::Q8_0));
    let row_bytes = cols / ty.block_weights() * ty.block_bytes();
    let mut out = vec![0u8; weights.len() / cols * row_bytes];
    out.par_chunks_mut(row_bytes).zip(weights.par_chunks(cols)).for_each(|(dst, row)| match (importance, choice) {
        (Some(imp), Choice::BestOfBoth) => encode_row_best_of_both(ty, row, imp, dst),
        (imp, _) => encode_row(ty, row, imp, dst),
    });
    Ok(out)
}

/// The reference encoding (`imp` None) or llama.cpp's importance-weighted one of one row.
fn encode_row(ty: BlockType, row: &[f32], imp: Option<&[f32]>, out: &mut [u8]) {
    match ty {
        BlockType::F32 => {
            row.iter().zip(out.chunks_exact_mut(4)).for_each(|(v, o)| o.copy_from_slice(&v.to_le_bytes()))
        }
        BlockType::F16 => row
            .iter()
            .zip(out.chunks_exact_mut(2))
            .for_each(|(v, o)| o.copy_from_slice(&f16::from_f32(*v).to_le_bytes())),
        BlockType::Bf16 => row
            .iter()
            .zip(out.chunks_exact_mut(2))
            .for_each(|(v, o)| o.copy_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        _ => encode_blocks(ty, row, imp, imp.map(|_| legacy::row_sigma2(row)).unwrap_or(0.0), out),
    }
}

/// The blocks of one row; `sigma2` (the row's mean square) serves the weighted 32-blocks.
fn encode_blocks(ty: BlockType, row: &[f32], imp: Option<&[f32]>, sigma2: f32, out: &mut [u8]) {
    let (n, bytes) = (ty.block_weights(), ty.block_bytes());
    for (b, (x, dst)) in row.chunks_exact(n).zip(out.chunks_exact_mut(bytes)).enumerate() {
        encode_block(ty, x, imp.map(|imp| &imp[b * n..(b + 1) * n]), sigma2, dst);
    }
}

fn encode_block(ty: BlockType, x: &[f32], qw: Option<&[f32]>, sigma2: f32, out: &mut [u8]) {
    let weighted = qw.map(|qw| (qw, sigma2));
    match ty {
        BlockType::Q8_0 => legacy::encode_q8_0(x, weighted, out),
        BlockType::Q5_1 => legacy::encode_q5_1(x, weighted, out),
        BlockType::Q5_0 => legacy::encode_q5_0(x, weighted, out),
        BlockType::Q4_1 => legacy::encode_q4_1(x, weighted, out),
        BlockType::Q4_0 => legacy::encode_q4_0(x, weighted, out),
        BlockType::Iq4Nl => iq4nl::encode(x, qw, out),
        BlockType::Q6K => kquants::encode_q6_k(x, qw, out),
        BlockType::Q5K => kquants::encode_q5_k(x, qw, out),
        BlockType::Q4K => kquants::encode_q4_k(x, qw, out),
        BlockType::Q3K => kquants::encode_q3_k(x, qw, out),
        BlockType::Q2K => kquants::encode_q2_k(x, qw, out),
        BlockType::F32 | BlockType::F16 | BlockType::Bf16 => unreachable!("float types are not blocks"),
    }
}

/// Each block the better of llama.cpp's weighted encoding and the reference, by Σ imp·(w − q)².
fn encode_row_best_of_both(ty: BlockType, row: &[f32], imp: &[f32], out: &mut [u8]) {
    if !ty.is_quantized() {
        return encode_row(ty, row, None, out);
    }
    let sigma2 = legacy::row_sigma2(row);
    encode_blocks(ty, row, Some(imp), sigma2, out);
    let (n, bytes) = (ty.block_weights(), ty.block_bytes());
    let mut reference = vec![0u8; bytes];
    let mut decoded = vec![0f32; n];
    for (b, (x, dst)) in row.chunks_exact(n).zip(out.chunks_exact_mut(bytes)).enumerate() {
        let qw = &imp[b * n..(b + 1) * n];
        encode_block(ty, x, None, sigma2, &mut reference);
        decode_block(ty, dst, &mut decoded);
        let weighted = weighted_error(x, &decoded, qw);
        decode_block(ty, &reference, &mut decoded);
        if weighted_error(x, &decoded, qw) < weighted {
            dst.copy_from_slice(&reference);
        }
    }
}

fn decode_block(ty: BlockType, b: &[u8], y: &mut [f32]) {
    match ty {
        BlockType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        BlockType::F16 => y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32(),
        BlockType::Bf16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        BlockType::Q8_0 => legacy::decode_q8_0(b, y),
        BlockType::Q5_1 => legacy::decode_q5_1(b, y),
        BlockType::Q5_0 => legacy::decode_q5_0(b, y),
        BlockType::Q4_1 => legacy::decode_q4_1(b, y),
        BlockType::Q4_0 => legacy::decode_q4_0(b, y),
        BlockType::Iq4Nl => iq4nl::decode(b, y),
        BlockType::Q6K => kquants::decode_q6_k(b, y),
        BlockType::Q5K => kquants::decode_q5_k(b, y),
        BlockType::Q4K => kquants::decode_q4_k(b, y),
        BlockType::Q3K => kquants::decode_q3_k(b, y),
        BlockType::Q2K => kquants::decode_q2_k(b, y),
    }
}

/// The `count` weights `bytes` encode as `ty`; an error when the sizes disagree (never a panic).
pub fn decode(ty: BlockType, bytes: &[u8], count: usize) -> Result<Vec<f32>, String> {
    check_size(ty, bytes, count)?;
    let mut out = crate::memory::zeroed_f32(count);
    decode_blocks(ty, bytes, &mut out);
    Ok(out)
}

/// Whether `bytes` hold exactly `count` weights of `ty`.
fn check_size(ty: BlockType, bytes: &[u8], count: usize) -> Result<(), String> {
    let expected = ty
        .bytes_for(count)
        .ok_or_else(|| format!("{count} weights do not fill whole {ty} blocks of {}", ty.block_weights()))?;
    if bytes.len() != expected {
        return Err(format!("{ty} data of {count} weights needs {expected} bytes, found {}", bytes.len()));
    }
    Ok(())
}

/// `decode` into `out` (its length the count of weights).
pub fn decode_into(ty: BlockType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    check_size(ty, bytes, out.len())?;
    decode_blocks(ty, bytes, out);
    Ok(())
}

/// Decodes `bytes` into `out`, whose sizes `check_size` has found to agree.
fn decode_blocks(ty: BlockType, bytes: &[u8], out: &mut [f32]) {
    let (n, size) = (ty.block_weights(), ty.block_bytes());
    let chunk = n * 1024; // blocks per parallel task
    out.par_chunks_mut(chunk).zip(bytes.par_chunks(chunk / n * size)).for_each(|(y, b)| {
        for (y, b) in y.chunks_exact_mut(n).zip(b.chunks_exact(size)) {
            decode_block(ty, b, y);
        }
    });
}

/// Σ imp·(w − q)² / Σ imp·w² over a `[rows, cols]` matrix: the relative output error the importance predicts.
/// Σ importance·(w − q)² of row-major weights against their decoding, `importance` holding one value per column
/// (the rows repeat it).
pub fn weighted_error(weights: &[f32], decoded: &[f32], importance: &[f32]) -> f64 {
    weights
        .iter()
        .zip(decoded)
        .zip(importance.iter().cycle())
        .map(|((&w, &q), &s)| s as f64 * ((w - q) as f64).powi(2))
        .sum()
}

pub fn weighted_relative_error(weights: &[f32], decoded: &[f32], cols: usize, importance: &[f32]) -> f64 {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (row, q) in weights.chunks_exact(cols).zip(decoded.chunks_exact(cols)) {
        for ((&w, &q), &imp) in row.iter().zip(q).zip(importance) {
            err += imp as f64 * ((w - q) as f64).powi(2);
            norm += imp as f64 * (w as f64).powi(2);
        }
    }
    if norm > 0.0 { err / norm } else { 0.0 }
}
