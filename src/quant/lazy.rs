//! A quantized model evaluated without its f32 copy: the model's layer cache dequantizes each layer's tensors
//! (in parallel) when the forward pass first asks for one of them, and drops them when the next layer begins.
//! Evaluation sends its windows through the model together, layer by layer, so every tensor is dequantized once
//! per group of windows while at most one layer exists in f32.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::Tensor;

use super::plan::Quantized;
use super::stored::QuantizedTensor;
use crate::error::Result;
use crate::model::{LazyWeights, Model};

struct LayerByLayer {
    tensors: BTreeMap<String, QuantizedTensor>,
}

impl Quantized {
    /// `model` with these weights: fp16 tensors held as f32, quantized ones dequantized layer by layer (through
    /// the model's layer cache).
    pub fn into_model(self, model: &Model) -> Result<Model> {
        let held = super::plan::fp16_weights(self.fp16)?;
        Ok(model.with_lazy_weights(held, Arc::new(LayerByLayer { tensors: self.tensors })))
    }
}

impl LazyWeights for LayerByLayer {
    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        self.tensors.get(name).map(|t| t.to_tensor(name)).transpose()
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}
