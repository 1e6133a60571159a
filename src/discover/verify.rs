//! Verification of a discovery against compounding. The sweep measures each flow in one window
//! at a time, but the config closes many flows in many layers at once: a model that reads the
//! same thing in several layers, or through several groups (the question through its text and
//! through its options), loses little when one window closes and much when all do. The whole
//! config is therefore run on the sweep's samples; while it lowers the measured probability of
//! some task's samples by more than the threshold on average (a config that keeps most tasks
//! and breaks one is not that task's pathway), the closed interval whose reopening recovers the
//! worst task most is reopened.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Axis;

use super::{DiscoverSettings, Discovery, Metric};
use crate::answer::SampleInputs;
use crate::engine::{run_dense, Rotary};
use crate::error::{Error, Result};
use crate::knockout::{pct_change, read_logits, run_baseline, Readout};
use crate::package::Package;
use crate::pathway::{PathwayConfig, SequenceGroups};

/// What a trial needs of one sample (its baseline's inputs and readout).
struct Prepared {
    task: String,
    embeds: ndarray::Array3<f32>,
    rotary: Rotary,
    groups: SequenceGroups,
    answer: i64,
    truth: i64,
    base: Readout,
}

fn metric_of(r: &Readout, metric: Metric) -> f64 {
    match metric {
        Metric::Pred => r.p_answer,
        Metric::True => r.p_truth,
    }
}

/// The worst task's mean %change of the metric's probability under the discovery's config.
fn config_cost(pkg: &Package, samples: &[Prepared], d: &Discovery, metric: Metric) -> Result<f64> {
    let config = PathwayConfig::from_yaml(&d.to_yaml("verify", "trial"), Path::new("<verify>"))?;
    let mut per_task: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for s in samples {
        let schedule = config.resolve(&s.groups, pkg.manifest.num_layers)?;
        let out = run_dense(pkg, &schedule, s.embeds.view(), &s.rotary)?;
        let r = read_logits(out.logits.index_axis(Axis(0), 0), s.answer, s.truth)?;
        let e = per_task.entry(&s.task).or_default();
        e.0 += pct_change(metric_of(&s.base, metric), metric_of(&r, metric));
        e.1 += 1;
    }
    Ok(per_task
        .values()
        .map(|(sum, n)| sum / *n as f64)
        .fold(f64::INFINITY, f64::min))
}

/// Verifies `discovery` on `inputs` (each with its task) as described in the module doc,
/// reopening intervals (marked `reopened`) and recording the final config's worst per-task mean
/// %change in `verified_pct_change`. Samples the model answers wrongly are left out unless
/// `all_samples`, as in the sweep.
pub fn verify(
    pkg: &Package,
    inputs: &[(String, SampleInputs)],
    all_samples: bool,
    discovery: &mut Discovery,
    settings: DiscoverSettings,
) -> Result<()> {
    let mut samples = Vec::new();
    for (task, inp) in inputs {
        let b = run_baseline(pkg, inp)?;
        if all_samples || b.correct() {
            samples.push(Prepared {
                task: task.clone(),
                groups: SequenceGroups::from_prompt(&inp.layout),
                answer: b.answer_token,
                truth: b.truth_token,
                base: b.readout,
                embeds: b.embeds,
                rotary: b.rotary,
            });
        }
    }
    if samples.is_empty() {
        return Err(Error::Input(
            "verification needs at least one sample the model answers correctly".into(),
        ));
    }
    let mut cost = config_cost(pkg, &samples, discovery, settings.metric)?;
    while cost < settings.threshold {
        let closed: Vec<(usize, usize)> = discovery
            .findings
            .iter()
            .enumerate()
            .flat_map(|(f, finding)| {
                finding
                    .intervals
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| !i.open)
                    .map(move |(j, _)| (f, j))
            })
            .collect();
        // The first of equally good candidates (flow order, then layer order): deterministic.
        let mut best: Option<((usize, usize), f64)> = None;
        for &(f, j) in &closed {
            let mut trial = discovery.clone();
            trial.findings[f].intervals[j].open = true;
            let c = config_cost(pkg, &samples, &trial, settings.metric)?;
            if best.is_none_or(|(_, b)| c > b) {
                best = Some(((f, j), c));
            }
        }
        let Some(((f, j), c)) = best else { break };
        let interval = &mut discovery.findings[f].intervals[j];
        interval.open = true;
        interval.reopened = true;
        cost = c;
    }
    discovery.verified_pct_change = Some(cost);
    Ok(())
}
