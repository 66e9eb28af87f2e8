//! ggml block types against independent implementations: the `gguf` package's numpy quantizers (byte-identical
//! blocks for the types it encodes) and dequantizers (every type), and round-trip error bounds.
//! Needs python3 with pip: `gguf==0.19.0` and numpy are installed into the cache where it lacks them.

mod common;

use nash_swarm::quant::ggml::{self, BlockType};

/// Rows of 512 weights (every type fits) with the shapes real tensors have: gaussian bulk, heavy tails, an
/// outlier per row, an all-zero block, a constant block, tiny values, and one row of a single sign.
fn test_matrix(rows: usize, cols: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut w = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let g = (-2.0 * uniform().max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            let mut v = 0.02 * g * if uniform() < 0.02 { 8.0 } else { 1.0 };
            if r == 1 {
                v = v.abs() + 0.001;
            }
            if c == 7 + r % 300 {
                v = 0.5 * if r % 2 == 0 { 1.0 } else { -1.0 };
            }
            if r == 2 && c < 256 {
                v = 0.0;
            }
            if r == 3 && c < 64 {
                v = 0.0125;
            }
            if r == 4 {
                v *= 1e-6;
            }
            w.push(v as f32);
        }
    }
    w
}

fn bytes_of(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Runs `script` with python3 (argv: paths), failing clearly when python or the `gguf` package is missing.
fn python(script: &str, args: &[&str]) {
    let out = common::python_with_gguf()
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for the independent ggml reference");
    assert!(out.status.success(), "python reference failed: {}", String::from_utf8_lossy(&out.stderr));
}

const GGUF_QUANTIZE: &str = r#"
import sys, numpy as np
from gguf import quants, GGMLQuantizationType as T
src, cols, name, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
x = np.fromfile(src, dtype=np.float32).reshape(-1, cols)
np.asarray(quants.quantize(x, T[name])).tofile(dst)
"#;

const GGUF_DEQUANTIZE: &str = r#"
import sys, numpy as np
from gguf import quants, GGMLQuantizationType as T
src, cols, name, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
size = quants.GGML_QUANT_SIZES[T[name]]
data = np.fromfile(src, dtype=np.uint8)
rows = len(data) // (cols // size[0] * size[1])
data = data.reshape(rows, -1)
quants.dequantize(data, T[name]).astype(np.float32).tofile(dst)
"#;

fn via_gguf(script: &str, input: &[u8], cols: usize, ty: BlockType) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&src, input).unwrap();
    python(script, &[src.to_str().unwrap(), &cols.to_string(), ty.name(), dst.to_str().unwrap()]);
    std::fs::read(&dst).unwrap()
}

#[test]
fn reference_encoders_are_byte_identical_to_the_gguf_package() {
    let cols = 512;
    let w = test_matrix(24, cols);
    for ty in [BlockType::Q8_0, BlockType::Q5_1, BlockType::Q5_0, BlockType::Q4_1, BlockType::Q4_0, BlockType::Bf16] {
        let ours = ggml::encode(ty, &w, cols, None).unwrap();
        let theirs = via_gguf(GGUF_QUANTIZE, &bytes_of(&w), cols, ty);
        assert_eq!(ours.len(), theirs.len(), "{ty}: sizes");
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert!(first.is_none(), "{ty}: first differing byte at {first:?}");
    }
}

#[test]
fn every_decoder_agrees_with_the_gguf_package() {
    let cols = 512;
    let w = test_matrix(24, cols);
    let importance: Vec<f32> = (0..cols).map(|c| 0.1 + (c % 17) as f32).collect();
    for ty in BlockType::ALL.into_iter().filter(|t| t.is_quantized()) {
        for imp in [None, Some(importance.as_slice())] {
            let encoded = ggml::encode(ty, &w, cols, imp).unwrap();
            let ours = ggml::decode(ty, &encoded, w.len()).unwrap();
            let theirs = floats_of(&via_gguf(GGUF_DEQUANTIZE, &encoded, cols, ty));
            assert_eq!(ours.len(), theirs.len(), "{ty}");
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-30),
                    "{ty} (importance {}): weight {i}: {a} vs {b}",
                    imp.is_some()
                );
            }
        }
    }
}

fn relative_rms_error(w: &[f32], q: &[f32]) -> f64 {
    let err: f64 = w.iter().zip(q).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn round_trips_stay_within_each_types_error_bound() {
    let cols = 512;
    let w = test_matrix(24, cols);
    // Relative RMS error bounds on this heavy-tailed data: 1.25x what each type measured when written.
    let bounds = [
        (BlockType::F32, 0.0),
        (BlockType::F16, 1e-3),
        (BlockType::Bf16, 5e-3),
        (BlockType::Q8_0, 0.013),
        (BlockType::Q6K, 0.038),
        (BlockType::Q5K, 0.063),
        (BlockType::Q5_1, 0.066),
        (BlockType::Q5_0, 0.10),
        (BlockType::Q4K, 0.125),
        (BlockType::Q4_1, 0.135),
        (BlockType::Q4_0, 0.20),
        (BlockType::Iq4Nl, 0.155),
        (BlockType::Q3K, 0.24),
        (BlockType::Q2K, 0.38),
    ];
    let mut last = 0.0;
    for (ty, bound) in bounds {
        let encoded = ggml::encode(ty, &w, cols, None).unwrap();
        assert_eq!(encoded.len() as f64 * 8.0, w.len() as f64 * ty.bits_per_weight(), "{ty}: bytes");
        let q = ggml::decode(ty, &encoded, w.len()).unwrap();
        let e = relative_rms_error(&w, &q);
        println!("{ty}: relative RMS error {e:.5}");
        assert!(e <= bound, "{ty}: error {e} above {bound}");
        // Exact zeros stay exact.
        assert!(q[2 * cols..2 * cols + 256].iter().all(|v| *v == 0.0), "{ty}: the zero block");
        last = e;
    }
    assert!(last > 0.05, "Q2_K cannot be near lossless");
}

#[test]
fn importance_weighting_never_loses_to_the_reference_and_helps_where_it_matters() {
    let cols = 512;
    let w = test_matrix(24, cols);
    // A skewed importance like real activations: a few columns matter far more.
    let importance: Vec<f32> = (0..cols).map(|c| if c % 37 == 0 { 50.0 } else { 0.2 + (c % 5) as f32 * 0.1 }).collect();
    for ty in BlockType::ALL.into_iter().filter(|t| t.is_quantized()) {
        let plain = ggml::decode(ty, &ggml::encode(ty, &w, cols, None).unwrap(), w.len()).unwrap();
        let weighted = ggml::decode(ty, &ggml::encode(ty, &w, cols, Some(&importance)).unwrap(), w.len()).unwrap();
        let e_plain = ggml::weighted_relative_error(&w, &plain, cols, &importance);
        let e_weighted = ggml::weighted_relative_error(&w, &weighted, cols, &importance);
        println!("{ty}: weighted error {e_plain:.3e} -> {e_weighted:.3e}");
        assert!(e_weighted <= e_plain, "{ty}: {e_weighted} > {e_plain}");
        assert!(e_weighted < 0.97 * e_plain, "{ty}: importance gained less than 3% ({e_plain} -> {e_weighted})");
    }
}

#[test]
fn bad_shapes_and_values_are_errors_not_panics() {
    let w = test_matrix(2, 512);
    assert!(ggml::encode(BlockType::Q4K, &w[..2 * 288], 288, None).unwrap_err().contains("multiple of 256"));
    assert!(ggml::encode(BlockType::Q4_0, &w[..100], 50, None).is_err());
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(ggml::encode(BlockType::Q8_0, &nan, 512, None).unwrap_err().contains("NaN"));
    assert!(ggml::encode(BlockType::Q8_0, &w, 512, Some(&[1.0; 3])).is_err());
    assert!(ggml::encode(BlockType::Q8_0, &w, 512, Some(&[-1.0; 512])).is_err());
    let encoded = ggml::encode(BlockType::Q6K, &w, 512, None).unwrap();
    assert!(ggml::decode(BlockType::Q6K, &encoded[..encoded.len() - 1], w.len()).is_err());
    assert!(ggml::decode(BlockType::Q6K, &encoded, w.len() + 256).is_err());
    assert!(ggml::decode(BlockType::Q6K, &encoded, 100).is_err());
    for id in 0..40 {
        if let Some(ty) = BlockType::from_ggml_id(id) {
            assert_eq!(ty.ggml_id(), id);
            assert_eq!(BlockType::parse(&ty.name().to_lowercase()), Some(ty));
        }
    }
}
