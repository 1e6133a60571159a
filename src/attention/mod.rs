//! Attention maps (design.md §6): head-averaged attention of chosen query rows over the video
//! tokens, per layer, drawn as heatmap grids over frames, baseline next to a knockout.

pub mod heatmap;
pub mod maps;
pub mod merge;
pub mod run;

pub use heatmap::{write_heatmaps, Panel};
pub use maps::{attention_maps, AttentionMap, MapKnockout, VideoGrid};
pub use merge::merge_attention_runs;
pub use run::{
    attention_sample, run_attention, AttentionRecord, AttentionRun, AttentionSettings,
    ATTENTION_FILE, ATTENTION_RUN_FILE,
};
