//! `vidflow lens`: layer-wise option probabilities and logit-lens concept counts over a sample list.

use std::path::PathBuf;
use std::sync::Arc;

use vidflow::data::load_for_command;
use vidflow::lens::{load_keywords, run_lens, write_lens_reports, LensSettings, LENS_FILE};
use vidflow::package::{Package, Projection};
use vidflow::prompt::PromptBuilder;
use vidflow::report::{parse_shard, select_shard, InputDigests};

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// tvbench:DIR, tomato:DIR, json:FILE or a .json sample list; each sample needs its answer.
    #[arg(long)]
    data: String,
    /// How hidden states become logits: norm+head (the model's own), head, or embed (the
    /// published reference's input-embedding lens).
    #[arg(long, default_value = "norm+head")]
    projection: String,
    /// Keyword list (configs/keywords/*.yaml): count video tokens whose top-1 token is a keyword.
    #[arg(long)]
    keywords: Option<PathBuf>,
    /// Also samples the model answers wrongly (default: correct ones only).
    #[arg(long)]
    all_samples: bool,
    /// Output folder (its lens files are rewritten).
    #[arg(long, default_value = "out/lens")]
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
    let keywords = args.keywords.as_deref().map(load_keywords).transpose()?;
    let categories = keywords
        .as_ref()
        .map(|k| k.category_names())
        .unwrap_or_default();
    let settings = LensSettings {
        projection: args.projection.parse::<Projection>()?,
        keywords,
        all_samples: args.all_samples,
        out_dir: args.out.clone(),
        workers: args.workers.max(1),
        progress: !args.quiet,
        inputs: InputDigests::for_run(
            &args.model,
            &args.data.parse()?,
            &args
                .keywords
                .iter()
                .map(|f| ("keywords", f.as_path()))
                .collect::<Vec<_>>(),
        )?,
        shard: args.shard.as_deref().map(parse_shard).transpose()?,
    };
    let samples = load_for_command(&args.data)?;
    let n = select_shard(samples.clone(), settings.shard).len();
    let records = run_lens(&pkg, builder, samples, &settings)?;
    let title = format!("{}, {}", pkg.manifest.name, args.projection);
    let files = write_lens_reports(
        &args.out,
        &records,
        &categories,
        &title,
        pkg.manifest.num_layers,
    )?;
    let used = records
        .iter()
        .map(|r| r.sample_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!("{n} samples, {used} traced");
    println!("records  {}", args.out.join(LENS_FILE).display());
    for f in files {
        println!("output   {}", f.display());
    }
    Ok(())
}
