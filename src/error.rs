//! Typed errors of the library. Every variant that concerns a file names it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },

    /// `supported` lists what this format opens (GGUF and Hugging Face folders differ).
    #[error("{path}: unsupported architecture `{architecture}` (supported here: {supported})")]
    UnsupportedArchitecture { path: PathBuf, architecture: String, supported: String },

    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },

    #[error("{path}: tensor `{name}` has shape {actual:?}, but the config implies {expected:?}")]
    ShapeMismatch { path: PathBuf, name: String, expected: Vec<usize>, actual: Vec<usize> },

    #[error("{path}: tensor `{name}` has dtype {dtype}, which is not supported (F32, F16, BF16)")]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },

    #[error("{path}: tensor `{name}` holds {count} NaN or infinite values")]
    NonFinite { path: PathBuf, name: String, count: usize },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Codes, parameters and tier map that do not fit together (in memory; a file says `BadFile`).
    #[error("inconsistent quantized tensor: {0}")]
    Inconsistent(String),

    #[error("cancelled")]
    Cancelled,

    /// An evaluation whose result is NaN or infinite: a number no one should be shown as a result.
    #[error("{0}")]
    NotFinite(String),

    #[error("tensor computation failed: {0}")]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    /// Without the backtrace candle attaches when `RUST_BACKTRACE` is set: errors are shown as one line.
    fn from(e: candle_core::Error) -> Self {
        let mut e = e;
        while let candle_core::Error::WithBacktrace { inner, .. } = e {
            e = *inner;
        }
        Error::Candle(e)
    }
}

impl Error {
    pub fn bad_file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), problem: problem.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A scratch file in the temporary folder (`TMPDIR`) failed: the folder is named, `what` says which file and
    /// what was being done.
    pub fn scratch(what: &str, source: std::io::Error) -> Self {
        let problem = format!("{what}: {source}");
        Error::io(std::env::temp_dir(), std::io::Error::new(source.kind(), problem))
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
