//! Pathway discovery (design.md §4, issue "Effective pathways"): from the records of a knockout
//! sweep, the layer intervals where blocking a flow hurts become that flow's open ranges, and the
//! flow is blocked everywhere else. The result is a pathway config that `vidflow eval` and
//! `vidflow plan` read.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::knockout::{Flow, KnockoutRecord, RunManifest, KNOCKOUTS_FILE, RUN_FILE};
use crate::pathway::CROSS_FRAME;

mod compute;
mod verify;
pub use compute::{
    candidate_yaml, discover_compute, measure, Candidate, ComputeDiscovery, ComputeSettings,
    TaskAccuracy,
};
pub use verify::verify;

/// Which %change drives the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// %change of the baseline's predicted answer (the reference's curves).
    Pred,
    /// %change of the ground-truth answer.
    True,
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Metric> {
        match s {
            "pred" => Ok(Metric::Pred),
            "true" => Ok(Metric::True),
            o => Err(Error::Input(format!("--metric {o}: expected pred or true"))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DiscoverSettings {
    /// Layers per interval.
    pub interval: usize,
    /// An interval whose mean %change is below this (e.g. -5) is an effective pathway: kept open.
    pub threshold: f64,
    pub metric: Metric,
}

/// One layer interval of one flow (1-based inclusive layers, as configs write them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    pub first: usize,
    pub last: usize,
    /// Mean over samples and sweep layers of the interval; None when no record falls in it.
    pub mean_pct_change: Option<f64>,
    pub open: bool,
    /// Opened by [`verify`]: closed by the threshold, but the config with it closed cost more
    /// than the threshold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reopened: bool,
}

/// What discovery found for one flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowFinding {
    pub flow: String,
    pub source: String,
    pub target: String,
    pub samples: usize,
    pub intervals: Vec<Interval>,
}

impl FlowFinding {
    /// The open layers, 1-based, merged into ranges like `6-15, 21-25`; empty when none.
    pub fn open_ranges(&self) -> String {
        ranges(
            self.intervals
                .iter()
                .filter(|i| i.open)
                .map(|i| (i.first, i.last)),
        )
    }

    /// Last open layer (1-based), if any.
    pub fn last_open(&self) -> Option<usize> {
        self.intervals
            .iter()
            .filter(|i| i.open)
            .map(|i| i.last)
            .max()
    }
}

fn ranges(spans: impl Iterator<Item = (usize, usize)>) -> String {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if last.1 + 1 == a => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    merged
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("{a}")
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A discovery result: the findings and the config they make.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub num_layers: usize,
    pub findings: Vec<FlowFinding>,
    /// Flows that are not a single group → group edge (cannot become a rule), with the reason.
    pub skipped: Vec<(String, String)>,
    /// After [`verify`]: the worst task's mean %change of the measured probability under the
    /// whole config.
    pub verified_pct_change: Option<f64>,
}

/// The (source, target) rule a flow of the sweep stands for.
fn rule_of(flow: &Flow) -> std::result::Result<(String, String), String> {
    if flow.name == CROSS_FRAME {
        return Ok((CROSS_FRAME.into(), CROSS_FRAME.into()));
    }
    match flow.blocks.as_slice() {
        [b] if b.sources.len() == 1 && b.targets.len() == 1 => {
            Ok((b.sources[0].clone(), b.targets[0].clone()))
        }
        _ => Err("not a single source group → target group edge".into()),
    }
}

fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: format!("line {}: {e}", i + 1),
        })?);
    }
    Ok(out)
}

/// Reads a knockout run folder (`run.json`, `knockouts.jsonl`) and finds each flow's open intervals.
pub fn discover(dir: &Path, settings: DiscoverSettings) -> Result<Discovery> {
    if settings.interval == 0 {
        return Err(Error::Input("--interval must be at least 1".into()));
    }
    if !settings.threshold.is_finite() {
        return Err(Error::Input(format!(
            "--threshold {}: expected a finite percentage change (e.g. -5 for a 5% drop)",
            settings.threshold
        )));
    }
    let run_path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&run_path).map_err(|e| Error::io(&run_path, e))?;
    let run: RunManifest = serde_json::from_str(&text).map_err(|e| Error::Data {
        path: run_path.clone(),
        msg: format!("not a knockout run manifest: {e}"),
    })?;
    let records: Vec<KnockoutRecord> = read_json_lines(&dir.join(KNOCKOUTS_FILE))?;
    if records.is_empty() {
        return Err(Error::Data {
            path: dir.join(KNOCKOUTS_FILE),
            msg: "no knockout records: nothing to discover from".into(),
        });
    }
    let l = run.num_layers;
    if l == 0 {
        return Err(Error::Data {
            path: run_path,
            msg: "num_layers is 0: a knockout run sweeps at least one layer".into(),
        });
    }
    // A record outside the run's layers belongs to another run: its intervals would be wrong.
    if let Some(r) = records.iter().find(|r| r.layer >= l) {
        return Err(Error::Data {
            path: dir.join(KNOCKOUTS_FILE),
            msg: format!(
                "the record of sample {:?}, flow {:?} is at layer {}, but run.json has num_layers \
                 {l} (layers 0 to {})",
                r.sample_id,
                r.flow,
                r.layer,
                l - 1
            ),
        });
    }
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    for flow in &run.flows {
        let (source, target) = match rule_of(flow) {
            Ok(r) => r,
            Err(why) => {
                skipped.push((flow.name.clone(), why));
                continue;
            }
        };
        // Per sweep layer: the mean over samples.
        let mut per_layer: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
        let mut samples = std::collections::BTreeSet::new();
        for r in records.iter().filter(|r| r.flow == flow.name) {
            let v = match settings.metric {
                Metric::Pred => r.pct_change_pred,
                Metric::True => r.pct_change_true,
            };
            let e = per_layer.entry(r.layer).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
            samples.insert(r.sample_id.clone());
        }
        let intervals = (0..l)
            .step_by(settings.interval)
            .map(|start| {
                let end = (start + settings.interval).min(l);
                let means: Vec<f64> = (start..end)
                    .filter_map(|layer| per_layer.get(&layer).map(|(s, n)| s / *n as f64))
                    .collect();
                let mean =
                    (!means.is_empty()).then(|| means.iter().sum::<f64>() / means.len() as f64);
                Interval {
                    first: start + 1,
                    last: end,
                    mean_pct_change: mean,
                    open: mean.is_some_and(|m| m < settings.threshold),
                    reopened: false,
                }
            })
            .collect();
        findings.push(FlowFinding {
            flow: flow.name.clone(),
            source,
            target,
            samples: samples.len(),
            intervals,
        });
    }
    Ok(Discovery {
        num_layers: l,
        findings,
        skipped,
        verified_pct_change: None,
    })
}

impl Discovery {
    /// The pathway config: each flow blocked except in its open ranges (blocked everywhere when it
    /// has none). Like the published configs, when the sweep covers them, video ↛ video is blocked
    /// after the last open layer of video ↛ question, and question ↛ question after the last open
    /// layer of question ↛ last.
    pub fn to_yaml(&self, name: &str, description: &str) -> String {
        let mut out = format!(
            "# Discovered by `vidflow discover`: {description}\nname: {name}\nnum_layers: {}\nrules:\n",
            self.num_layers
        );
        let q = |s: &str| format!("\"{s}\"");
        for f in &self.findings {
            let open = f.open_ranges();
            let layers = if open.is_empty() {
                "blocked: all".to_string()
            } else {
                format!("except: \"{open}\"")
            };
            out.push_str(&format!(
                "  - {{source: {}, target: {}, {layers}}}\n",
                q(&f.source),
                q(&f.target)
            ));
        }
        let after = |src: &str, tgt: &str| {
            self.findings
                .iter()
                .find(|f| f.source == src && f.target == tgt)
                .and_then(FlowFinding::last_open)
        };
        for (flow, group) in [
            (("video", "question"), "video"),
            (("question", "last"), "question"),
        ] {
            let already = self
                .findings
                .iter()
                .any(|f| f.source == group && f.target == group);
            if let Some(last) = after(flow.0, flow.1) {
                if last < self.num_layers && !already {
                    out.push_str(&format!(
                        "  - {{source: {g}, target: {g}, blocked: \"{}-{}\"}}  # after {} ↛ {}\n",
                        last + 1,
                        self.num_layers,
                        flow.0,
                        flow.1,
                        g = q(group)
                    ));
                }
            }
        }
        out
    }
}
