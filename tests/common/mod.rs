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

/// Runs the CLI with a backtrace requested (errors must still be one line) and returns what it did.
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nash-swarm")).args(args).env("RUST_BACKTRACE", "1").output().unwrap()
}

/// SHA-256 of every file under `root` (or of `root` itself), by path: equal before and after means untouched.
pub fn tree_hashes(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.exists() {
            let digest = Sha256::digest(std::fs::read(&path).unwrap());
            out.insert(path, digest.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    out
}

/// Temporary or probe files that a failed or finished command left under `root`.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    tree_hashes(root)
        .into_keys()
        .chain(walk_dirs(root))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.contains(".tmp-") || name.contains("nash-swarm-probe")
        })
        .collect()
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            dirs.push(path);
        }
    }
    dirs
}

/// The version of the `gguf` package (llama.cpp's own Python reader and block codecs) the tests compare with.
const GGUF_PACKAGE: &str = "gguf==0.19.0";

/// python3 (or `$PYTHON`) able to import the pinned `gguf` package and numpy, the independent reader the tests
/// check our GGUF files and block codecs against. Where the interpreter lacks them (a fresh machine), they are
/// installed once from PyPI into a folder of the cache (`pip install --target`, no root, the system untouched) and
/// put on `PYTHONPATH`.
pub fn python_with_gguf() -> std::process::Command {
    static PACKAGES: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let python = nash_swarm::pypi::python();
    let packages = PACKAGES.get_or_init(|| install_gguf_package(&python));
    let mut command = std::process::Command::new(&python);
    if let Some(dir) = packages {
        command.env("PYTHONPATH", dir);
    }
    command
}

/// `None` when `python` already imports the pinned `gguf` and numpy; else the folder they were installed into.
fn install_gguf_package(python: &str) -> Option<PathBuf> {
    let version = GGUF_PACKAGE.trim_start_matches("gguf==");
    let check = format!(
        "import importlib.metadata as m, numpy, gguf\nassert m.version('gguf') == '{version}', m.version('gguf')"
    );
    let imports = |path: Option<&Path>| {
        let mut command = std::process::Command::new(python);
        if let Some(path) = path {
            command.env("PYTHONPATH", path);
        }
        command.args(["-c", &check]).output().is_ok_and(|out| out.status.success())
    };
    if imports(None) {
        return None;
    }
    let target = nash_swarm::pypi::cache_dir().join(format!("python-gguf-{version}"));
    if imports(Some(&target)) {
        return Some(target);
    }
    // Installed beside the target and renamed into place: another test process sees all of it or none.
    let cache = target.parent().unwrap();
    std::fs::create_dir_all(cache).unwrap_or_else(|e| panic!("cannot create the cache {} ({e})", cache.display()));
    let staging = target.with_file_name(format!(".python-gguf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("installing {GGUF_PACKAGE} and numpy from PyPI into {}", target.display());
    let status = std::process::Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "--target"])
        .arg(&staging)
        .args([GGUF_PACKAGE, "numpy"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pip` ({e}): the tests need Python 3 with pip"));
    assert!(status.success(), "`pip install {GGUF_PACKAGE} numpy` failed ({status}): the tests need PyPI");
    if std::fs::rename(&staging, &target).is_err() {
        if imports(Some(&target)) {
            let _ = std::fs::remove_dir_all(&staging); // another process renamed its copy first
        } else {
            // A copy for another Python version: replaced.
            std::fs::remove_dir_all(&target).unwrap();
            std::fs::rename(&staging, &target).unwrap();
        }
    }
    assert!(imports(Some(&target)), "{GGUF_PACKAGE} installed into {} but does not import", target.display());
    Some(target)
}
