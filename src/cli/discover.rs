//! `vidflow discover`: effective pathways from a knockout sweep, written as a pathway config.

use std::path::PathBuf;

use vidflow::discover::{discover, DiscoverSettings, Metric};

#[derive(clap::Args)]
pub struct Args {
    /// Output folder of a `vidflow knockout` run.
    #[arg(long = "from")]
    from: PathBuf,
    /// Layers per interval.
    #[arg(long, default_value_t = 5)]
    interval: usize,
    /// Intervals whose mean %change is below this are kept open.
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    threshold: f64,
    /// pred (%change of the baseline's answer) or true (of the ground truth).
    #[arg(long, default_value = "pred")]
    metric: String,
    /// Where to write the pathway config (default: FROM/pathways.yaml).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let settings = DiscoverSettings {
        interval: a.interval,
        threshold: a.threshold,
        metric: a.metric.parse::<Metric>()?,
    };
    let d = discover(&a.from, settings)?;
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
    let out = a.out.unwrap_or_else(|| a.from.join("pathways.yaml"));
    let description = format!(
        "from {}, interval {}, threshold {}%, metric {}",
        a.from.display(),
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
