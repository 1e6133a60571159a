//! Answers to multiple-choice questions: option scoring and sample pipelines.

mod prefetch;
mod scores;

pub use prefetch::prefetch_ordered;
pub use scores::{score_options, softmax, OptionScores};
