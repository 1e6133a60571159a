//! `vidflow demo`: the whole method end to end on the embedded toy models (docs/toy.md).
//!
//! On a held-out synthetic set it evaluates the video model with full attention, runs the
//! knockout sweep of every reference target (and the cross-frame target on the image model, the
//! contrast), traces the layer-wise answer probability, discovers the effective pathways, evaluates
//! with only those open and with random blocking of the same number of edges, benchmarks full
//! against pruned prefill, and writes `report.md` with the plots and a summary table.
//!
//! Every step writes its own folder under the output folder and resumes from it (the eval and
//! knockout records are append-only), so an interrupted demo continues where it stopped; a folder
//! made with other settings is an error rather than silently reused.

mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::answer;
use crate::bench::{bench, BenchMode, BenchReport, BenchSettings};
use crate::data::{self, DataSpec, Dataset};
use crate::discover::{
    discover, discover_compute, measure, verify, ComputeDiscovery, ComputeSettings,
    DiscoverSettings, Discovery, Metric,
};
use crate::error::{Error, Result};
use crate::eval::{self, read_records, EvalMode, EvalSettings, Summary, RECORDS_FILE};
use crate::knockout::{
    collect_flows, run_knockout, Execution, NamedTarget, RunSettings, SweepSettings, WindowStyle,
};
use crate::lens::{run_lens, write_lens_reports, LensSettings};
use crate::mask::MaskedRows;
use crate::package::{Package, Projection};
use crate::pathway::{Pathways, RandomBlocking};
use crate::prompt::PromptBuilder;
use crate::report::{write_knockout_reports, FolderLock, InputDigests, KnockoutSummary};
use crate::runtime::RuntimeOptions;
use crate::synth::{self, Suite, SynthConfig};

pub use report::REPORT_FILE;

/// Everything the demo needs; the defaults are `make demo`'s (docs/demo.md).
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The video-tuned package (`models/toy-video`).
    pub video_model: PathBuf,
    /// The image-stage package (`models/toy-image`), the contrast; skipped when None.
    pub image_model: Option<PathBuf>,
    pub out: PathBuf,
    /// Seed of the held-out synthetic set (the toy models were trained on other seeds).
    pub seed: u64,
    /// Held-out samples per task for the evaluations.
    pub per_task: usize,
    /// Samples per task for the knockout sweeps and the lens (the first ones of each task).
    pub knockout_per_task: usize,
    /// Knockout window (layers blocked around each sweep layer).
    pub window: usize,
    /// Knock out every sample, not only those the video model answers correctly (the reference's
    /// choice, and the default).
    pub all_samples: bool,
    /// Discovery: layers per interval and the %change threshold.
    pub interval: usize,
    pub threshold: f64,
    /// Verify the discovery (`discover::verify`): the whole config run on the sweep's samples,
    /// intervals reopened while it costs more than the threshold.
    pub verify: bool,
    /// Seed of random blocking.
    pub random_seed: u64,
    /// Compute-aware discovery: the largest accuracy drop (points) a task may take on the
    /// validation set, and the layer grid of the cutoffs and exits.
    pub max_drop: f64,
    pub compute_step: usize,
    /// Timed benchmark runs per mode.
    pub bench_runs: usize,
    /// Video decoding threads.
    pub workers: usize,
    pub progress: bool,
    pub runtime: RuntimeOptions,
}

/// What the demo measured (also written as `summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub video_model: String,
    pub image_model: Option<String>,
    pub data: String,
    pub per_task: usize,
    pub knockout_per_task: usize,
    /// Whether the video model's sweep kept the samples it answers wrongly.
    pub knockout_all_samples: bool,
    pub eval_full: Summary,
    pub eval_image: Option<Summary>,
    pub eval_pathways: Summary,
    pub eval_random: Summary,
    /// Share of each layer's blocked causal edges in the random run (matched to the pathways).
    pub random_ratio: f64,
    /// Mean share of causal edges (all layers) kept open by the pathways and by random blocking.
    pub pathways_edge_share: f64,
    pub random_edge_share: f64,
    pub pathways_file: String,
    pub discovery: Vec<crate::discover::FlowFinding>,
    /// The worst task's mean %change of the predicted answer's probability under the verified
    /// config, on the knocked-out samples (None when not verified).
    pub discovery_verified_pct_change: Option<f64>,
    /// Per sweep layer: mean %change of the true answer's probability when cross-frame attention
    /// is blocked, on the video model and on the image model.
    pub cross_frame_video: Vec<LayerChange>,
    pub cross_frame_image: Vec<LayerChange>,
    pub bench: BenchReport,
    /// Compute-aware discovery on the validation set (`compute.frontier.json` holds it too).
    pub compute: ComputeDiscovery,
    pub compute_file: String,
    /// The chosen compute-aware config and the fastest passing early exit on the held-out set.
    pub eval_compute: Summary,
    pub exit_layer: Option<usize>,
    pub eval_exit: Option<Summary>,
    /// Rows of the frontier table, in the report's order.
    pub frontier: Vec<FrontierRow>,
}

/// One row of the speed/accuracy frontier on the held-out set.
#[derive(Debug, Clone, Serialize)]
pub struct FrontierRow {
    pub run: String,
    /// Held-out accuracy; None where it is full attention's by construction (prefix reuse).
    pub accuracy: Option<f64>,
    /// Largest per-task drop (points) against full attention on the held-out set.
    pub worst_drop_points: Option<f64>,
    /// Mean share of causal edges open, and share of the full run's rows computed.
    pub edge_share: f64,
    pub row_share: f64,
    pub predicted_speedup: f64,
    pub paired_speedup: f64,
}

/// One layer of a knockout curve.
#[derive(Debug, Clone, Serialize)]
pub struct LayerChange {
    /// 1-based, as the plots.
    pub layer: usize,
    pub samples: usize,
    pub mean_pct_change_true: f64,
}

/// Output locations, one folder per step.
struct Layout {
    data: PathBuf,
    eval_full: PathBuf,
    eval_image: PathBuf,
    eval_pathways: PathBuf,
    eval_random: PathBuf,
    knockout_video: PathBuf,
    knockout_image: PathBuf,
    lens: PathBuf,
    pathways: PathBuf,
    validation: PathBuf,
    eval_compute: PathBuf,
    eval_exit: PathBuf,
    compute: PathBuf,
}

impl Layout {
    fn new(out: &Path) -> Layout {
        Layout {
            data: out.join("data"),
            eval_full: out.join("eval/video-full"),
            eval_image: out.join("eval/image-full"),
            eval_pathways: out.join("eval/video-pathways"),
            eval_random: out.join("eval/video-random"),
            knockout_video: out.join("knockout/video"),
            knockout_image: out.join("knockout/image-cross-frame"),
            lens: out.join("lens"),
            pathways: out.join("pathways.yaml"),
            validation: out.join("data-validation"),
            eval_compute: out.join("eval/video-compute"),
            eval_exit: out.join("eval/video-exit"),
            compute: out.join("compute.yaml"),
        }
    }
}

/// Runs the demo; `log` receives one line per step.
pub fn run_demo(s: &DemoSettings, mut log: impl FnMut(&str)) -> Result<(DemoSummary, PathBuf)> {
    if s.per_task == 0 || s.knockout_per_task == 0 {
        return Err(Error::Input(
            "--per-task and --knockout-per-task must be at least 1".into(),
        ));
    }
    // The settings later steps would refuse, refused before the evaluations that come first.
    if s.window == 0 {
        return Err(Error::Input("--window must be at least 1".into()));
    }
    if s.interval == 0 {
        return Err(Error::Input("--interval must be at least 1".into()));
    }
    if !s.threshold.is_finite() {
        return Err(Error::Input(format!(
            "--threshold {}: expected a finite percentage change (e.g. -5 for a 5% drop)",
            s.threshold
        )));
    }
    let compute_settings = ComputeSettings {
        max_drop: s.max_drop,
        step: s.compute_step,
    };
    compute_settings.validate("--compute-step")?;
    if s.bench_runs == 0 {
        return Err(Error::Input("--bench-runs must be at least 1".into()));
    }
    let dirs = Layout::new(&s.out);
    let _lock = FolderLock::acquire(&s.out)?;
    let video = Package::open(&s.video_model, &s.runtime)?;
    let image = s
        .image_model
        .as_ref()
        .map(|p| Package::open(p, &s.runtime))
        .transpose()?;
    let frames = video.manifest.video.num_frames;
    if let Some(img) = &image {
        if img.manifest.video.num_frames != frames {
            return Err(Error::Input(format!(
                "{}: {} frames per video, but {} has {frames}; the demo compares them on the same inputs",
                img.dir().display(),
                img.manifest.video.num_frames,
                video.dir().display()
            )));
        }
    }

    log(&format!(
        "held-out set: {} samples per task, seed {} -> {}",
        s.per_task,
        s.seed,
        dirs.data.display()
    ));
    ensure_synth(&dirs.data, s.seed, s.per_task)?;
    let spec = DataSpec::Tvbench(dirs.data.clone());
    let dataset = load_generated(&spec, &dirs.data)?;
    let subset = data::first_per_task(&dataset.samples, s.knockout_per_task);

    let eval_with = |pkg: &Package, mode_arg: &str, mode: &EvalMode, out: &Path| {
        let exit_layer = match mode {
            EvalMode::Full { exit_layer } => *exit_layer,
            EvalMode::Pathways(_) => None,
        };
        let settings = EvalSettings {
            model: pkg.manifest.name.clone(),
            model_dir: pkg.dir().display().to_string(),
            data: spec.to_string(),
            tasks: None,
            frames,
            mode: mode_arg.to_string(),
            exit_layer,
            seed: s.random_seed,
            limit: None,
            shard: None,
            inputs: EvalSettings::digest_inputs(pkg.dir(), mode_arg, &spec)?,
            missing_shards: Vec::new(),
        };
        eval::run_eval(
            pkg,
            &settings,
            mode,
            clone_dataset(&dataset),
            out,
            s.workers,
            s.progress,
        )
    };

    log("evaluating the video model with full attention");
    let eval_full = eval_with(
        &video,
        "full",
        &EvalMode::Full { exit_layer: None },
        &dirs.eval_full,
    )?;
    let eval_image = match &image {
        Some(img) => {
            log("evaluating the image model with full attention");
            Some(eval_with(
                img,
                "full",
                &EvalMode::Full { exit_layer: None },
                &dirs.eval_image,
            )?)
        }
        None => None,
    };

    let num_layers = video.manifest.num_layers;
    let sweep = |all_samples: bool| SweepSettings {
        window: s.window,
        style: WindowStyle::Center,
        layers: (0..num_layers).collect(),
        all_samples,
        execution: Execution::Optimised { max_batch: 8 },
        masked_rows: MaskedRows::Uniform,
    };
    log(&format!(
        "knockout sweep, all reference targets, window {}: {} samples",
        s.window,
        subset.len()
    ));
    let flows = collect_flows(&NamedTarget::ALL, &[], frames)?;
    let builder = Arc::new(PromptBuilder::new(&video.manifest, video.dir())?);
    run_knockout(
        &video,
        builder.clone(),
        subset.clone(),
        &RunSettings {
            flows,
            sweep: sweep(s.all_samples),
            out_dir: dirs.knockout_video.clone(),
            workers: s.workers,
            dump_inputs: None,
            progress: s.progress,
            inputs: InputDigests::for_run(video.dir(), &spec, &[])?,
            shard: None,
        },
    )?;
    let video_reports = write_knockout_reports(&dirs.knockout_video)?;

    let image_reports = match &image {
        Some(img) => {
            log("knockout sweep of the image model, cross-frame target, every sample");
            let b = Arc::new(PromptBuilder::new(&img.manifest, img.dir())?);
            run_knockout(
                img,
                b,
                subset.clone(),
                &RunSettings {
                    flows: collect_flows(&[NamedTarget::CrossFrame], &[], frames)?,
                    sweep: sweep(true),
                    out_dir: dirs.knockout_image.clone(),
                    workers: s.workers,
                    dump_inputs: None,
                    progress: s.progress,
                    inputs: InputDigests::for_run(img.dir(), &spec, &[])?,
                    shard: None,
                },
            )?;
            Some(write_knockout_reports(&dirs.knockout_image)?)
        }
        None => None,
    };

    log("layer-wise answer probability (logit lens at the last position)");
    std::fs::create_dir_all(&dirs.lens).map_err(|e| Error::io(&dirs.lens, e))?;
    let lens_records = run_lens(
        &video,
        builder.clone(),
        subset.clone(),
        &LensSettings {
            projection: Projection::NormHead,
            keywords: None,
            all_samples: s.all_samples,
            out_dir: dirs.lens.clone(),
            workers: s.workers,
            progress: s.progress,
            inputs: InputDigests::for_run(video.dir(), &spec, &[])?,
            shard: None,
        },
    )?;
    let lens_files = write_lens_reports(
        &dirs.lens,
        &lens_records,
        &[],
        &format!("{}, norm+head", video.manifest.name),
        num_layers,
    )?;

    log(&format!(
        "discovering the effective pathways (interval {}, threshold {}%)",
        s.interval, s.threshold
    ));
    let discover_settings = DiscoverSettings {
        interval: s.interval,
        threshold: s.threshold,
        metric: Metric::Pred,
    };
    let mut discovery = discover(&dirs.knockout_video, discover_settings)?;
    if s.verify {
        log("verifying: the whole config on the knocked-out samples");
        let inputs = subset
            .iter()
            .map(|smp| {
                answer::prepare(&builder, &video.manifest.video, smp)
                    .map(|inp| (data::task_of(smp), inp))
            })
            .collect::<Result<Vec<_>>>()?;
        verify(
            &video,
            &inputs,
            s.all_samples,
            &mut discovery,
            discover_settings,
        )?;
    }
    write_pathways(&discovery, &dirs.pathways, s)?;
    let pathways = Pathways::parse(&dirs.pathways.display().to_string())?;

    log("evaluating with only the effective pathways open");
    let mode_arg = format!("pathways:{}", dirs.pathways.display());
    let eval_pathways = eval_with(
        &video,
        &mode_arg,
        &EvalMode::Pathways(pathways.clone()),
        &dirs.eval_pathways,
    )?;
    let first_video = builder
        .layout(&subset[0].question, &as_strs(&subset[0].options), None)?
        .first_video();
    let random_ratio = matched_random_ratio(&dirs.eval_pathways, num_layers, first_video)?;
    log(&format!(
        "evaluating with random blocking of as many edges (ratio {random_ratio:.4})"
    ));
    let random = Pathways::Random(RandomBlocking::new(random_ratio, s.random_seed)?);
    let eval_random = eval_with(
        &video,
        &random.describe(),
        &EvalMode::Pathways(random),
        &dirs.eval_random,
    )?;

    log(&format!(
        "compute-aware discovery: cutoffs and exits searched on a validation set ({} per task, \
         seed {}), no task more than {} points below full attention",
        s.knockout_per_task,
        s.seed + 1,
        s.max_drop
    ));
    ensure_synth(&dirs.validation, s.seed + 1, s.knockout_per_task)?;
    let val_spec = DataSpec::Tvbench(dirs.validation.clone());
    let val_inputs = load_generated(&val_spec, &dirs.validation)?
        .samples
        .iter()
        .map(|smp| {
            answer::prepare(&builder, &video.manifest.video, smp)
                .map(|inp| (data::task_of(smp), inp))
        })
        .collect::<Result<Vec<_>>>()?;
    let frontier_json = s.out.join("compute.frontier.json");
    // A finished search (measured frontier included) is read back rather than run again.
    let resumed = match frontier_json.exists() {
        true => {
            let d = ComputeDiscovery::read(&frontier_json, num_layers)?;
            let same = d.model == video.manifest.name
                && d.samples == val_inputs.len()
                && d.max_drop == s.max_drop
                && d.step == s.compute_step;
            if !same {
                return Err(Error::Data {
                    path: frontier_json,
                    msg: format!(
                        "holds a search with other settings (model {}, {} samples, max drop {}, \
                         step {}); expected {}, {}, {}, {}: use another --out",
                        d.model,
                        d.samples,
                        d.max_drop,
                        d.step,
                        video.manifest.name,
                        val_inputs.len(),
                        s.max_drop,
                        s.compute_step
                    ),
                });
            }
            Some(d)
        }
        false => None,
    };
    let is_resumed = resumed.is_some();
    let mut compute = match resumed {
        Some(d) => d,
        None => discover_compute(&video, &val_inputs, None, compute_settings, |_, _| {})?,
    };
    // The base candidate (full attention) drops nothing, so some candidate always passes.
    let chosen = compute.chosen.expect("full attention passes");
    let chosen_yaml = compute.candidates[chosen].yaml.clone();
    std::fs::write(&dirs.compute, &chosen_yaml).map_err(|e| Error::io(&dirs.compute, e))?;
    let compute_pathways = Pathways::parse(&dirs.compute.display().to_string())?;
    log(&format!(
        "evaluating the chosen compute-aware config ({})",
        compute.candidates[chosen].name
    ));
    let eval_compute = eval_with(
        &video,
        &format!("pathways:{}", dirs.compute.display()),
        &EvalMode::Pathways(compute_pathways.clone()),
        &dirs.eval_compute,
    )?;
    let exit_layer = compute
        .best_exit_only()
        .and_then(|i| compute.candidates[i].exit_layer);
    let eval_exit = match exit_layer {
        Some(k) => {
            log(&format!("evaluating the early exit after layer {k}"));
            Some(eval_with(
                &video,
                "full",
                &EvalMode::Full {
                    exit_layer: Some(k),
                },
                &dirs.eval_exit,
            )?)
        }
        None => None,
    };

    log(&format!(
        "benchmarking full vs pruned prefill ({} runs)",
        s.bench_runs
    ));
    let inputs = answer::prepare(&builder, &video.manifest.video, &subset[0])?;
    let bench_settings = BenchSettings {
        runs: s.bench_runs,
        warmup: 1,
    };
    let mut modes = vec![
        BenchMode::Pruned(pathways),
        BenchMode::Pruned(compute_pathways.clone()),
    ];
    if let Some(k) = exit_layer {
        modes.push(BenchMode::Exit(k));
    }
    modes.push(BenchMode::Cached(Box::new(BenchMode::Full)));
    modes.push(BenchMode::Cached(Box::new(BenchMode::Pruned(
        compute_pathways,
    ))));
    let bench_report = bench(
        &video,
        &inputs,
        &modes,
        bench_settings,
        s.runtime.threads,
        |_, _| {},
    )?;
    if !is_resumed {
        let mut measured = compute.frontier();
        if !measured.contains(&chosen) {
            measured.push(chosen);
        }
        measure(
            &video,
            &val_inputs[0].1,
            &mut compute,
            &measured,
            bench_settings,
            s.runtime.threads,
        )?;
        let text = serde_json::to_string_pretty(&compute)
            .map_err(|e| Error::Input(format!("serialising the frontier: {e}")))?;
        // Written whole, then renamed: a torn file is never read back as a finished search.
        let part = frontier_json.with_extension("json.part");
        std::fs::write(&part, text + "\n").map_err(|e| Error::io(&part, e))?;
        std::fs::rename(&part, &frontier_json).map_err(|e| Error::io(&frontier_json, e))?;
    }
    let frontier = frontier_rows(
        &bench_report,
        &eval_full,
        &eval_pathways,
        (&compute.candidates[chosen].name, &eval_compute),
        exit_layer.zip(eval_exit.as_ref()),
    );

    let summary = DemoSummary {
        video_model: video.manifest.name.clone(),
        image_model: image.as_ref().map(|p| p.manifest.name.clone()),
        data: spec.to_string(),
        per_task: s.per_task,
        knockout_per_task: s.knockout_per_task,
        knockout_all_samples: s.all_samples,
        pathways_edge_share: eval_pathways.overall.mean_edge_share,
        random_edge_share: eval_random.overall.mean_edge_share,
        eval_full,
        eval_image,
        eval_pathways,
        eval_random,
        random_ratio,
        pathways_file: relative(&dirs.pathways, &s.out),
        discovery: discovery.findings.clone(),
        discovery_verified_pct_change: discovery.verified_pct_change,
        cross_frame_video: cross_frame_curve(&video_reports.summary_data),
        cross_frame_image: image_reports
            .as_ref()
            .map(|r| cross_frame_curve(&r.summary_data))
            .unwrap_or_default(),
        bench: bench_report,
        compute_file: relative(&dirs.compute, &s.out),
        compute,
        eval_compute,
        exit_layer,
        eval_exit,
        frontier,
    };
    let json = s.out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Input(format!("serialising the demo summary: {e}")))?;
    std::fs::write(&json, text + "\n").map_err(|e| Error::io(&json, e))?;
    let mut plots: Vec<PathBuf> = video_reports.plots.clone();
    if let Some(r) = &image_reports {
        plots.extend(r.plots.iter().cloned());
    }
    plots.extend(lens_files);
    let path = report::write_report(&s.out, &summary, &plots)?;
    Ok((summary, path))
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A generated set, every record of which must be valid.
fn load_generated(spec: &DataSpec, dir: &Path) -> Result<Dataset> {
    let dataset = data::load(spec, None)?;
    if let Some(b) = dataset.bad.first() {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            msg: format!(
                "{} records of the generated set are invalid, e.g. {}: {}",
                dataset.bad.len(),
                b.id,
                b.reason
            ),
        });
    }
    Ok(dataset)
}

/// Largest per-task accuracy drop (points) of `run` against `full`.
fn worst_drop(full: &Summary, run: &Summary) -> f64 {
    full.tasks
        .iter()
        .map(|(task, f)| {
            let r = run.tasks.get(task).map_or(0.0, |t| t.accuracy);
            100.0 * (f.accuracy - r)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The frontier table from the benchmark (modes in the order `run_demo` built them: full,
/// pathways, compute, exit when found, cached full, cached compute) and the held-out evaluations.
fn frontier_rows(
    bench: &BenchReport,
    full: &Summary,
    pathways: &Summary,
    compute: (&str, &Summary),
    exit: Option<(usize, &Summary)>,
) -> Vec<FrontierRow> {
    let m = &bench.modes;
    let full_rows = m[0].rows_computed as f64;
    let row = |run: String, eval: Option<&Summary>, i: usize, edges: f64| FrontierRow {
        run,
        accuracy: eval.map(|e| e.overall.accuracy),
        worst_drop_points: eval.map(|e| worst_drop(full, e)),
        edge_share: edges,
        row_share: m[i].rows_computed as f64 / full_rows,
        predicted_speedup: m[i].predicted_speedup,
        paired_speedup: m[i].paired_speedup,
    };
    let edges = |e: &Summary| e.overall.mean_edge_share;
    let mut rows = vec![
        row("full attention".into(), Some(full), 0, 1.0),
        row(
            "effective pathways (published-style discovery)".into(),
            Some(pathways),
            1,
            edges(pathways),
        ),
        row(
            format!("compute-aware: {}", compute.0),
            Some(compute.1),
            2,
            edges(compute.1),
        ),
    ];
    let mut next = 3;
    if let Some((k, e)) = exit {
        rows.push(row(
            format!("early exit after layer {k}"),
            Some(e),
            3,
            edges(e),
        ));
        next = 4;
    }
    rows.push(row(
        "prefix reuse: another question on a cached video".into(),
        None,
        next,
        1.0,
    ));
    rows.push(row(
        format!("compute-aware {} + prefix reuse", compute.0),
        Some(compute.1),
        next + 1,
        edges(compute.1),
    ));
    rows
}

fn clone_dataset(d: &Dataset) -> Dataset {
    Dataset {
        samples: d.samples.clone(),
        bad: d.bad.clone(),
    }
}

/// Generates the held-out set, or checks that the folder holds the one these settings make.
fn ensure_synth(dir: &Path, seed: u64, per_task: usize) -> Result<()> {
    let manifest = dir.join("synth.json");
    // The synth defaults (64x64, 16 frames at 8 fps) are what the toy models were trained on.
    let cfg = SynthConfig {
        seed,
        per_task,
        suite: Suite::Temporal,
        ..SynthConfig::default()
    };
    if manifest.exists() {
        let text = std::fs::read_to_string(&manifest).map_err(|e| Error::io(&manifest, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Data {
            path: manifest.clone(),
            msg: e.to_string(),
        })?;
        let c = &v["config"];
        let same = c["seed"].as_u64() == Some(seed)
            && c["per_task"].as_u64() == Some(per_task as u64)
            && c["suite"].as_str() == Some("temporal");
        if !same {
            return Err(Error::Data {
                path: manifest,
                msg: format!(
                    "holds a set made with other settings (config {c}); expected seed {seed}, \
                     {per_task} per task, temporal suite: use another --out"
                ),
            });
        }
        return Ok(());
    }
    if dir.join("json").exists() {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            msg: "holds an incomplete synthetic set (no synth.json): delete it to regenerate"
                .into(),
        });
    }
    synth::generate(dir, &cfg, |_, _| {})?;
    Ok(())
}

fn write_pathways(d: &Discovery, path: &Path, s: &DemoSettings) -> Result<()> {
    let description = format!(
        "vidflow demo: discovered from knockout/video, interval {}, threshold {}%, metric pred{}",
        s.interval,
        s.threshold,
        if s.verify {
            ", verified (the whole config on the knocked-out samples)"
        } else {
            ""
        }
    );
    std::fs::write(path, d.to_yaml("demo-discovered", &description)).map_err(|e| Error::io(path, e))
}

/// The random-blocking ratio that blocks, over the whole evaluation, as many edges as the
/// pathway run did: random blocking draws only from edges at or after the first video token.
fn matched_random_ratio(pathway_run: &Path, num_layers: usize, first_video: usize) -> Result<f64> {
    let path = pathway_run.join(RECORDS_FILE);
    let records = read_records(&path)?;
    let (mut blocked, mut eligible) = (0u64, 0u64);
    for r in records.iter().filter(|r| r.scored) {
        let (Some(open), Some(total)) = (r.edges_open, r.edges_total) else {
            continue;
        };
        let per_layer = total / num_layers as u64;
        // total = L * S (S + 1) / 2.
        let s = ((((8 * per_layer + 1) as f64).sqrt() - 1.0) / 2.0).round() as usize;
        if (s * (s + 1) / 2) as u64 != per_layer {
            return Err(Error::Data {
                path: path.clone(),
                msg: format!(
                    "{}: edges_total {total} is not {num_layers} causal masks",
                    r.id
                ),
            });
        }
        blocked += total - open;
        eligible += num_layers as u64 * RandomBlocking::eligible_edges(s, first_video) as u64;
    }
    if eligible == 0 {
        return Err(Error::Data {
            path,
            msg: "no scored sample with edge counts".into(),
        });
    }
    Ok((blocked as f64 / eligible as f64).min(1.0))
}

fn cross_frame_curve(summary: &KnockoutSummary) -> Vec<LayerChange> {
    summary
        .rows
        .iter()
        .filter(|r| r.task == crate::report::ALL_TASKS && r.target == "cross-frame")
        .map(|r| LayerChange {
            layer: r.layer + 1,
            samples: r.truth.n,
            mean_pct_change_true: r.truth.mean,
        })
        .collect()
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
