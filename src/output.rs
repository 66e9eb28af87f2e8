//! Where results go. Every output path is checked before any work: it never is, lies inside or contains an input
//! or another output (canonical paths, symlinks resolved); an existing folder is written into only when it is an
//! earlier export of ours or the user forces it; the place must be writable. Writes go through a temporary sibling
//! that is removed on any failure, and into an existing folder only our own files are replaced.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// What an output path must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Folder,
    File,
}

/// One output as the user named it: the flag (or dialog) that named it, the path, and how to recognise an
/// earlier output of ours at that place (replaced without `--force`).
pub struct Output<'a> {
    pub flag: &'a str,
    pub path: &'a Path,
    pub kind: Kind,
    pub ours: fn(&Path) -> bool,
}

/// One input: what it is (for messages) and its path.
pub struct Input<'a> {
    pub what: &'a str,
    pub path: &'a Path,
}

/// Refuses outputs that overlap an input or each other, an existing file or folder that is not ours (unless
/// `force`), and places that cannot be written. Nothing is written by this check but a probe file, removed again.
pub fn check(inputs: &[Input], outputs: &[Output], force: bool) -> Result<()> {
    let inputs: Vec<(&Input, PathBuf)> =
        inputs.iter().filter_map(|i| std::fs::canonicalize(i.path).ok().map(|c| (i, c))).collect();
    let resolved: Vec<(&Output, PathBuf)> =
        outputs.iter().map(|o| resolve(o.path).map(|r| (o, r))).collect::<Result<_>>()?;
    for (i, (out, path)) in resolved.iter().enumerate() {
        for (input, input_path) in &inputs {
            if let Some(relation) = overlap(path, input_path) {
                return Err(refused(out, format!("{relation} the {} {}", input.what, input.path.display())));
            }
        }
        for (other, other_path) in &resolved[..i] {
            if let Some(relation) = overlap(path, other_path) {
                return Err(refused(out, format!("{relation} {} {}", other.flag, other.path.display())));
            }
        }
        check_existing(out, force)?;
        check_writable(out)?;
    }
    Ok(())
}

fn refused(out: &Output, why: String) -> Error {
    Error::InvalidArgument(format!("{} {}: the output {why}; nothing was written", out.flag, out.path.display()))
}

/// How `output` overlaps `other`, if it does.
fn overlap(output: &Path, other: &Path) -> Option<&'static str> {
    if output == other {
        Some("is")
    } else if output.starts_with(other) {
        Some("lies inside")
    } else if other.starts_with(output) {
        Some("contains")
    } else {
        None
    }
}

/// The canonical form of a path that may not exist yet: its deepest existing ancestor canonicalized (symlinks
/// resolved), then the remaining components, with `.` and `..` applied to them.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io(".", e))?.join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        rest.push(existing.file_name().map(|n| n.to_os_string()));
        existing = match existing.parent() {
            Some(parent) => parent,
            None => break,
        };
    }
    let mut resolved = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    for component in rest.into_iter().rev() {
        match component {
            Some(name) => resolved.push(name),
            None => {
                resolved.pop();
            }
        }
    }
    // `file_name` is None for `..` and `.` components: normalise what is left lexically.
    Ok(resolved.components().fold(PathBuf::new(), |mut acc, c| {
        match c {
            Component::ParentDir => {
                acc.pop();
            }
            Component::CurDir => {}
            other => acc.push(other.as_os_str()),
        }
        acc
    }))
}

fn check_existing(out: &Output, force: bool) -> Result<()> {
    let Ok(meta) = std::fs::metadata(out.path) else { return Ok(()) };
    let problem = match out.kind {
        Kind::Folder if !meta.is_dir() => Some("is an existing file, but a folder is expected".to_string()),
        Kind::File if meta.is_dir() => Some("is a folder, but a file is expected".to_string()),
        Kind::Folder if force || (out.ours)(out.path) || is_empty_dir(out.path) => None,
        Kind::File if force || (out.ours)(out.path) => None,
        Kind::Folder => Some(format!(
            "is a folder that is not empty and not an earlier export of ours{}",
            force_hint(out, "write our files into it (nothing else in it is touched)")
        )),
        Kind::File => Some(format!("is an existing file that is not one of ours{}", force_hint(out, "replace it"))),
    };
    match problem {
        Some(problem) => Err(Error::InvalidArgument(format!("{} {} {problem}", out.flag, out.path.display()))),
        None => Ok(()),
    }
}

/// How a command-line user overrides the refusal (a dialog user picks another place).
fn force_hint(out: &Output, what: &str) -> String {
    if out.flag.starts_with("--") { format!("; pass --force to {what}") } else { String::new() }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// The folder the output is written in must exist and take a new file (probed, then removed).
fn check_writable(out: &Output) -> Result<()> {
    let target = if out.kind == Kind::Folder && out.path.is_dir() { out.path } else { parent_of(out.path) };
    if !target.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} {}: the folder {} does not exist",
            out.flag,
            out.path.display(),
            target.display()
        )));
    }
    let probe = target.join(format!(".nash-swarm-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::InvalidArgument(format!(
            "{} {}: cannot write in {} ({e})",
            out.flag,
            out.path.display(),
            target.display()
        ))),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A temporary sibling that is removed when dropped unless it was moved into place.
struct Staging(Option<PathBuf>);

impl Staging {
    fn new(path: &Path) -> Result<Staging> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} does not end in a file name", path.display())))?;
        Ok(Staging(Some(parent_of(path).join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))))
    }
    fn path(&self) -> &Path {
        self.0.as_deref().expect("staging path present until kept")
    }
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        }
    }
}

/// Writes a folder through `fill` into a temporary sibling, then moves it into place. Into an existing folder,
/// each file we wrote replaces its namesake and nothing else there is touched.
pub fn write_dir(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = Staging::new(out)?;
    let _ = std::fs::remove_dir_all(staging.path());
    std::fs::create_dir(staging.path()).map_err(|e| Error::io(staging.path(), e))?;
    fill(staging.path())?;
    if !out.exists() {
        std::fs::rename(staging.path(), out).map_err(|e| Error::io(out, e))?;
        staging.keep();
        return Ok(());
    }
    let entries = std::fs::read_dir(staging.path()).map_err(|e| Error::io(staging.path(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(staging.path(), e))?;
        let target = out.join(entry.file_name());
        std::fs::rename(entry.path(), &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(())
}

/// Writes one file through `fill` into a temporary sibling, then renames it into place; a failure leaves no file.
pub fn write_file_with(path: &Path, fill: impl FnOnce(std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let staging = Staging::new(path)?;
    let file = std::fs::File::create(staging.path()).map_err(|e| Error::io(staging.path(), e))?;
    fill(file).map_err(|e| Error::io(staging.path(), e))?;
    std::fs::rename(staging.path(), path).map_err(|e| Error::io(path, e))?;
    staging.keep();
    Ok(())
}

/// Writes one file through a temporary sibling and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let staging = Staging::new(path)?;
    std::fs::write(staging.path(), bytes).map_err(|e| Error::io(staging.path(), e))?;
    std::fs::rename(staging.path(), path).map_err(|e| Error::io(path, e))?;
    staging.keep();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_applies_dot_dot_after_the_existing_part() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(resolve(&dir.path().join("a/../b")).unwrap(), base.join("b"));
        assert_eq!(resolve(&dir.path().join("./c/d")).unwrap(), base.join("c/d"));
    }

    #[test]
    fn overlaps_are_named() {
        assert_eq!(overlap(Path::new("/a/b"), Path::new("/a/b")), Some("is"));
        assert_eq!(overlap(Path::new("/a/b/c"), Path::new("/a/b")), Some("lies inside"));
        assert_eq!(overlap(Path::new("/a"), Path::new("/a/b")), Some("contains"));
        assert_eq!(overlap(Path::new("/a/bc"), Path::new("/a/b")), None);
    }
}
