//! The reports of a knockout run folder: `summary.csv` and, per target and metric, a plot of the
//! mean %change per layer (one line per flow, 95% band, zero line) as PNG and SVG. Everything is
//! read back from the folder's files, so a resumed run reports on all its samples.

use std::path::{Path, PathBuf};

use super::jsonl::read_jsonl;
use super::plot::{write_line_plot, LinePlot, Series};
use super::summary::{samples_csv, summarise, write_summary_csv, KnockoutSummary, ALL_TASKS};
use crate::error::{Error, Result};
use crate::knockout::{
    KnockoutRecord, RunManifest, SampleRecord, KNOCKOUTS_FILE, RUN_FILE, SAMPLES_FILE,
};

pub const SUMMARY_FILE: &str = "summary.csv";
pub const SAMPLES_SUMMARY_FILE: &str = "samples_summary.csv";
pub const PLOTS_DIR: &str = "plots";

/// What [`write_knockout_reports`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub summary: PathBuf,
    pub samples_summary: PathBuf,
    pub plots: Vec<PathBuf>,
    pub summary_data: KnockoutSummary,
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the summary CSV and plots of the run folder `out`.
pub fn write_knockout_reports(out: &Path) -> Result<ReportFiles> {
    let manifest_path = out.join(RUN_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    let manifest: RunManifest = serde_json::from_str(&text).map_err(|e| Error::Data {
        path: manifest_path.clone(),
        msg: format!("not a knockout run manifest: {e}"),
    })?;
    let records = read_jsonl::<KnockoutRecord>(&out.join(KNOCKOUTS_FILE))?.records;
    let samples = read_jsonl::<SampleRecord>(&out.join(SAMPLES_FILE))?.records;
    let summary = summarise(&records, &samples);
    let summary_path = out.join(SUMMARY_FILE);
    write_summary_csv(&summary_path, &summary)?;
    let samples_path = out.join(SAMPLES_SUMMARY_FILE);
    std::fs::write(&samples_path, samples_csv(&summary))
        .map_err(|e| Error::io(&samples_path, e))?;

    let plots_dir = out.join(PLOTS_DIR);
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    let mut targets: Vec<&str> = Vec::new();
    for f in &manifest.flows {
        if !targets.contains(&f.target.as_str()) {
            targets.push(&f.target);
        }
    }
    let used = summary.counts_of(ALL_TASKS).used;
    let mut plots = Vec::new();
    for target in targets {
        for (metric, what) in [
            ("pct_change_pred", "the predicted answer"),
            ("pct_change_true", "the ground truth"),
        ] {
            let series: Vec<Series> = manifest
                .flows
                .iter()
                .filter(|f| f.target == target)
                .map(|f| Series {
                    name: f.name.clone(),
                    points: summary
                        .rows
                        .iter()
                        .filter(|r| r.task == ALL_TASKS && r.flow == f.name)
                        .map(|r| {
                            let m = if metric == "pct_change_pred" {
                                &r.pred
                            } else {
                                &r.truth
                            };
                            ((r.layer + 1) as f64, m.mean, m.interval)
                        })
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            let plot = LinePlot {
                title: format!(
                    "{target} ({}, window {} {}, {used} samples)",
                    manifest.model, manifest.window, manifest.window_style
                ),
                x_label: "layer".into(),
                y_label: format!("% change in probability of {what}"),
                x_range: (0.5, manifest.num_layers as f64 + 0.5),
                hline: Some(0.0),
                series,
            };
            let stem = plots_dir.join(format!("{}_{metric}", file_safe(target)));
            let (png, svg) = write_line_plot(&stem, &plot)?;
            plots.push(png);
            plots.push(svg);
        }
    }
    Ok(ReportFiles {
        summary: summary_path,
        samples_summary: samples_path,
        plots,
        summary_data: summary,
    })
}
