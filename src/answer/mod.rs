//! Answers to multiple-choice video questions: samples, preparation, option scoring, and the
//! pipeline that overlaps video decoding with model execution.

mod pipeline;
mod prefetch;
mod sample;
mod scores;

use std::sync::Arc;

pub use pipeline::{
    answer, causal_logits, embed, last_logits, last_logits_until, prefix_inputs, prepare,
    scores_from, split, SampleInputs, Split,
};
pub use prefetch::prefetch_ordered;
pub use sample::{answer_index, load_samples, window, Sample};
pub use scores::{score_options, softmax, OptionScores};

use crate::error::Result;
use crate::package::Package;
use crate::prompt::PromptBuilder;

/// Answers many samples in order. Videos are decoded on `workers` threads, up to `workers + 1`
/// samples ahead, while this thread runs the engine; `on_result` sees every sample once, in
/// order, with its scores or the error that kept it from being scored.
pub fn answer_all<F>(
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    samples: Vec<Sample>,
    workers: usize,
    mut on_result: F,
) -> Result<()>
where
    F: FnMut(&Sample, Result<OptionScores>) -> Result<()>,
{
    let spec = pkg.manifest.video.clone();
    prefetch_ordered(
        samples,
        workers,
        workers + 1,
        move |s: &Sample| prepare(&builder, &spec, s),
        |sample, prepared| {
            let scored = prepared.and_then(|inputs| answer(pkg, &inputs));
            on_result(&sample, scored)
        },
    )
}
