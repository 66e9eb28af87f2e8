//! Our ggml encoders against llama.cpp's on real SmolLM2 tensors (the demo model; `cargo run -- fetch-demo`).
//!
//! Known values measured once with llama.cpp (llama-cpp-python 0.3.36's vendored sources, `llama-quantize` built
//! with cmake) by `scripts/ggml_vs_llama_cpp.py ~/.cache/nash-swarm/SmolLM2-135M-Instruct.Q4_1.gguf BIN_DIR`: the
//! demo GGUF requantized to F32, then `llama-quantize --pure` to each type, without and with an imatrix whose
//! importance of column c is 1 + (37 c mod 64) / 8. Each row: tensor, type, imatrix used, SHA-256 of the encoded
//! tensor, and its importance-weighted relative error Σ imp·(w − q)² / Σ imp·w².

use nash_swarm::model::tensor_to_vec;
use nash_swarm::quant::ggml::{self, BlockType};
use sha2::{Digest, Sha256};

mod common;

const LLAMA_CPP: &[(&str, &str, bool, &str, f64)] = &[
    (
        "blk.0.ffn_down.weight",
        "Q8_0",
        false,
        "72e2d552eb2b5666c17dc8d70fbd8e0b0ec08d049c3243ed0460d3134959b3c2",
        3.084772e-05,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q8_0",
        false,
        "eac993417ee8c035b54d9c6386ffdf088c1c6eea4a4ba11a5cfe9dc1da36d840",
        2.943733e-05,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q6_K",
        false,
        "1d8054fa97a5b0a307b9911370f84d9ddea525f779030f32b062b4b8590c8be5",
        3.220638e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_K",
        false,
        "4f8da803fb09ad5ab1adff49d0ad18445ed364ad1660f7ecbc8759e639d5ea98",
        3.784472e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_1",
        false,
        "9487bd271239f33b02550baf7b8be6a0bae96f859bc7c3553929ff53adbfbd50",
        2.152263e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q5_1",
        false,
        "f5177d92943271c25ace9a89993e750ecd7e80d498be2a2badc4c4f52c5fd118",
        2.027301e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_0",
        false,
        "73b41058f7ae9bc6cbc2f1dfe8840944e87febda1431d2d3f206f0c7bcd611c4",
        1.961442e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q5_0",
        false,
        "0ad5ec8e7a3de5425a429e4916ac98256450f50fab3ef0784a9df70c80a7527c",
        1.844549e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_K",
        false,
        "7a46652ed272410d01ed18e54a6e4fd92f5dfbc8788dbcd688bedca169f49bde",
        3.442944e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_1",
        false,
        "e439c1c8c383c3aa7acf459d08c9116c2a7756dc2c1a27675d7411e8462b4e85",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q4_1",
        false,
        "1b0e5c206218930517e2632031ce235553d0154152499eab136662bd8192c585",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_0",
        false,
        "9daad1f0c3dc51591d338879f230053b5527fb99c0657faceddfe7efa34dcf9f",
        7.623159e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q4_0",
        false,
        "edf9b45d49a9d287457d8437e92f49dcd8f42e0ea77b9298f82de3e840860699",
        7.186703e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "IQ4_NL",
        false,
        "b48fdc0aaf8a7396972232b8e4cb4588e3a8e76cd178e361d99affe525afd410",
        5.730487e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "IQ4_NL",
        false,
        "a1ef25144ee982c960eebe6eb992c4e789f91341ed4b681957abf5317b3f15c8",
        5.530770e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q3_K",
        false,
        "c8f583a9cfffbd1566c9dceee893257faf8f5cf07c69ae19acbf8641bb5588f1",
        2.387879e-02,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q2_K",
        false,
        "3040ed0fbe64d95432d28242ff539d0e9670747ff8708ab80e5778eece296483",
        9.339435e-02,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q8_0",
        true,
        "72e2d552eb2b5666c17dc8d70fbd8e0b0ec08d049c3243ed0460d3134959b3c2",
        3.084772e-05,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q8_0",
        true,
        "eac993417ee8c035b54d9c6386ffdf088c1c6eea4a4ba11a5cfe9dc1da36d840",
        2.943733e-05,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q6_K",
        true,
        "7b13ab809fe3fe6197b107a8cdf7b47af6771b1b294002bd4008a7e657ccb7e5",
        2.858795e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_K",
        true,
        "14135c7cc62c23f330d9062bdd751011a776d7c96305b9c2cac8cc77772ce5fb",
        2.550470e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_1",
        true,
        "c0a668d1989e8c180ea71bc95a2f654fd552526d9c2990dfcdc998aaa0af6014",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q5_1",
        true,
        "b12f10148bbf9f4fe9dfc0e23b69ade031fb7f20221c15ae48f66e2a6a28fa32",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q5_0",
        true,
        "7fc6d116336273cec1b9638195e755ee704a9f59fe5b21c552b83fa3127fe919",
        1.529698e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q5_0",
        true,
        "9b0d086434717bbdd6288a3fa34d748b5727a2c8e6910f1342ed8f5fded29b3c",
        1.418560e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_K",
        true,
        "b650aa53570d8c5d7ab5c581320d8f475711fea52c8bed982c1f2e7c0751e436",
        2.557282e-04,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_1",
        true,
        "e439c1c8c383c3aa7acf459d08c9116c2a7756dc2c1a27675d7411e8462b4e85",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q4_1",
        true,
        "1b0e5c206218930517e2632031ce235553d0154152499eab136662bd8192c585",
        0.000000e+00,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q4_0",
        true,
        "b4445902721c15ed906b91a3330c3ed363410b618ee43c87d0052d02045187a9",
        6.003224e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "Q4_0",
        true,
        "77a08f526c9fe226034b71cb8f77a265f6c7312761d641084308e306400484f0",
        5.613205e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "IQ4_NL",
        true,
        "85623d901e68cc683bbd777dcc98a83e6dc1f051e7116404d3d5a5e596c0f9d3",
        4.836211e-03,
    ),
    (
        "blk.0.ffn_gate.weight",
        "IQ4_NL",
        true,
        "afda38c95a493e3c620808948ef650290bd6adfb083eb14cfc4e0befde174184",
        4.715897e-03,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q3_K",
        true,
        "b592c01d5e9da8a2d6a01b77050da9d65f62d345e192f724f2427aea93d40a71",
        2.100920e-02,
    ),
    (
        "blk.0.ffn_down.weight",
        "Q2_K",
        true,
        "adca1100dcda1d347cc2031e53fc3f7b380431cea8b7792c127e3e0c709106fe",
        7.070656e-02,
    ),
];

fn importance(cols: usize) -> Vec<f32> {
    (0..cols).map(|c| 1.0 + ((37 * c) % 64) as f32 / 8.0).collect()
}

fn our_name(gguf: &str) -> &'static str {
    match gguf {
        "blk.0.ffn_down.weight" => "model.layers.0.mlp.down_proj.weight",
        "blk.0.ffn_gate.weight" => "model.layers.0.mlp.gate_proj.weight",
        other => panic!("no mapping for {other}"),
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn encoders_match_llama_cpp_byte_for_byte_and_ours_are_never_worse() {
    let model = nash_swarm::load(&common::demo_model()).unwrap();
    assert!(LLAMA_CPP.len() >= 30, "the known values cover every type");
    for &(tensor, ty_name, with_imatrix, digest, llama_error) in LLAMA_CPP {
        let ty = BlockType::parse(ty_name).unwrap();
        let weight = model.weights.get(our_name(tensor)).unwrap();
        let cols = weight.dims()[1];
        let w = tensor_to_vec(&weight).unwrap();
        let imp = importance(cols);
        let imatrix = with_imatrix.then_some(imp.as_slice());
        let like_llama = ggml::encode_like_llama_cpp(ty, &w, cols, imatrix).unwrap();
        assert_eq!(
            sha256(&like_llama),
            digest,
            "{tensor} {ty} (imatrix {with_imatrix}): blocks differ from llama.cpp's"
        );
        let ours = ggml::encode(ty, &w, cols, imatrix).unwrap();
        let decoded = ggml::decode(ty, &ours, w.len()).unwrap();
        let error = ggml::weighted_relative_error(&w, &decoded, cols, &imp);
        println!("{tensor} {ty} imatrix={with_imatrix}: ours {error:.4e}, llama.cpp {llama_error:.4e}");
        assert!(
            error <= llama_error * (1.0 + 1e-5) + 1e-12,
            "{tensor} {ty}: {error} worse than llama.cpp's {llama_error}"
        );
    }
}
