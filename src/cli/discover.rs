//! `vidflow discover`: effective pathways from a knockout sweep (`--objective pathways`), or
//! configs that drop rows under an accuracy constraint (`--objective compute`), written as a
//! pathway config.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::CommandFactory;
use vidflow::answer;
use vidflow::bench::BenchSettings;
use vidflow::data::{self, DataSpec};
use vidflow::discover::{
    discover, discover_compute, measure, ComputeSettings, DiscoverSettings, Metric,
};
use vidflow::package::Package;
use vidflow::pathway::PathwayConfig;
use vidflow::prompt::PromptBuilder;

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// pathways (from a knockout sweep) or compute (row-dropping cutoffs and an exit layer,
    /// searched on validation samples; docs/prefix-and-exit.md).
    #[arg(long, default_value = "pathways")]
    objective: String,
    /// pathways: output folder of a `vidflow knockout` run.
    #[arg(long = "from")]
    from: Option<PathBuf>,
    /// pathways: layers per interval.
    #[arg(long, default_value_t = 5)]
    interval: usize,
    /// pathways: intervals whose mean %change is below this are kept open.
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    threshold: f64,
    /// pathways: pred (%change of the baseline's answer) or true (of the ground truth).
    #[arg(long, default_value = "pred")]
    metric: String,
    /// compute: the model package.
    #[arg(long)]
    model: Option<PathBuf>,
    /// compute: validation data (tvbench:DIR, tomato:DIR or json:FILE), not the test set.
    #[arg(long)]
    data: Option<String>,
    /// compute: only the first N samples of each task.
    #[arg(long)]
    per_task: Option<usize>,
    /// compute: a pathway config the cutoffs are added to (default: full attention).
    #[arg(long)]
    base: Option<PathBuf>,
    /// compute: the largest accuracy drop, in points, any task may take against full attention.
    #[arg(long, default_value_t = 2.0, allow_hyphen_values = true)]
    max_drop: f64,
    /// compute: cutoffs and exits on every STEP-th layer (and the last).
    #[arg(long, default_value_t = 1)]
    step: usize,
    /// compute: timed runs per frontier candidate against full attention (0: predict only).
    #[arg(long, default_value_t = 10)]
    bench_runs: usize,
    /// Where to write the pathway config (pathways: default FROM/pathways.yaml; compute:
    /// required, the frontier goes next to it as NAME.frontier.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.objective.as_str() {
        "pathways" => pathways(a),
        "compute" => compute(a),
        o => bail!("--objective {o}: expected pathways or compute"),
    }
}

/// A missing argument that depends on `--objective`: reported as clap reports its own (exit 2).
fn usage(msg: &str) -> ! {
    let mut cli = super::Cli::command();
    let cmd = cli
        .find_subcommand_mut("discover")
        .expect("the discover command");
    cmd.error(clap::error::ErrorKind::MissingRequiredArgument, msg)
        .exit()
}

fn pathways(a: Args) -> anyhow::Result<()> {
    let Some(from) = a.from.clone() else {
        usage("--objective pathways (the default) needs --from <FROM>, a knockout run folder")
    };
    let settings = DiscoverSettings {
        interval: a.interval,
        threshold: a.threshold,
        metric: a.metric.parse::<Metric>()?,
    };
    let d = discover(&from, settings)?;
    for f in &d.findings {
        println!("{} ({} samples)", f.flow, f.samples);
        for i in &f.intervals {
            let mean = i
                .mean_pct_change
                .map_or("   no data".to_string(), |m| format!("{m:>+9.2}%"));
            println!(
                "  L{:>2}-{:<2} {mean}  {}",
                i.first,
                i.last,
                if i.open { "open" } else { "blocked" }
            );
        }
    }
    for (flow, why) in &d.skipped {
        println!("skipped {flow}: {why}");
    }
    let out = a.out.unwrap_or_else(|| from.join("pathways.yaml"));
    let description = format!(
        "from {}, interval {}, threshold {}%, metric {}",
        from.display(),
        a.interval,
        a.threshold,
        a.metric
    );
    let name = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "discovered".into());
    std::fs::write(&out, d.to_yaml(&name, &description))
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    println!("pathway config written to {}", out.display());
    Ok(())
}

/// `NAME.yaml` -> `NAME.frontier.json`, beside it.
fn frontier_path(out: &Path) -> PathBuf {
    out.with_extension("frontier.json")
}

fn compute(a: Args) -> anyhow::Result<()> {
    let (Some(model), Some(data_arg), Some(out)) = (&a.model, &a.data, &a.out) else {
        usage(
            "--objective compute needs --model <MODEL>, --data <VALIDATION> and --out <CONFIG.yaml>",
        )
    };
    let pkg = Package::open(model, &a.runtime.options()?)?;
    let spec: DataSpec = data_arg.parse()?;
    let ds = data::load(&spec, None)?;
    if let Some(b) = ds.bad.first() {
        bail!(
            "{spec}: {} invalid records, e.g. {} [{}]: {}; compute-aware discovery scores every \
             validation sample",
            ds.bad.len(),
            b.id,
            b.task,
            b.reason
        );
    }
    let samples = match a.per_task {
        Some(0) => bail!("--per-task 0: expected at least 1 sample per task"),
        Some(n) => data::first_per_task(&ds.samples, n),
        None => ds.samples,
    };
    let base = a
        .base
        .as_deref()
        .map(PathwayConfig::from_file)
        .transpose()?;
    let builder = Arc::new(PromptBuilder::new(&pkg.manifest, pkg.dir())?);
    let inputs = samples
        .iter()
        .map(|s| {
            answer::prepare(&builder, &pkg.manifest.video, s).map(|inp| (data::task_of(s), inp))
        })
        .collect::<vidflow::error::Result<Vec<_>>>()?;
    let settings = ComputeSettings {
        max_drop: a.max_drop,
        step: a.step,
    };
    let mut d = discover_compute(&pkg, &inputs, base.as_ref(), settings, |i, n| {
        eprint!("\rcandidate {i}/{n}")
    })?;
    eprintln!();
    if a.bench_runs > 0 {
        let mut which = d.frontier();
        if let Some(c) = d.chosen.filter(|c| !which.contains(c)) {
            which.push(c);
        }
        measure(
            &pkg,
            &inputs[0].1,
            &mut d,
            &which,
            BenchSettings {
                runs: a.bench_runs,
                warmup: 1,
            },
            a.runtime.threads,
        )?;
    }
    print!("{}", d.table());
    let frontier = frontier_path(out);
    let json = serde_json::to_string_pretty(&d)? + "\n";
    std::fs::write(&frontier, json).with_context(|| frontier.display().to_string())?;
    println!(
        "all {} candidates written to {}",
        d.candidates.len(),
        frontier.display()
    );
    match d.chosen {
        Some(c) => {
            std::fs::write(out, &d.candidates[c].yaml)
                .with_context(|| out.display().to_string())?;
            println!(
                "chosen config {} written to {}",
                d.candidates[c].name,
                out.display()
            );
            Ok(())
        }
        None => bail!(
            "no candidate keeps every task within {} points of full attention; nothing written \
             to {}",
            a.max_drop,
            out.display()
        ),
    }
}
