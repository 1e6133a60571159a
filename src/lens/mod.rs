//! The logit lens (design.md §3): layer-wise probability of the true and false options at the last
//! position, and the top-1 lens tokens of the video positions counted against keyword lists.
//! Projections: final norm + LM head (default), LM head alone, or the input-embedding matrix.

pub mod keywords;
pub mod merge;
pub mod run;
pub mod trace;

pub use keywords::{load_keywords, parse_keywords, KeywordSet};
pub use merge::merge_lens_runs;
pub use run::{
    lens_sample, lens_summary_csv, run_lens, write_lens_reports, LensRecord, LensRun, LensSample,
    LensSettings, LENS_FILE, LENS_RUN_FILE, LENS_SAMPLES_FILE, LENS_SUMMARY_FILE,
};
pub use trace::{last_position_lens, top1_tokens, LastPositionLens};
