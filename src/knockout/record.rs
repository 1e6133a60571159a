//! The records a knockout run writes (design.md §6): one per (sample, flow, layer) in
//! `knockouts.jsonl`, and one per sample in `samples.jsonl`, written after the sample's knockout
//! records, so that a sample's status line marks its records complete (what resuming relies on).

use serde::{Deserialize, Serialize};

use super::window::WindowStyle;

/// One knockout of one sample: everything needed to re-plot without re-running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnockoutRecord {
    pub sample_id: String,
    pub task: Option<String>,
    /// The flow's label, e.g. `video ↛ last`.
    pub flow: String,
    /// The named target the flow belongs to (`custom` for YAML flows).
    pub target: String,
    /// The sweep layer, 0-based, and as plots show it (1-based).
    pub layer: usize,
    pub layer_1: usize,
    /// Window size k and style, and the blocked layers they gave (0-based).
    pub window: usize,
    pub window_style: WindowStyle,
    pub window_layers: Vec<usize>,
    /// Probability of the baseline's predicted token a, before and after the knockout.
    pub p_base: f64,
    pub p_knock: f64,
    /// (p_knock − p_base) / p_base × 100.
    pub pct_change_pred: f64,
    /// Probability of the ground-truth option token g, before and after.
    pub p_true_base: f64,
    pub p_true_knock: f64,
    pub pct_change_true: f64,
    /// The baseline's prediction a (token id and text), the ground truth g (token id and option
    /// label), and the argmax after the knockout with its probability.
    pub base_token: i64,
    pub base_answer: String,
    pub true_token: i64,
    pub true_answer: String,
    pub new_token: i64,
    pub new_answer: String,
    pub new_prob: f64,
    pub base_correct: bool,
    pub new_correct: bool,
    /// Causal edges removed, summed over the blocked layers.
    pub edges_blocked: usize,
    /// Rows left without an open key, summed over the blocked layers.
    pub rows_without_open_key: usize,
}

/// What became of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleStatus {
    /// Knocked out; its records are in `knockouts.jsonl`.
    Used,
    /// Answered wrongly by the baseline, skipped (no `--all-samples`).
    SkippedWrong,
    /// Could not be prepared or run (missing video, bad record, a group the prompt lacks…).
    Failed,
}

/// One line of `samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub sample_id: String,
    pub task: Option<String>,
    pub status: SampleStatus,
    /// Why a sample failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Baseline prediction and ground truth (absent for failed samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_base: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_correct: Option<bool>,
    /// Knockout records written for the sample.
    pub knockouts: usize,
}

/// `(p_knock − p_base) / p_base × 100`, the reference's relative change.
pub fn pct_change(p_base: f64, p_knock: f64) -> f64 {
    (p_knock - p_base) / p_base * 100.0
}
