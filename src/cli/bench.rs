//! `vidflow bench`: prefill latency of the full run, pathway-pruned plans and dense masked runs,
//! next to the speedup the plan's FLOP count predicts.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use ndarray::{Array1, Array4};
use serde::Serialize;
use vidflow::answer::{self, SampleInputs};
use vidflow::engine;
use vidflow::package::Package;
use vidflow::pathway::{MaskSchedule, Pathways, SequenceGroups};
use vidflow::plan::{FlopModel, ModelShape, Plan, PlanReport};
use vidflow::video::load_video;

use super::plan::{pathways, PromptArgs};
use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// full, pathways:CONFIG or dense:CONFIG, where CONFIG is a YAML file or random:RATIO[:SEED];
    /// repeat to compare several. `full` is always measured, as the baseline.
    #[arg(long = "mode", required = true)]
    modes: Vec<String>,
    /// Timed runs per mode (modes take turns, run by run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed runs per mode before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Video file; by default seeded random pixels (latency does not depend on the content).
    #[arg(long)]
    video: Option<PathBuf>,
    /// Seed of the random pixels.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Map config layer numbers onto the model's layer count (layer centres).
    #[arg(long)]
    scale: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

enum Mode {
    Full,
    Pruned(Pathways),
    Dense(Pathways),
}

impl Mode {
    fn parse(arg: &str, scale: bool, num_layers: usize) -> anyhow::Result<Mode> {
        if arg == "full" {
            return Ok(Mode::Full);
        }
        if let Some(c) = arg.strip_prefix("pathways:") {
            return Ok(Mode::Pruned(pathways(c, scale, num_layers)?));
        }
        if let Some(c) = arg.strip_prefix("dense:") {
            return Ok(Mode::Dense(pathways(c, scale, num_layers)?));
        }
        bail!("--mode {arg:?}: expected full, pathways:CONFIG or dense:CONFIG")
    }

    fn name(&self) -> String {
        match self {
            Mode::Full => "full".into(),
            Mode::Pruned(p) => format!("pathways:{}", p.describe()),
            Mode::Dense(p) => format!("dense:{}", p.describe()),
        }
    }
}

/// What one timed run did.
struct Run {
    seconds: f64,
    setup_seconds: f64,
    logits: Array1<f32>,
}

/// One mode's measurements, as printed.
#[derive(Serialize)]
struct ModeResult {
    mode: String,
    p50_ms: f64,
    p90_ms: f64,
    /// Median time spent resolving the masks and compiling the plan (inside p50/p90).
    setup_p50_ms: f64,
    rows_computed: usize,
    open_edges: usize,
    flops: u64,
    predicted_speedup: f64,
    measured_speedup: f64,
    /// Median over rounds of (full time / this mode's time) within the same round: robust to load
    /// that drifts during the benchmark, since a round's runs are adjacent in time.
    paired_speedup: f64,
    measured_over_predicted: f64,
    paired_over_predicted: f64,
    argmax_token: usize,
    /// Largest |logit difference| to the dense run of the same config, where both were measured.
    max_abs_diff_to_dense: Option<f32>,
}

#[derive(Serialize)]
struct BenchReport {
    model: String,
    seq_len: usize,
    video_tokens: usize,
    num_layers: usize,
    threads: usize,
    runs: usize,
    warmup: usize,
    vision_embed_ms: f64,
    /// 1-minute load average before and after the timed runs (Linux), to judge the numbers.
    load_before: Option<f64>,
    load_after: Option<f64>,
    modes: Vec<ModeResult>,
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

fn random_pixels(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
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

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let opts = args.runtime.options()?;
    let pkg = Package::open(&args.model, &opts)?;
    let m = &pkg.manifest;
    let num_layers = m.num_layers;
    let mut modes = vec![Mode::Full];
    for a in &args.modes {
        match Mode::parse(a, args.scale, num_layers)? {
            Mode::Full => {}
            mode => modes.push(mode),
        }
    }

    let layout = args.prompt.layout(m, &args.model)?;
    let groups = SequenceGroups::from_prompt(&layout);
    let pixels = match &args.video {
        Some(v) => load_video(v, &m.video, None, None)?.pixel_values,
        None => {
            let v = &m.video;
            random_pixels((v.num_frames, 3, v.frame_height, v.frame_width), args.seed)
        }
    };
    let inputs = SampleInputs {
        pixels,
        frame_indices: Vec::new(),
        layout,
    };
    let t = Instant::now();
    let (embeds, rotary) = answer::embed(&pkg, &inputs)?;
    let vision_embed_ms = t.elapsed().as_secs_f64() * 1e3;
    let s = groups.seq_len();

    let shape = ModelShape::from_manifest(m);
    let cost = FlopModel::new(&shape);
    let reports: Vec<PlanReport> = modes
        .iter()
        .map(|mode| -> anyhow::Result<PlanReport> {
            let name = mode.name();
            Ok(match mode {
                Mode::Full => PlanReport::new(
                    &shape.name,
                    &name,
                    &Plan::dense(&MaskSchedule::full_causal(num_layers, s)),
                    &cost,
                ),
                Mode::Pruned(p) => PlanReport::new(
                    &shape.name,
                    &name,
                    &Plan::compile(&p.resolve(&groups, num_layers)?),
                    &cost,
                ),
                Mode::Dense(p) => PlanReport::new(
                    &shape.name,
                    &name,
                    &Plan::dense(&p.resolve(&groups, num_layers)?),
                    &cost,
                ),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let once = |mode: &Mode| -> anyhow::Result<Run> {
        let start = Instant::now();
        let (logits, setup_seconds) = match mode {
            Mode::Full => (answer::last_logits(&pkg, embeds.clone(), &rotary)?, 0.0),
            Mode::Pruned(p) => {
                let schedule = p.resolve(&groups, num_layers)?;
                let plan = Plan::compile(&schedule);
                let setup = start.elapsed().as_secs_f64();
                let out = engine::run_plan(&pkg, &schedule, &plan, embeds.view(), &rotary)?;
                (out.last_logits().to_owned(), setup)
            }
            Mode::Dense(p) => {
                let schedule = p.resolve(&groups, num_layers)?;
                let setup = start.elapsed().as_secs_f64();
                let out = engine::run_dense(&pkg, &schedule, embeds.view(), &rotary)?;
                (out.last_logits().to_owned(), setup)
            }
        };
        Ok(Run {
            seconds: start.elapsed().as_secs_f64(),
            setup_seconds,
            logits,
        })
    };

    let load_before = load_average();
    let mut timed: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for i in 0..args.warmup + args.runs {
        for (mode, runs) in modes.iter().zip(timed.iter_mut()) {
            let r = once(mode)?;
            if i >= args.warmup {
                runs.push(r);
            }
        }
        if !args.json {
            eprint!("\rround {}/{}", i + 1, args.warmup + args.runs);
        }
    }
    if !args.json {
        eprintln!();
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
                Mode::Pruned(p) => modes
                    .iter()
                    .position(|o| matches!(o, Mode::Dense(q) if q == p)),
                _ => None,
            };
            let measured = full_p50 / p50;
            let mut pairs: Vec<f64> = timed[0]
                .iter()
                .zip(runs)
                .map(|(f, r)| f.seconds / r.seconds)
                .collect();
            pairs.sort_by(f64::total_cmp);
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
                paired_speedup: percentile(&pairs, 0.5),
                paired_over_predicted: percentile(&pairs, 0.5) / report.predicted_speedup,
                measured_over_predicted: measured / report.predicted_speedup,
                argmax_token: argmax(logits),
                max_abs_diff_to_dense: dense_twin.map(|d| {
                    (logits - &timed[d][0].logits)
                        .iter()
                        .fold(0.0f32, |a, x| a.max(x.abs()))
                }),
            }
        })
        .collect();
    let report = BenchReport {
        model: m.name.clone(),
        seq_len: s,
        video_tokens: m.video.num_video_tokens(),
        num_layers,
        threads: opts.threads,
        runs: args.runs,
        warmup: args.warmup,
        vision_embed_ms,
        load_before,
        load_after,
        modes: results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn table(r: &BenchReport) -> String {
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
        if let Some(d) = m.max_abs_diff_to_dense {
            out += &format!(
                "{}: max |logit difference| to its dense run {d:.2e}\n",
                m.mode
            );
        }
    }
    out
}
