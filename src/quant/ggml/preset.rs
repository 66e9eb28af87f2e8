//! llama-quantize's file types ("presets"): the block type each tensor gets, by the rules of
//! `llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp` (llama-cpp-python 0.3.36's vendored copy), for
//! the dense models we open. The rules read GGUF tensor names; mixture-of-experts, Falcon and 70B-only rules and
//! the IQ1/IQ2/IQ3/IQ4_XS types (which we do not encode) are left out.

use super::BlockType;

/// A llama-quantize file type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// llama-quantize's name, lower case (`q4_k_m`).
    pub name: &'static str,
    /// `llama_ftype`, stored as `general.file_type`.
    pub file_type: u32,
    /// The type most tensors get (`llama_ftype_get_default_type`).
    pub default: BlockType,
}

const fn preset(name: &'static str, file_type: u32, default: BlockType) -> Preset {
    Preset { name, file_type, default }
}

/// Every preset we make, most bits first.
pub const PRESETS: &[Preset] = &[
    preset("f32", 0, BlockType::F32),
    preset("f16", 1, BlockType::F16),
    preset("bf16", 32, BlockType::Bf16),
    preset("q8_0", 7, BlockType::Q8_0),
    preset("q6_k", 18, BlockType::Q6K),
    preset("q5_k_m", 17, BlockType::Q5K),
    preset("q5_k_s", 16, BlockType::Q5K),
    preset("q5_1", 9, BlockType::Q5_1),
    preset("q5_0", 8, BlockType::Q5_0),
    preset("q4_k_m", 15, BlockType::Q4K),
    preset("q4_k_s", 14, BlockType::Q4K),
    preset("q4_1", 3, BlockType::Q4_1),
    preset("q4_0", 2, BlockType::Q4_0),
    preset("iq4_nl", 25, BlockType::Iq4Nl),
    preset("q3_k_l", 13, BlockType::Q3K),
    preset("q3_k_m", 12, BlockType::Q3K),
    preset("q3_k_s", 11, BlockType::Q3K),
    preset("q2_k", 10, BlockType::Q2K),
    preset("q2_k_s", 21, BlockType::Q2K),
];

impl Preset {
    /// A preset by name, any case.
    pub fn parse(name: &str) -> Option<Preset> {
        PRESETS.iter().copied().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn names() -> String {
        PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    }
}

/// The `general.file_type` of a file whose quantized weights are mostly `ty` (for mixtures of our own).
pub fn file_type_of(ty: BlockType) -> u32 {
    let exact = PRESETS.iter().find(|p| p.default == ty && !p.name.ends_with("_s") && !p.name.ends_with("_l"));
    exact.map_or(1, |p| p.file_type)
}

/// One tensor as the rules see it: its GGUF name, its shape (outermost first) and, for the layer-counting rules,
/// its layer.
pub struct TensorShape<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
}

/// What the rules need to know of the model.
pub struct ModelFacts {
    pub layers: usize,
    /// Query heads per key/value head (`n_gqa`).
    pub query_groups: usize,
    /// Whether calibration (an imatrix) is given; two rules depend on it.
    pub has_imatrix: bool,
}

/// The block type of every tensor, in the order given (llama.cpp counts attn_v tensors in file order).
pub fn tensor_types(preset: Preset, tensors: &[TensorShape], facts: &ModelFacts) -> Vec<BlockType> {
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let attn_v_total = tensors.iter().filter(|t| category(t.name).is_attn_v()).count();
    let mut attn_v_seen = 0;
    tensors
        .iter()
        .map(|t| {
            if !quantizable(t) {
                // Norms, biases and vectors stay as they are: f32.
                return BlockType::F32;
            }
            if !preset.default.is_quantized() {
                return preset.default;
            }
            let cat = category(t.name);
            let layer = layer_of(t.name).unwrap_or(0);
            let ty = mixture_type(preset, cat, tied, t, layer, attn_v_seen, attn_v_total, facts);
            if cat.is_attn_v() {
                attn_v_seen += 1;
            }
            fallback(ty, *t.shape.last().unwrap_or(&0))
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttentionQkv,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    fn is_attn_v(self) -> bool {
        matches!(self, Category::AttentionV | Category::AttentionQkv)
    }
}

/// `tensor_get_category`.
fn category(name: &str) -> Category {
    let checks = [
        ("attn_qkv.weight", Category::AttentionQkv),
        ("attn_v.weight", Category::AttentionV),
        ("attn_k.weight", Category::AttentionK),
        ("attn_q.weight", Category::AttentionQ),
        ("attn_output.weight", Category::AttentionOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" {
        return Category::TokenEmbd;
    }
    checks.iter().find(|(part, _)| name.contains(part)).map_or(Category::Other, |(_, c)| *c)
}

/// `tensor_allows_quantization` for the tensors of dense text models.
fn quantizable(t: &TensorShape) -> bool {
    t.shape.len() >= 2
        && t.name.ends_with("weight")
        && !t.name.contains("_norm.weight")
        && t.name != "position_embd.weight"
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// `use_more_bits`: the first and last eighth of the layers and every third in between.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    let (i, n) = (layer as i64, layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// `llama_tensor_get_type_impl` for the presets we make.
#[allow(clippy::too_many_arguments)]
fn mixture_type(
    preset: Preset,
    cat: Category,
    tied: bool,
    t: &TensorShape,
    layer: usize,
    attn_v_seen: usize,
    attn_v_total: usize,
    facts: &ModelFacts,
) -> BlockType {
    use BlockType::*;
    let name = preset.name;
    let n = facts.layers;
    let gqa4 = facts.query_groups >= 4;
    let mut ty = preset.default;
    if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
        let cols = *t.shape.last().unwrap_or(&0);
        return if !cols.is_multiple_of(ty.block_weights()) {
            Q8_0
        } else if ty != Q8_0 {
            Q6K
        } else {
            ty
        };
    }
    match cat {
        Category::TokenEmbd => {}
        // llama.cpp's attn_v rules take fused qkv tensors too (its later qkv branch is never reached).
        Category::AttentionV | Category::AttentionQkv => {
            ty = match name {
                "q2_k" => {
                    if gqa4 {
                        Q4K
                    } else {
                        Q3K
                    }
                }
                "q2_k_s" if gqa4 => Q4K,
                "q3_k_m" => {
                    if attn_v_seen < 2 {
                        Q5K
                    } else {
                        Q4K
                    }
                }
                "q3_k_l" => Q5K,
                "iq4_nl" if gqa4 => Q5K,
                "q4_k_m" | "q5_k_m" if use_more_bits(attn_v_seen, attn_v_total) => Q6K,
                "q4_k_s" if attn_v_seen < 4 => Q5K,
                _ => ty,
            };
        }
        Category::FfnDown => {
            ty = match name {
                "q2_k" => Q3K,
                "q2_k_s" if layer < n / 8 => Q4K,
                "q3_k_m" if layer < n / 16 => Q5K,
                "q3_k_m" => Q4K,
                "q3_k_l" => Q5K,
                "q4_k_m" if use_more_bits(layer, n) => Q6K,
                "iq4_nl" if layer < n / 8 && !facts.has_imatrix => Q5K,
                "q5_k_m" if use_more_bits(layer, n) => Q6K,
                "q4_k_s" if layer < n / 8 => Q5K,
                "q4_0" if facts.has_imatrix && layer < n / 8 => Q4_1,
                "q5_0" if facts.has_imatrix && layer < n / 8 => Q5_1,
                _ => ty,
            };
        }
        Category::AttentionOutput => {
            ty = match name {
                "q2_k" => Q3K,
                "q3_k_m" => Q4K,
                "q3_k_l" => Q5K,
                _ => ty,
            };
        }
        _ => {}
    }
    ty
}

/// `tensor_type_fallback`: a type whose blocks do not fit the rows gives way to a 32-block type, or F16.
pub fn fallback(ty: BlockType, cols: usize) -> BlockType {
    use BlockType::*;
    if ty.fits(cols) {
        return ty;
    }
    let smaller = match ty {
        Q2K | Q3K => Q4_0,
        Q4K => Q5_0,
        Q5K => Q5_1,
        Q6K => Q8_0,
        other => other,
    };
    if smaller.fits(cols) { smaller } else { F16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(preset: &str, names: &[(&str, [usize; 2])], layers: usize, gqa: usize) -> Vec<BlockType> {
        let shapes: Vec<TensorShape> = names.iter().map(|(n, s)| TensorShape { name: n, shape: s }).collect();
        let facts = ModelFacts { layers, query_groups: gqa, has_imatrix: false };
        tensor_types(Preset::parse(preset).unwrap(), &shapes, &facts)
    }

    #[test]
    fn q4_k_m_bumps_embedding_attn_v_and_ffn_down_like_llama_cpp() {
        let names = [
            ("token_embd.weight", [32000, 4096]),
            ("blk.0.attn_v.weight", [1024, 4096]),
            ("blk.0.ffn_down.weight", [4096, 11008]),
            ("blk.0.attn_q.weight", [4096, 4096]),
            ("blk.0.attn_norm.weight", [4096, 1]),
        ];
        use BlockType::*;
        // 32 layers: layer 0 is in the first eighth, so attn_v and ffn_down get Q6_K; the tied embedding Q6_K.
        assert_eq!(types("q4_k_m", &names, 32, 4), vec![Q6K, Q6K, Q6K, Q4K, F32]);
        // Rows of 576 do not hold 256-blocks: Q4_K falls back to Q5_0, Q6_K to Q8_0.
        let narrow = [("token_embd.weight", [49152, 576]), ("blk.5.attn_q.weight", [576, 576])];
        assert_eq!(types("q4_k_m", &narrow, 30, 3), vec![Q8_0, Q5_0]);
        assert_eq!(types("q2_k", &narrow, 30, 3), vec![Q8_0, Q4_0]);
    }

    #[test]
    fn use_more_bits_matches_llama_cpp() {
        // n = 30: first 3 layers, last 4 (26..), and every third in between starting at layer 5.
        let picked: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(picked, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
    }
}
