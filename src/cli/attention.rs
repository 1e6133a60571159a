//! `vidflow attention`: head-averaged attention of a token group over the video tokens, per layer,
//! as heatmap grids over frames; baseline next to a knockout of one flow.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use vidflow::attention::{run_attention, AttentionSettings, ATTENTION_FILE};
use vidflow::data::load_for_command;
use vidflow::knockout::{
    check_group_name, collect_flows, load_flows_file, parse_targets, FlowsFile, LayerRange,
};
use vidflow::package::Package;
use vidflow::prompt::PromptBuilder;
use vidflow::report::{parse_shard, InputDigests};

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// tvbench:DIR, tomato:DIR, json:FILE or a .json sample list.
    #[arg(long)]
    data: String,
    /// Only this sample (by id).
    #[arg(long)]
    sample: Option<String>,
    /// Token group whose rows are the queries (averaged): last, question, option.true, …
    #[arg(long, default_value = "last")]
    query: String,
    /// Layers to show, A-B (0-based, end exclusive) [default: all].
    #[arg(long)]
    layers: Option<String>,
    /// Named targets offering flows for --flow (comma-separated).
    #[arg(long)]
    targets: Option<String>,
    /// YAML file of custom flows offering flows for --flow.
    #[arg(long)]
    flows: Option<PathBuf>,
    /// The flow to knock out (its name, e.g. "video ↛ last"); shown next to the baseline.
    #[arg(long)]
    flow: Option<String>,
    /// Layers where the flow is blocked, A-B (0-based, end exclusive) [default: all].
    #[arg(long)]
    block_layers: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/attention")]
    out: PathBuf,
    /// Threads decoding videos ahead of the engine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
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
    check_group_name(&args.query)?;
    let layer_range = |s: &Option<String>| -> anyhow::Result<Vec<usize>> {
        let r = match s {
            Some(s) => s.parse::<LayerRange>()?,
            None => LayerRange::all(num_layers),
        };
        Ok(r.layers(num_layers)?)
    };
    let layers = layer_range(&args.layers)?;
    let knockout = match &args.flow {
        None => None,
        Some(name) => {
            let file = match &args.flows {
                Some(p) => load_flows_file(p)?,
                None => FlowsFile::default(),
            };
            let mut targets = file.targets.clone();
            if let Some(t) = &args.targets {
                targets.extend(parse_targets(t)?);
            }
            let flows = collect_flows(&targets, &file.flows, pkg.manifest.video.num_frames)
                .context("--flow needs --targets or --flows that define it")?;
            let flow = flows
                .iter()
                .find(|f| &f.name == name)
                .cloned()
                .with_context(|| {
                    let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
                    format!(
                        "--flow {name:?} is not among the flows: {}",
                        names.join(", ")
                    )
                })?;
            Some((flow, layer_range(&args.block_layers)?))
        }
    };
    let mut samples = load_for_command(&args.data)?;
    if let Some(id) = &args.sample {
        samples.retain(|s| &s.id == id);
        anyhow::ensure!(
            !samples.is_empty(),
            "no sample with id {id:?} in {}",
            args.data
        );
    }
    let settings = AttentionSettings {
        query: args.query.clone(),
        layers,
        knockout,
        out_dir: args.out.clone(),
        workers: args.workers.max(1),
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
    let files = run_attention(&pkg, builder, samples, &settings)?;
    println!("records  {}", args.out.join(ATTENTION_FILE).display());
    for f in files {
        println!("heatmap  {}", f.display());
    }
    Ok(())
}
