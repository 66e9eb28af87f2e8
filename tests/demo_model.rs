//! The real-size demo model, SmolLM2-135M-Instruct (GGUF Q4_1, dequantized). Needs `nash-swarm fetch-demo`.

mod common;

use common::*;
use nash_swarm::load;

#[test]
fn smollm2_knows_the_capital_of_france() {
    let model = load(&demo_model()).unwrap();
    assert_eq!(model.param_count(), 134_515_008);
    let continuation = model.generate_greedy("The capital of France is", 3).unwrap();
    assert!(continuation.trim_start().starts_with("Paris"), "continued with {continuation:?}");
}

#[test]
fn smollm2_forward_matches_an_independent_f64_forward_pass() {
    let model = load(&demo_model()).unwrap();
    let ids = model.encode("Hello world, 123 tokens").unwrap();
    assert_eq!(ids.len(), 8, "digits are split one by one: {ids:?}");
    let ours = model.forward(&ids).unwrap().to_vec2::<f32>().unwrap();
    let reference = reference::llama_logits(&model, &ids);
    for (row, ref_row) in ours.iter().zip(&reference) {
        let ref_row: Vec<f32> = ref_row.iter().map(|v| *v as f32).collect();
        let diff = max_abs_diff(row, &ref_row);
        assert!(diff < 2e-3, "max |logit - f64 reference| = {diff}");
    }
}
