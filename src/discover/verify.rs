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
use crate::engine::{run_dense_from, Rotary};
use crate::error::{Error, Result};
use crate::knockout::{pct_change, read_logits, run_baseline, Readout};
use crate::package::Package;
use crate::pathway::{MaskSchedule, PathwayConfig, SequenceGroups};
use crate::runtime::Tensor;

/// What a trial needs of one sample (its baseline's inputs and readout).
struct Prepared {
    task: String,
    embeds: Tensor,
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

/// The discovery's config run on every sample, with the residual stream entering each layer kept,
/// so that a trial differing from it from layer `a` on needs to run only layers `a..L`.
struct Trace {
    schedules: Vec<MaskSchedule>,
    /// Per sample, entry `l` is the input of layer `l` (entry `L` the last layer's output).
    hidden: Vec<Vec<Tensor>>,
    readouts: Vec<Readout>,
    /// Sample indices per task, the task with the lowest mean %change first.
    tasks_worst_first: Vec<(String, Vec<usize>)>,
    cost: f64,
}

fn schedules(pkg: &Package, samples: &[Prepared], d: &Discovery) -> Result<Vec<MaskSchedule>> {
    let config = PathwayConfig::from_yaml(&d.to_yaml("verify", "trial"), Path::new("<verify>"))?;
    samples
        .iter()
        .map(|s| config.resolve(&s.groups, pkg.manifest.num_layers))
        .collect()
}

/// Runs `schedule` on sample `s` from `start` (whose input is `hidden`), returning the readout
/// and, with `keep`, the inputs of layers `start..=L`.
fn run_from(
    pkg: &Package,
    s: &Prepared,
    schedule: &MaskSchedule,
    start: usize,
    hidden: &Tensor,
    keep: bool,
) -> Result<(Readout, Vec<Tensor>)> {
    let (out, kept) = run_dense_from(pkg, schedule, start, hidden, &s.rotary, keep)?;
    let r = read_logits(out.logits.index_axis(Axis(0), 0), s.answer, s.truth)?;
    Ok((r, kept))
}

/// Each task's mean %change of the metric's probability, from each sample's readout.
fn task_means(samples: &[Prepared], readouts: &[Readout], metric: Metric) -> BTreeMap<String, f64> {
    let mut per_task: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (s, r) in samples.iter().zip(readouts) {
        let e = per_task.entry(s.task.clone()).or_default();
        e.0 += pct_change(metric_of(&s.base, metric), metric_of(r, metric));
        e.1 += 1;
    }
    per_task
        .into_iter()
        .map(|(task, (sum, n))| (task, sum / n as f64))
        .collect()
}

fn trace(pkg: &Package, samples: &[Prepared], d: &Discovery, metric: Metric) -> Result<Trace> {
    let schedules = schedules(pkg, samples, d)?;
    let mut readouts = Vec::with_capacity(samples.len());
    let mut hidden = Vec::with_capacity(samples.len());
    for (s, schedule) in samples.iter().zip(&schedules) {
        let (r, h) = run_from(pkg, s, schedule, 0, &s.embeds, true)?;
        readouts.push(r);
        hidden.push(h);
    }
    let means = task_means(samples, &readouts, metric);
    let cost = means.values().copied().fold(f64::INFINITY, f64::min);
    let mut order: Vec<(&String, &f64)> = means.iter().collect();
    order.sort_by(|a, b| a.1.total_cmp(b.1).then_with(|| a.0.cmp(b.0)));
    let tasks_worst_first = order
        .into_iter()
        .map(|(task, _)| {
            let members = (0..samples.len())
                .filter(|&i| &samples[i].task == task)
                .collect();
            (task.clone(), members)
        })
        .collect();
    Ok(Trace {
        schedules,
        hidden,
        readouts,
        tasks_worst_first,
        cost,
    })
}

/// The worst task's mean %change under trial config `d`, which differs from `base`'s config in
/// some layers: each sample reruns only from the first layer whose mask differs (the layers
/// before it compute exactly what `base` recorded). Tasks run worst first (by `base`'s costs);
/// as soon as one task's mean is at or below `bound` the trial cannot beat the best candidate so
/// far, and `None` is returned without running the remaining tasks.
fn trial_cost(
    pkg: &Package,
    samples: &[Prepared],
    base: &Trace,
    d: &Discovery,
    metric: Metric,
    bound: Option<f64>,
) -> Result<Option<f64>> {
    let schedules = schedules(pkg, samples, d)?;
    let mut worst = f64::INFINITY;
    for (_, members) in &base.tasks_worst_first {
        let mut sum = 0.0;
        for &i in members {
            let (s, schedule, old) = (&samples[i], &schedules[i], &base.schedules[i]);
            let first = (0..schedule.num_layers()).find(|&l| schedule.layer(l) != old.layer(l));
            let r = match first {
                Some(a) => run_from(pkg, s, schedule, a, &base.hidden[i][a], false)?.0,
                None => base.readouts[i],
            };
            sum += pct_change(metric_of(&s.base, metric), metric_of(&r, metric));
        }
        let mean = sum / members.len() as f64;
        worst = worst.min(mean);
        if bound.is_some_and(|b| mean <= b) {
            return Ok(None);
        }
    }
    Ok(Some(worst))
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
    let mut current = trace(pkg, &samples, discovery, settings.metric)?;
    while current.cost < settings.threshold {
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
            let bound = best.map(|(_, b)| b);
            if let Some(c) = trial_cost(pkg, &samples, &current, &trial, settings.metric, bound)? {
                if best.is_none_or(|(_, b)| c > b) {
                    best = Some(((f, j), c));
                }
            }
        }
        let Some(((f, j), _)) = best else { break };
        let interval = &mut discovery.findings[f].intervals[j];
        interval.open = true;
        interval.reopened = true;
        current = trace(pkg, &samples, discovery, settings.metric)?;
    }
    discovery.verified_pct_change = Some(current.cost);
    Ok(())
}
