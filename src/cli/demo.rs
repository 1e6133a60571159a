//! `vidflow demo`: the whole method on the embedded toy models, ending in `out/demo/report.md`.

use std::path::PathBuf;

use vidflow::demo::{run_demo, DemoSettings};

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The video-tuned model package.
    #[arg(long, default_value = "models/toy-video")]
    model: PathBuf,
    /// The image-stage package, the cross-frame contrast.
    #[arg(long, default_value = "models/toy-image")]
    image_model: PathBuf,
    /// Leave the image-stage model out.
    #[arg(long)]
    no_image_model: bool,
    /// Output folder (report.md, summary.json and one folder per step); a rerun resumes.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Seed of the held-out synthetic set.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Held-out samples per task for the evaluations.
    #[arg(long, default_value_t = 100)]
    per_task: usize,
    /// Samples per task for the knockout sweeps and the lens.
    #[arg(long, default_value_t = 20)]
    knockout_per_task: usize,
    /// Knockout window: layers blocked around each sweep layer.
    #[arg(long, default_value_t = 3)]
    window: usize,
    /// Knock out (and trace) every sample, not only those the video model answers correctly.
    #[arg(long)]
    knockout_all_samples: bool,
    /// Discovery: layers per interval.
    #[arg(long, default_value_t = 2)]
    interval: usize,
    /// Discovery: skip the verification that runs the whole config on the knocked-out samples
    /// and reopens intervals while it costs more than the threshold (the published procedure)
    #[arg(long)]
    no_verify: bool,
    /// Discovery: intervals whose mean %change is below this stay open.
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    threshold: f64,
    /// Seed of the random-blocking control.
    #[arg(long, default_value_t = 0)]
    random_seed: u64,
    /// Compute-aware discovery: the largest accuracy drop (points) a task may take against full
    /// attention on the validation set.
    #[arg(long, default_value_t = 2.0)]
    max_drop: f64,
    /// Compute-aware discovery: cutoffs and exits on every STEP-th layer (and the last).
    #[arg(long, default_value_t = 1)]
    compute_step: usize,
    /// Timed benchmark runs per mode.
    #[arg(long, default_value_t = 20)]
    bench_runs: usize,
    /// Threads decoding videos ahead of the engine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let settings = DemoSettings {
        video_model: a.model,
        image_model: (!a.no_image_model).then_some(a.image_model),
        out: a.out,
        seed: a.seed,
        per_task: a.per_task,
        knockout_per_task: a.knockout_per_task,
        window: a.window,
        all_samples: a.knockout_all_samples,
        interval: a.interval,
        threshold: a.threshold,
        verify: !a.no_verify,
        random_seed: a.random_seed,
        max_drop: a.max_drop,
        compute_step: a.compute_step,
        bench_runs: a.bench_runs,
        workers: a.workers.max(1),
        progress: !a.quiet,
        runtime: a.runtime.options()?,
    };
    let (summary, report) = run_demo(&settings, |line| eprintln!("[demo] {line}"))?;
    println!(
        "accuracy: full {:.1}%, effective pathways {:.1}% ({:.1}% of edges), random blocking {:.1}%",
        100.0 * summary.eval_full.overall.accuracy,
        100.0 * summary.eval_pathways.overall.accuracy,
        100.0 * summary.pathways_edge_share,
        100.0 * summary.eval_random.overall.accuracy
    );
    println!("report written to {}", report.display());
    Ok(())
}
