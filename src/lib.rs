//! vidflow: a runtime for Video LLMs exported to ONNX, for information-flow analysis and
//! pathway-pruned VideoQA. The model package contract is in README.md ("Model package").

pub mod answer;
pub mod data;
pub mod engine;
pub mod error;
pub mod eval;
pub mod mask;
pub mod package;
pub mod prompt;
pub mod runtime;
pub mod video;

pub use error::{Error, Result};
