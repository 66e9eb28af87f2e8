//! Nash-Swarm Explorer's engine: load language models, score weight importance, quantize them to mixed
//! precision with honest bit accounting, allocate bits as a Nash equilibrium, evaluate and export.
//! Nothing in the library knows about the GUI; the CLI and the GUI call the same chain (see ARCHITECTURE).

pub mod alloc;
pub mod compare;
pub mod demo;
pub mod error;
pub mod eval;
pub mod formats;
pub mod importance;
pub mod job;
pub mod math;
pub mod memory;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod pypi;
pub mod quant;

pub use error::{Error, Result};
pub use formats::load;
pub use job::{CancelToken, Job, Progress};
pub use model::Model;
