//! vidflow: a runtime for Video LLMs exported to ONNX, for information-flow analysis and
//! pathway-pruned VideoQA. The model package contract is in docs/package.md.

pub mod answer;
pub mod attention;
pub mod bench;
pub mod check;
pub mod cluster;
pub mod data;
pub mod demo;
pub mod discover;
pub mod engine;
pub mod error;
pub mod eval;
pub mod generate;
pub mod knockout;
pub mod lens;
pub mod mask;
pub mod package;
pub mod pathway;
pub mod plan;
pub mod prompt;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod synth;
pub mod video;

pub use error::{Error, Result};
