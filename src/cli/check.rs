//! `vidflow check`: golden parity, optimised = naive knockouts and pruned = dense plans on the
//! chosen device (see `vidflow::check`). Exits 1 when any check fails.

use std::path::PathBuf;

use anyhow::bail;
use vidflow::check::{run_checks, CheckSettings, DEFAULT_TOLERANCE};
use vidflow::package::Package;
use vidflow::pathway::PathwayConfig;

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory (its golden/ folder, when present, is the PyTorch reference).
    #[arg(long)]
    model: PathBuf,
    /// Largest |a - e| / (1 + |e|) allowed: 1e-4 for fp32 packages, 1e-2 for fp16 ones.
    #[arg(long, default_value_t = DEFAULT_TOLERANCE)]
    tolerance: f64,
    /// Pathway config of the pruned check (default: the published LLaVA-NeXT-Video-7B config,
    /// scaled to the package's layer count).
    #[arg(long)]
    pathways: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = CheckSettings::new(args.tolerance)?;
    if let Some(p) = &args.pathways {
        settings.pathways = Some(PathwayConfig::from_file(p)?);
    }
    let opts = args.runtime.options()?;
    let pkg = Package::open(&args.model, &opts)?;
    let report = run_checks(&pkg, opts.device, &settings)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !report.passed {
        bail!(
            "{} of {} checks failed on {} (tolerance {:e})",
            report.failed,
            report.checks.len(),
            report.device,
            report.tolerance
        );
    }
    Ok(())
}
