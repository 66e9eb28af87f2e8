//! Shared helpers for the integration tests: fixture paths, scratch copies, and an independent f64 reference.
#![allow(dead_code)]

pub mod gguf_writer;
pub mod reference;

use std::path::{Path, PathBuf};

/// `../shared` beside the repository (fixtures and WikiText-2, read in place); a clear failure without it.
pub fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.is_dir(),
        "{} not found: the tests read their fixtures from `shared/` beside the repository",
        dir.display()
    );
    dir
}

pub fn stories() -> PathBuf {
    shared().join("fixtures/stories260k")
}

pub fn tiny_gpt2() -> PathBuf {
    shared().join("fixtures/tiny-gpt2-random")
}

pub fn wikitext() -> PathBuf {
    shared().join("data/wikitext-2-raw/wiki.test.raw")
}

/// A writable copy of a fixture folder, for tests that damage it.
pub fn scratch_copy(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// The demo GGUF; the tests that need it say how to get it.
pub fn demo_model() -> PathBuf {
    nash_swarm::demo::installed().unwrap_or_else(|| {
        panic!(
            "the demo model is not cached at {}: run `cargo run -- fetch-demo` (the README's first command does)",
            nash_swarm::demo::demo_model_path().display()
        )
    })
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
