//! Plans (`spec`, `tiers`, `config`), quantizers behind a trait (`method`), the stored form they all produce
//! (`stored`, `pack`), bit accounting (`bits`, `estimate`), and ggml's block types for GGUF files (`ggml`).

pub mod bits;
pub mod config;
pub mod estimate;
pub mod ggml;
pub mod method;
pub mod pack;
pub mod plan;
pub mod spec;
pub mod stored;
pub mod summary;
pub mod tiers;

pub use bits::{BitReport, TensorBits};
pub use config::{QuantConfig, Roles, Scope};
pub use plan::{Quantized, Treatment, quantize_model};
pub use spec::{Grid, GroupSize, QuantizerKind, TensorPlan};
pub use stored::QuantizedTensor;
pub use tiers::{Granularity, Tier};
