//! VideoQA evaluation (design.md §5): accuracy per task, edges kept, JSONL records that let an
//! interrupted run resume without losing or repeating a sample, shards and their merge.

mod records;
mod runner;
mod settings;
mod summary;

pub use records::{read_records, EvalRecord, RecordWriter, RECORDS_FILE};
pub use runner::{merge_runs, run_eval, select_shard, EvalMode};
pub use settings::{parse_shard, EvalSettings, SETTINGS_FILE};
pub use summary::{summarize, write_summary, Summary, Tally};
