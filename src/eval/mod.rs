//! VideoQA evaluation (design.md §5): accuracy per task, edges kept, JSONL records that let an
//! interrupted run resume without losing or repeating a sample, shards and their merge.

mod merge;
mod records;
mod runner;
mod settings;
mod summary;

pub use crate::report::select_shard;
pub use merge::merge_runs;
pub use records::{read_records, read_records_strict, EvalRecord, RecordWriter, RECORDS_FILE};
pub use runner::{ensure_scored, run_eval, EvalMode};
pub use settings::{parse_shard, shard_name, EvalSettings, SETTINGS_FILE};
pub use summary::{summarize, write_summary, Summary, Tally, SUMMARY_FILE};
