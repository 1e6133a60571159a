//! One error type for the library. Every variant names the file, field or value at fault and what
//! was expected, because users meet these messages far from the code that raised them.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message, not a `source`: with `{:#}` (how `main` prints
    /// errors) a source would be printed a second time after it.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("{path}: invalid manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },

    #[error("{path}: graph does not match the manifest: {msg}")]
    GraphMismatch { path: PathBuf, msg: String },

    #[error("ONNX Runtime: {0}")]
    Runtime(String),

    #[error("execution provider {provider}: {msg}")]
    Provider { provider: String, msg: String },

    #[error("{path}: video: {msg}")]
    Video { path: PathBuf, msg: String },

    #[error("prompt: {0}")]
    Prompt(String),

    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },

    #[error("invalid input: {0}")]
    Input(String),

    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },

    /// A run that scored no sample: its numbers would be meaningless, so the command fails (exit
    /// status 2) with the reason instead of reporting 0% accuracy.
    #[error("nothing could be scored: {0}")]
    NothingScored(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Error {
        Error::Runtime(e.to_string())
    }
}
