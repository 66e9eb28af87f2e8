//! Honest bit accounting (METHOD.md section 4): payload, block parameters, tier maps and every tensor kept at
//! higher precision, over all parameters of the model.

use serde::Serialize;

use super::stored::QuantizedTensor;
use super::tiers::index_bits;

/// Bits of one quantized matrix, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TensorBits {
    pub payload: u64,
    /// f16 scales (and minimums) of every (block, tier) grid.
    pub params: u64,
    /// Plain fixed-width tier map: ceil(log2 k) bits per unit.
    pub tier_map: u64,
    /// What an ideal entropy coder would need for the same map: units × H(unit shares).
    pub tier_map_entropy: f64,
}

impl TensorBits {
    pub fn of(q: &QuantizedTensor) -> TensorBits {
        let payload = q.codes.iter().map(|c| c.count as u64 * c.bits as u64).sum();
        let params = q.params.len() as u64 * 16;
        let k = q.plan.tiers.len();
        if k == 1 {
            return TensorBits { payload, params, tier_map: 0, tier_map_entropy: 0.0 };
        }
        let units = q.tier_map.units;
        let counts = q.tier_counts();
        let entropy: f64 = counts
            .iter()
            .filter(|c| **c > 0)
            .map(|c| {
                let p = *c as f64 / units as f64;
                -p * p.log2()
            })
            .sum();
        TensorBits {
            payload,
            params,
            tier_map: units as u64 * index_bits(k) as u64,
            tier_map_entropy: units as f64 * entropy,
        }
    }

    /// The bits of two parts of a matrix together.
    pub fn plus(&self, other: &TensorBits) -> TensorBits {
        TensorBits {
            payload: self.payload + other.payload,
            params: self.params + other.params,
            tier_map: self.tier_map + other.tier_map,
            tier_map_entropy: self.tier_map_entropy + other.tier_map_entropy,
        }
    }

    /// Everything stored for this matrix with a plain tier map.
    pub fn total(&self) -> u64 {
        self.payload + self.params + self.tier_map
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BitReport {
    /// All parameters of the model.
    pub params: usize,
    /// Weights stored as quantized integers.
    pub quantized_weights: usize,
    pub payload_bits: u64,
    pub param_bits: u64,
    pub tier_map_bits: u64,
    pub tier_map_entropy_bits: f64,
    /// Tensors kept as fp16 (norms, biases, and matrices left unquantized).
    pub fp16_bits: u64,
    /// Payload bits per quantized weight (the original's "bits per weight").
    pub payload_bpw: f64,
    /// Everything stored, plain tier map, per parameter of the whole model. The exported file holds this.
    pub true_bpw: f64,
    /// The same with an entropy-coded tier map (not what the export writes; shown for comparison).
    pub true_bpw_entropy_coded_map: f64,
    pub compression_vs_fp32: f64,
    pub compression_vs_fp16: f64,
}

impl BitReport {
    pub fn new(params: usize, tensors: &[(usize, TensorBits)], fp16_params: usize) -> BitReport {
        let sum = |f: fn(&TensorBits) -> u64| tensors.iter().map(|(_, b)| f(b)).sum::<u64>();
        let (payload, param_bits, tier_map) = (sum(|b| b.payload), sum(|b| b.params), sum(|b| b.tier_map));
        let entropy: f64 = tensors.iter().map(|(_, b)| b.tier_map_entropy).sum();
        let quantized_weights: usize = tensors.iter().map(|(n, _)| n).sum();
        let fp16_bits = fp16_params as u64 * 16;
        let total = (payload + param_bits + tier_map + fp16_bits) as f64;
        let true_bpw = total / params as f64;
        BitReport {
            params,
            quantized_weights,
            payload_bits: payload,
            param_bits,
            tier_map_bits: tier_map,
            tier_map_entropy_bits: entropy,
            fp16_bits,
            payload_bpw: if quantized_weights == 0 { 0.0 } else { payload as f64 / quantized_weights as f64 },
            true_bpw,
            true_bpw_entropy_coded_map: (total - tier_map as f64 + entropy) / params as f64,
            compression_vs_fp32: 1.0 - true_bpw / 32.0,
            compression_vs_fp16: 1.0 - true_bpw / 16.0,
        }
    }

    pub fn total_bits(&self) -> u64 {
        self.payload_bits + self.param_bits + self.tier_map_bits + self.fp16_bits
    }
}
