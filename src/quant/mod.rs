//! Tiers, the RTN quantizer, bit packing and accounting, the Nash allocation (METHOD.md sections 2–5).

pub mod bits;
pub mod config;
pub mod estimate;
pub mod lazy;
pub mod nash;
pub mod pack;
pub mod plan;
pub mod rtn;
pub mod summary;
pub mod tiers;

pub use bits::{BitReport, TensorBits};
pub use config::{QuantConfig, Roles, Scope};
pub use plan::{Quantized, Treatment, quantize_model};
pub use rtn::{Grid, GroupSize, QuantizedTensor, TensorPlan};
pub use tiers::{Granularity, Tier};
