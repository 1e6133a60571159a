//! Run outputs (design.md §6): JSONL records, summary CSV with 95% intervals, line plots (PNG and
//! SVG), progress bars.

pub mod identity;
pub mod jsonl;
pub mod knockout_report;
pub mod lock;
pub mod plot;
pub mod progress;
pub mod settings_file;
pub mod shards;
pub mod stats;
pub mod summary;

pub use identity::{digest_file, InputDigests};
pub use jsonl::{read_jsonl, read_jsonl_complete, JsonlContents, JsonlWriter};
pub use knockout_report::{
    write_knockout_reports, ReportFiles, PLOTS_DIR, SAMPLES_SUMMARY_FILE, SUMMARY_FILE,
};
pub use lock::{FolderLock, LOCK_FILE};
pub use plot::{write_line_plot, LinePlot, Point, Series};
pub use progress::Progress;
pub use settings_file::{read_settings, write_settings};
pub use shards::{
    clear_finished, mark_finished, parse_shard, select_shard, shard_name, Shard, ShardSet,
    FINISHED_FILE,
};
pub use stats::{mean_interval, t_quantile_975, MeanInterval};
pub use summary::{
    samples_csv, summarise, summary_csv, write_summary_csv, FlowLayerStats, KnockoutSummary,
    SampleCounts, ALL_TASKS,
};
