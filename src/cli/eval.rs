//! `vidflow eval` and `vidflow merge`.

use std::path::PathBuf;

use vidflow::cluster::{self, MergeOutcome};
use vidflow::data::{self, DataSpec};
use vidflow::eval::{self, EvalMode, EvalSettings, Summary};
use vidflow::package::Package;

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// tvbench:DIR, tomato:DIR or json:FILE.
    #[arg(long)]
    data: String,
    /// Only these tasks (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Frames per video (default: the package's).
    #[arg(long)]
    frames: Option<usize>,
    /// full, pathways:FILE or random:RATIO.
    #[arg(long, default_value = "full")]
    mode: String,
    /// Map a pathway config written for another layer count onto the model's layers.
    #[arg(long)]
    scale: bool,
    /// Read the answer after layer K (1-based; final norm + head at the last position) and run
    /// no later layer; combines with a pathway config.
    #[arg(long)]
    exit_layer: Option<usize>,
    /// Seed of random blocking.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first N samples (before sharding).
    #[arg(long)]
    limit: Option<usize>,
    /// Run shard K of N (1-based), e.g. 2/4.
    #[arg(long)]
    shard: Option<String>,
    /// Output folder (records.jsonl, summary.json/csv, settings.json); an interrupted run resumes.
    #[arg(long)]
    out: PathBuf,
    /// Threads decoding videos ahead of the engine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Folder for the merged run.
    #[arg(long)]
    out: PathBuf,
    /// Output folders of the shards (of an eval, knockout, lens or attention run).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Merge even though some shards of the run are missing (recorded in the merged settings.json).
    #[arg(long)]
    partial: bool,
}

pub fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let pkg = Package::open(&a.model, &a.runtime.options()?)?;
    let spec: DataSpec = a.data.parse()?;
    let mode = EvalMode::parse(&a.mode, a.seed, pkg.num_layers(), a.scale, a.exit_layer)?;
    anyhow::ensure!(
        a.frames != Some(0),
        "--frames 0: expected at least 1 frame per video"
    );
    let settings = EvalSettings {
        model: pkg.manifest.name.clone(),
        model_dir: a.model.display().to_string(),
        data: spec.to_string(),
        tasks: a.tasks.clone(),
        frames: a.frames.unwrap_or(pkg.manifest.video.num_frames),
        mode: if a.scale {
            format!("{} (scaled)", a.mode)
        } else {
            a.mode.clone()
        },
        exit_layer: a.exit_layer,
        seed: a.seed,
        limit: a.limit,
        shard: a.shard.as_deref().map(eval::parse_shard).transpose()?,
        inputs: EvalSettings::digest_inputs(&a.model, &a.mode, &spec)?,
        missing_shards: Vec::new(),
    };
    let dataset = data::load(&spec, a.tasks.as_deref())?;
    let summary = eval::run_eval(&pkg, &settings, &mode, dataset, &a.out, a.workers, !a.quiet)?;
    print_summary(&summary);
    println!("records and summary in {}", a.out.display());
    Ok(())
}

pub fn run_merge(a: MergeArgs) -> anyhow::Result<()> {
    let dirs: Vec<&std::path::Path> = a.shards.iter().map(PathBuf::as_path).collect();
    match cluster::merge(&dirs, &a.out, a.partial)? {
        MergeOutcome::Eval(summary) => print_summary(&summary),
        MergeOutcome::Knockout { samples, reports } => {
            println!("{samples} samples");
            println!("summary  {}", reports.summary.display());
        }
        MergeOutcome::Lens { files } | MergeOutcome::Attention { files } => {
            println!("{} files written", files.len());
        }
    }
    println!("merged {} shards into {}", dirs.len(), a.out.display());
    Ok(())
}

fn print_summary(s: &Summary) {
    println!(
        "{:<28} {:>7} {:>8} {:>9} {:>12}",
        "task", "scored", "correct", "accuracy", "edges kept"
    );
    let row = |name: &str, t: &eval::Tally| {
        println!(
            "{:<28} {:>7} {:>8} {:>8.1}% {:>11.1}%",
            name,
            t.scored,
            t.correct,
            100.0 * t.accuracy,
            100.0 * t.mean_edge_share
        )
    };
    for (task, t) in &s.tasks {
        row(task, t);
    }
    row("overall", &s.overall);
    if s.retried > 0 {
        println!("retried {} samples that had failed before", s.retried);
    }
    if !s.not_scored.is_empty() {
        println!("not scored ({}):", s.not_scored.len());
        for b in &s.not_scored {
            println!("  {} [{}]: {}", b.id, b.task, b.reason);
        }
    }
}
