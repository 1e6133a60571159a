//! `vidflow knockout`: attention-knockout sweeps over a JSON sample list, with records, summary
//! and plots in an output folder that a later call resumes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use vidflow::data::load_for_command;
use vidflow::knockout::{
    collect_flows, load_flows_file, parse_targets, run_knockout, Execution, FlowsFile, LayerRange,
    RunSettings, SweepSettings, WindowStyle,
};
use vidflow::mask::MaskedRows;
use vidflow::package::Package;
use vidflow::prompt::PromptBuilder;
use vidflow::report::{parse_shard, write_knockout_reports, InputDigests};

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// tvbench:DIR, tomato:DIR, json:FILE or a .json sample list; each sample needs its answer.
    #[arg(long)]
    data: String,
    /// Named targets, comma-separated: cross-frame, vql-to-ql, question-and-options-to-last,
    /// vq-to-true-opt.
    #[arg(long)]
    targets: Option<String>,
    /// YAML file of custom flows and optional sweep settings (e.g. configs/knockout/*.yaml).
    #[arg(long)]
    flows: Option<PathBuf>,
    /// Window size k: layers blocked around each sweep layer [default: 9].
    #[arg(long)]
    window: Option<usize>,
    /// center, inverse, top_down or bottom_up [default: center].
    #[arg(long)]
    window_style: Option<String>,
    /// Sweep layers A-B (0-based, end exclusive, like the reference's --sweep_range) [default: all].
    #[arg(long)]
    layers: Option<String>,
    /// Also knock out samples the model answers wrongly (default: correct ones only).
    #[arg(long)]
    all_samples: bool,
    /// Run every knockout as a full forward from the embeddings (slow; for checking).
    #[arg(long)]
    naive: bool,
    /// Most knockouts batched into one forward (optimised mode).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Output folder; an existing run there is resumed.
    #[arg(long, default_value = "out/knockout")]
    out: PathBuf,
    /// Threads decoding videos ahead of the engine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Also write each sample's exact model inputs here (for the PyTorch reference).
    #[arg(long)]
    dump_inputs: Option<PathBuf>,
    /// What a row whose keys are all blocked attends to: uniform (over the whole row, as the
    /// published reference) or zero (no attention output)
    #[arg(long, default_value = "uniform")]
    masked_rows: MaskedRows,
    /// Run shard K of N of the samples (1-based), e.g. 2/4; join the shards with `vidflow merge`.
    #[arg(long)]
    shard: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pkg = Package::open(&args.model, &args.runtime.options()?)?;
    let builder = Arc::new(PromptBuilder::new(&pkg.manifest, pkg.dir())?);
    let num_layers = pkg.manifest.num_layers;
    let file = match &args.flows {
        Some(p) => load_flows_file(p)?,
        None => FlowsFile::default(),
    };
    let mut targets = file.targets.clone();
    if let Some(t) = &args.targets {
        for t in parse_targets(t)? {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    let flows = collect_flows(&targets, &file.flows, pkg.manifest.video.num_frames)?;
    let window = args.window.or(file.window).unwrap_or(9);
    anyhow::ensure!(window > 0, "--window must be at least 1");
    let style = match &args.window_style {
        Some(s) => s.parse::<WindowStyle>()?,
        None => file.window_style.unwrap_or(WindowStyle::Center),
    };
    let range = match &args.layers {
        Some(s) => s.parse::<LayerRange>()?,
        None => file.layers.unwrap_or(LayerRange::all(num_layers)),
    };
    let samples = load_for_command(&args.data)?;
    let settings = RunSettings {
        flows,
        sweep: SweepSettings {
            window,
            style,
            layers: range.layers(num_layers)?,
            all_samples: args.all_samples,
            execution: if args.naive {
                Execution::Naive
            } else {
                Execution::Optimised {
                    max_batch: args.batch.max(1),
                }
            },
            masked_rows: args.masked_rows,
        },
        out_dir: args.out.clone(),
        workers: args.workers.max(1),
        dump_inputs: args.dump_inputs.clone(),
        progress: !args.quiet,
        inputs: InputDigests::for_run(
            &args.model,
            &args.data.parse()?,
            &args
                .flows
                .iter()
                .map(|f| ("flows", f.as_path()))
                .collect::<Vec<_>>(),
        )?,
        shard: args.shard.as_deref().map(parse_shard).transpose()?,
    };
    let totals = run_knockout(&pkg, builder, samples, &settings)?;
    let reports = write_knockout_reports(&args.out)
        .with_context(|| format!("writing the reports of {}", args.out.display()))?;
    println!(
        "{} samples: {} knocked out, {} skipped (answered wrongly), {} failed; {} resumed from {}",
        totals.samples,
        totals.used,
        totals.skipped_wrong,
        totals.failed,
        totals.resumed,
        args.out.display()
    );
    if totals.retried > 0 {
        println!("retried {} samples that had failed before", totals.retried);
    }
    println!(
        "records  {}",
        args.out.join(vidflow::knockout::KNOCKOUTS_FILE).display()
    );
    println!("summary  {}", reports.summary.display());
    println!("samples  {}", reports.samples_summary.display());
    for p in &reports.plots {
        println!("plot     {}", p.display());
    }
    Ok(())
}
