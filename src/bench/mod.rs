//! Prefill latency of the full run against pathway-pruned plans and dense masked runs, next to the
//! speedup the plan's FLOP count predicts. `vidflow bench` and `vidflow demo` print these reports.
//!
//! Modes take turns run by run, so load that drifts during a benchmark hits every mode alike; the
//! paired speedup (median over rounds of full / mode) is the number to quote on a busy machine.

use std::time::Instant;

use ndarray::{Array1, Array4};
use serde::Serialize;

use crate::answer::{self, SampleInputs};
use crate::engine;
use crate::error::{Error, Result};
use crate::package::Package;
use crate::pathway::{MaskSchedule, Pathways, SequenceGroups};
use crate::plan::{FlopModel, ModelShape, Plan, PlanReport};
use crate::runtime::Transfers;

/// What one benchmarked mode executes.
#[derive(Debug, Clone)]
pub enum BenchMode {
    /// The plain causal model (always measured first, as the baseline).
    Full,
    /// Only the pathways open, executed as a compiled plan that skips dead rows.
    Pruned(Pathways),
    /// The same masks applied to every row of every layer (no skipping): the accuracy twin.
    Dense(Pathways),
    /// The plain causal model with the answer read after layer K (1-based); later layers skipped.
    Exit(usize),
    /// Another question about a video whose prefix is cached: only the question's rows run
    /// (of `full`, `exit:K` or `pathways:CONFIG`).
    Cached(Box<BenchMode>),
}

impl BenchMode {
    /// `full`, `pathways:CONFIG`, `dense:CONFIG` or `exit:K`, each optionally behind `cached:`;
    /// CONFIG is a YAML file or random:RATIO[:SEED].
    pub fn parse(arg: &str, scale: bool, num_layers: usize) -> Result<BenchMode> {
        if let Some(inner) = arg.strip_prefix("cached:") {
            return match BenchMode::parse(inner, scale, num_layers)? {
                m @ (BenchMode::Full | BenchMode::Exit(_)) => Ok(BenchMode::Cached(Box::new(m))),
                BenchMode::Pruned(Pathways::Config(c)) => Ok(BenchMode::Cached(Box::new(
                    BenchMode::Pruned(Pathways::Config(c)),
                ))),
                _ => Err(Error::Input(format!(
                    "--mode {arg:?}: cached: applies to full, exit:K and pathways:CONFIG (random \
                     blocking is not prefix-stable, and a dense run has no cached twin)"
                ))),
            };
        }
        if let Some(k) = arg.strip_prefix("exit:") {
            return match k.parse::<usize>() {
                Ok(k) if (1..=num_layers).contains(&k) => Ok(BenchMode::Exit(k)),
                _ => Err(Error::Input(format!(
                    "--mode {arg:?}: expected exit:K with K from 1 to {num_layers}"
                ))),
            };
        }
        let pathways = |c: &str| -> Result<Pathways> {
            let p = Pathways::parse(c)?;
            Ok(if scale { p.scaled_to(num_layers) } else { p })
        };
        if arg == "full" {
            return Ok(BenchMode::Full);
        }
        if let Some(c) = arg.strip_prefix("pathways:") {
            return Ok(BenchMode::Pruned(pathways(c)?));
        }
        if let Some(c) = arg.strip_prefix("dense:") {
            return Ok(BenchMode::Dense(pathways(c)?));
        }
        Err(Error::Input(format!(
            "--mode {arg:?}: expected full, pathways:CONFIG, dense:CONFIG, exit:K or cached:MODE"
        )))
    }

    pub fn name(&self) -> String {
        match self {
            BenchMode::Full => "full".into(),
            BenchMode::Pruned(p) => format!("pathways:{}", p.describe()),
            BenchMode::Dense(p) => format!("dense:{}", p.describe()),
            BenchMode::Exit(k) => format!("exit:{k}"),
            BenchMode::Cached(m) => format!("cached:{}", m.name()),
        }
    }
}

/// The plan a mode executes over the whole sequence (before any prefix is taken out).
fn plan_of(mode: &BenchMode, groups: &SequenceGroups, num_layers: usize) -> Result<Plan> {
    let s = groups.seq_len();
    Ok(match mode {
        BenchMode::Full => Plan::dense(&MaskSchedule::full_causal(num_layers, s)),
        BenchMode::Exit(k) => {
            Plan::dense(&MaskSchedule::full_causal(num_layers, s).exit_after(*k)?)
        }
        BenchMode::Pruned(p) => Plan::compile(&p.resolve(groups, num_layers)?),
        BenchMode::Dense(p) => Plan::dense(&p.resolve(groups, num_layers)?),
        BenchMode::Cached(m) => plan_of(m, groups, num_layers)?,
    })
}

/// A plan's report with only rows from `p` on computed (they read the cached prefix's keys).
fn after_prefix(mut report: PlanReport, plan: &Plan, p: usize, cost: &FlopModel) -> PlanReport {
    let mut flops = cost.head(plan.outputs.len());
    let mut rows = 0;
    for (lr, lp) in report.layers.iter_mut().zip(&plan.layers) {
        let own = lp.rows.iter().filter(|&&r| r >= p).count();
        lr.rows_computed = own;
        lr.flops = cost.layer(own, p + own).total();
        flops += lr.flops;
        rows += own;
    }
    report.rows_computed = rows;
    report.flops = flops;
    report.predicted_speedup = report.full_flops as f64 / flops as f64;
    report
}

/// Timed and untimed runs per mode.
#[derive(Debug, Clone, Copy)]
pub struct BenchSettings {
    pub runs: usize,
    pub warmup: usize,
}

/// What one timed run did.
struct Run {
    seconds: f64,
    setup_seconds: f64,
    logits: Array1<f32>,
    transfers: Transfers,
}

/// One mode's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    /// Median time spent resolving the masks and compiling the plan (inside p50/p90).
    pub setup_p50_ms: f64,
    pub rows_computed: usize,
    pub open_edges: usize,
    pub flops: u64,
    pub predicted_speedup: f64,
    pub measured_speedup: f64,
    /// Median over rounds of (full time / this mode's time) within the same round: robust to load
    /// that drifts during the benchmark, since a round's runs are adjacent in time.
    pub paired_speedup: f64,
    pub measured_over_predicted: f64,
    pub paired_over_predicted: f64,
    pub argmax_token: usize,
    /// Largest |logit difference| to the dense run of the same config, where both were measured.
    pub max_abs_diff_to_dense: Option<f32>,
    /// What crossed between host and device memory in one run of this mode (the first timed
    /// one; every run moves the same): masks, row indices and the logits read back.
    pub transfers: Transfers,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub seq_len: usize,
    pub video_tokens: usize,
    pub num_layers: usize,
    pub threads: usize,
    pub runs: usize,
    pub warmup: usize,
    pub vision_embed_ms: f64,
    /// 1-minute load average before and after the timed runs (Linux), to judge the numbers.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub modes: Vec<ModeResult>,
}

/// The 1-minute load average, where /proc/loadavg exists.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seeded pixels in the normalised range: latency does not depend on the content.
pub fn random_pixels(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut state = seed ^ 0x2545_F491_4F6C_DD1D;
    Array4::from_shape_simple_fn(shape, || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn argmax(v: &Array1<f32>) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// Last-position logits of `mode` reusing the package's cached prefix of `inputs` (computed on
/// first use).
fn cached_logits(
    pkg: &Package,
    inputs: &SampleInputs,
    groups: &SequenceGroups,
    mode: &BenchMode,
) -> Result<Array1<f32>> {
    let num_layers = pkg.num_layers();
    let no_reuse = || {
        Error::Input(
            "cached: the prefix cache is off (--prefix-cache-mb 0) or the masks make the prefix \
             depend on the question"
                .into(),
        )
    };
    match mode {
        BenchMode::Full | BenchMode::Exit(_) => {
            if !pkg.prefixes().enabled() {
                return Err(no_reuse());
            }
            let layers = match mode {
                BenchMode::Exit(k) => *k,
                _ => num_layers,
            };
            answer::causal_logits(pkg, inputs, layers)
        }
        BenchMode::Pruned(p) => {
            let schedule = p.resolve(groups, num_layers)?;
            let plan = Plan::compile(&schedule);
            let sp = answer::split(
                pkg,
                inputs,
                engine::PrefixMasks::Schedule(&schedule),
                schedule.num_layers(),
                false,
            )?
            .ok_or_else(no_reuse)?;
            let out =
                engine::run_plan_after(pkg, &schedule, &plan, &sp.prefix, &sp.embeds, &sp.rotary)?;
            Ok(out.last_logits().to_owned())
        }
        _ => Err(no_reuse()),
    }
}

/// Benchmarks `modes` (the full run is added first when missing) on one prepared sample;
/// `threads` is only recorded. `on_round(i, n)` reports progress.
pub fn bench(
    pkg: &Package,
    inputs: &SampleInputs,
    modes: &[BenchMode],
    settings: BenchSettings,
    threads: usize,
    mut on_round: impl FnMut(usize, usize),
) -> Result<BenchReport> {
    if settings.runs == 0 {
        return Err(Error::Input("--runs must be at least 1".into()));
    }
    let m = &pkg.manifest;
    let num_layers = m.num_layers;
    let mut all = vec![BenchMode::Full];
    all.extend(
        modes
            .iter()
            .filter(|m| !matches!(m, BenchMode::Full))
            .cloned(),
    );
    let modes = all;
    let groups = SequenceGroups::from_prompt(&inputs.layout);
    let t = Instant::now();
    let (embeds, rotary) = answer::embed(pkg, inputs)?;
    let vision_embed_ms = t.elapsed().as_secs_f64() * 1e3;
    let s = groups.seq_len();

    let shape = ModelShape::from_manifest(m);
    let cost = FlopModel::new(&shape);
    let reports: Vec<PlanReport> = modes
        .iter()
        .map(|mode| -> Result<PlanReport> {
            let name = mode.name();
            let plan = plan_of(mode, &groups, num_layers)?;
            let report = PlanReport::new(&shape.name, &name, &plan, &cost);
            Ok(match (mode, answer::prefix_inputs(inputs)) {
                (BenchMode::Cached(_), Some(pi)) => after_prefix(report, &plan, pi.len, &cost),
                (BenchMode::Cached(_), None) => {
                    return Err(Error::Input(
                        "cached: the prompt has no question after the video to split at".into(),
                    ))
                }
                _ => report,
            })
        })
        .collect::<Result<_>>()?;
    // Cached modes time a question whose prefix is already computed: compute it now.
    pkg.prefixes().clear();

    let once = |mode: &BenchMode| -> Result<Run> {
        let before = pkg.data().transfers();
        let start = Instant::now();
        let (logits, setup_seconds) = match mode {
            BenchMode::Full => (answer::last_logits(pkg, &embeds, &rotary)?, 0.0),
            BenchMode::Pruned(p) => {
                let schedule = p.resolve(&groups, num_layers)?;
                let plan = Plan::compile(&schedule);
                let setup = start.elapsed().as_secs_f64();
                let out = engine::run_plan(pkg, &schedule, &plan, &embeds, &rotary)?;
                (out.last_logits().to_owned(), setup)
            }
            BenchMode::Dense(p) => {
                let schedule = p.resolve(&groups, num_layers)?;
                let setup = start.elapsed().as_secs_f64();
                let out = engine::run_dense(pkg, &schedule, &embeds, &rotary)?;
                (out.last_logits().to_owned(), setup)
            }
            BenchMode::Exit(k) => (answer::last_logits_until(pkg, &embeds, &rotary, *k)?, 0.0),
            BenchMode::Cached(inner) => (cached_logits(pkg, inputs, &groups, inner)?, 0.0),
        };
        let seconds = start.elapsed().as_secs_f64();
        Ok(Run {
            seconds,
            setup_seconds,
            logits,
            transfers: pkg.data().transfers().since(&before),
        })
    };

    for mode in &modes {
        if let BenchMode::Cached(inner) = mode {
            cached_logits(pkg, inputs, &groups, inner)?;
        }
    }
    let load_before = load_average();
    let mut timed: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    let rounds = settings.warmup + settings.runs;
    for i in 0..rounds {
        for (mode, runs) in modes.iter().zip(timed.iter_mut()) {
            let r = once(mode)?;
            if i >= settings.warmup {
                runs.push(r);
            }
        }
        on_round(i + 1, rounds);
    }
    let load_after = load_average();

    let stats = |runs: &[Run]| {
        let mut t: Vec<f64> = runs.iter().map(|r| r.seconds * 1e3).collect();
        let mut setup: Vec<f64> = runs.iter().map(|r| r.setup_seconds * 1e3).collect();
        t.sort_by(f64::total_cmp);
        setup.sort_by(f64::total_cmp);
        (
            percentile(&t, 0.5),
            percentile(&t, 0.9),
            percentile(&setup, 0.5),
        )
    };
    let full_p50 = stats(&timed[0]).0;
    let results: Vec<ModeResult> = modes
        .iter()
        .zip(&timed)
        .zip(&reports)
        .map(|((mode, runs), report)| {
            let (p50, p90, setup) = stats(runs);
            let logits = &runs[0].logits;
            let dense_twin = match mode {
                BenchMode::Pruned(p) => modes
                    .iter()
                    .position(|o| matches!(o, BenchMode::Dense(q) if q == p)),
                _ => None,
            };
            let measured = full_p50 / p50;
            let mut pairs: Vec<f64> = timed[0]
                .iter()
                .zip(runs)
                .map(|(f, r)| f.seconds / r.seconds)
                .collect();
            pairs.sort_by(f64::total_cmp);
            let paired = percentile(&pairs, 0.5);
            ModeResult {
                mode: mode.name(),
                p50_ms: p50,
                p90_ms: p90,
                setup_p50_ms: setup,
                rows_computed: report.rows_computed,
                open_edges: report.open_edges,
                flops: report.flops,
                predicted_speedup: report.predicted_speedup,
                measured_speedup: measured,
                paired_speedup: paired,
                paired_over_predicted: paired / report.predicted_speedup,
                measured_over_predicted: measured / report.predicted_speedup,
                argmax_token: argmax(logits),
                max_abs_diff_to_dense: dense_twin.map(|d| {
                    (logits - &timed[d][0].logits)
                        .iter()
                        .fold(0.0f32, |a, x| a.max(x.abs()))
                }),
                transfers: runs[0].transfers,
            }
        })
        .collect();
    Ok(BenchReport {
        model: m.name.clone(),
        seq_len: s,
        video_tokens: m.video.num_video_tokens(),
        num_layers,
        threads,
        runs: settings.runs,
        warmup: settings.warmup,
        vision_embed_ms,
        load_before,
        load_after,
        modes: results,
    })
}

impl BenchReport {
    /// The report as a fixed-width table.
    pub fn table(&self) -> String {
        let r = self;
        let mut out = format!(
            "{}: S = {} positions ({} video), {} layers, {} threads, {} timed runs per mode after {} warm-up\n\
             vision + embeddings: {:.1} ms (once, the same for every mode; not in the times below); \
             load average {} before, {} after\n",
            r.model,
            r.seq_len,
            r.video_tokens,
            r.num_layers,
            if r.threads == 0 { "all".to_string() } else { r.threads.to_string() },
            r.runs,
            r.warmup,
            r.vision_embed_ms,
            r.load_before.map_or("?".into(), |l| format!("{l:.2}")),
            r.load_after.map_or("?".into(), |l| format!("{l:.2}")),
        );
        out += &format!(
            "{:<34} {:>9} {:>9} {:>8} {:>12} {:>13} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
            "mode",
            "p50 ms",
            "p90 ms",
            "setup",
            "rows",
            "open edges",
            "GFLOPs",
            "predicted",
            "measured",
            "paired",
            "meas/pred",
            "pair/pred"
        );
        for m in &r.modes {
            out += &format!(
                "{:<34} {:>9.1} {:>9.1} {:>8.1} {:>12} {:>13} {:>8.2} {:>9.3}x {:>8.3}x {:>8.3}x {:>9.3} {:>9.3}\n",
                m.mode,
                m.p50_ms,
                m.p90_ms,
                m.setup_p50_ms,
                m.rows_computed,
                m.open_edges,
                m.flops as f64 / 1e9,
                m.predicted_speedup,
                m.measured_speedup,
                m.paired_speedup,
                m.measured_over_predicted,
                m.paired_over_predicted
            );
        }
        for m in &r.modes {
            let t = &m.transfers;
            out += &format!(
                "{}: per run {} uploads ({:.2} MB: masks {:.2}, indices {:.3}, states {:.2}), \
                 {} downloads ({:.3} MB)\n",
                m.mode,
                t.host_to_device_calls,
                t.host_to_device_bytes as f64 / 1e6,
                t.host_to_device_by_kind.masks as f64 / 1e6,
                t.host_to_device_by_kind.indices as f64 / 1e6,
                t.host_to_device_by_kind.states as f64 / 1e6,
                t.device_to_host_calls,
                t.device_to_host_bytes as f64 / 1e6,
            );
        }
        for m in &r.modes {
            if let Some(d) = m.max_abs_diff_to_dense {
                out += &format!(
                    "{}: max |logit difference| to its dense run {d:.2e}\n",
                    m.mode
                );
            }
        }
        out
    }
}
