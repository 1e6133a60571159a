//! `vidflow bench`: prefill latency of the full run, pathway-pruned plans and dense masked runs,
//! next to the speedup the plan's FLOP count predicts.

use std::path::PathBuf;

use vidflow::answer::SampleInputs;
use vidflow::bench::{bench, random_pixels, BenchMode, BenchSettings};
use vidflow::package::Package;
use vidflow::video::load_video;

use super::plan::PromptArgs;
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

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.runtime.options()?;
    let pkg = Package::open(&args.model, &opts)?;
    let m = &pkg.manifest;
    let modes = args
        .modes
        .iter()
        .map(|a| BenchMode::parse(a, args.scale, m.num_layers))
        .collect::<vidflow::Result<Vec<_>>>()?;
    let layout = args.prompt.layout(m, &args.model)?;
    let pixels = match &args.video {
        Some(v) => load_video(v, &m.video, None, None)?.pixel_values,
        None => {
            let v = &m.video;
            random_pixels(
                (v.input_frames(), 3, v.frame_height, v.frame_width),
                args.seed,
            )
        }
    };
    let inputs = SampleInputs {
        pixels,
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout,
    };
    let settings = BenchSettings {
        runs: args.runs,
        warmup: args.warmup,
    };
    let json = args.json;
    let report = bench(&pkg, &inputs, &modes, settings, opts.threads, |i, n| {
        if !json {
            eprint!("\rround {i}/{n}");
            if i == n {
                eprintln!();
            }
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
