//! Accuracy per task and overall, edges kept, and the records that could not be scored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::EvalRecord;
use crate::data::BadRecord;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub scored: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub mean_edges_open: f64,
    pub mean_edge_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub overall: Tally,
    pub tasks: BTreeMap<String, Tally>,
    /// Records rejected when loading the data, and samples that failed at run time.
    pub not_scored: Vec<BadRecord>,
    /// Samples that had failed in an earlier invocation and were run again by this one.
    #[serde(default)]
    pub retried: usize,
}

/// Written when a run (or merge) finishes; its absence marks an unfinished run.
pub const SUMMARY_FILE: &str = "summary.json";

fn tally<'a>(records: impl Iterator<Item = &'a EvalRecord>) -> Tally {
    let mut t = Tally::default();
    let (mut edges, mut share) = (0.0, 0.0);
    for r in records.filter(|r| r.scored) {
        t.scored += 1;
        t.correct += usize::from(r.correct == Some(true));
        if let (Some(open), Some(total)) = (r.edges_open, r.edges_total) {
            edges += open as f64;
            share += open as f64 / total.max(1) as f64;
        }
    }
    if t.scored > 0 {
        let n = t.scored as f64;
        t.accuracy = t.correct as f64 / n;
        t.mean_edges_open = edges / n;
        t.mean_edge_share = share / n;
    }
    t
}

pub fn summarize(records: &[EvalRecord], load_errors: &[BadRecord]) -> Summary {
    let mut by_task: BTreeMap<String, Vec<&EvalRecord>> = BTreeMap::new();
    for r in records {
        by_task.entry(r.task.clone()).or_default().push(r);
    }
    let mut not_scored = load_errors.to_vec();
    not_scored.extend(records.iter().filter(|r| !r.scored).map(|r| BadRecord {
        task: r.task.clone(),
        id: r.id.clone(),
        reason: r.error.clone().unwrap_or_default(),
    }));
    Summary {
        overall: tally(records.iter()),
        tasks: by_task
            .into_iter()
            .map(|(k, v)| (k, tally(v.into_iter())))
            .collect(),
        not_scored,
        retried: 0,
    }
}

/// Writes `summary.json` and `summary.csv` (one row per task, then `overall`).
pub fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    let json = dir.join(SUMMARY_FILE);
    std::fs::write(
        &json,
        serde_json::to_string_pretty(s).expect("serialize") + "\n",
    )
    .map_err(|e| Error::io(&json, e))?;
    let mut csv = String::from("task,scored,correct,accuracy,mean_edges_open,mean_edge_share\n");
    let row = |name: &str, t: &Tally| {
        format!(
            "{name},{},{},{:.6},{:.1},{:.6}\n",
            t.scored, t.correct, t.accuracy, t.mean_edges_open, t.mean_edge_share
        )
    };
    for (task, t) in &s.tasks {
        csv.push_str(&row(task, t));
    }
    csv.push_str(&row("overall", &s.overall));
    let path = dir.join("summary.csv");
    std::fs::write(&path, csv).map_err(|e| Error::io(&path, e))
}
