//! `vidflow doctor`: which ONNX Runtime, GPU libraries and GPU this machine has, per device.

use std::path::PathBuf;

use vidflow::runtime::doctor::{self, DoctorReport};
use vidflow::runtime::Device;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX Runtime shared library to check (default: what other commands would load).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Machine-readable JSON on stdout (fields in a fixed order).
    #[arg(long)]
    json: bool,
    /// Exit 1 unless this device is ready: cuda or tensorrt (cpu is accepted too).
    #[arg(long)]
    require: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Parsed before probing, so a typo is reported at once.
    let required = args
        .require
        .as_deref()
        .map(str::parse::<Device>)
        .transpose()?;
    let report: DoctorReport = doctor::diagnose(args.ort_lib.as_deref());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", doctor::render_text(&report));
    }
    if let Some(device) = required {
        let v = report.verdict(device);
        if !v.ready {
            let missing: Vec<&str> = v.missing.iter().map(|m| m.what.as_str()).collect();
            anyhow::bail!(
                "{device} is not ready: {} (the fix for each is in the report above)",
                missing.join("; ")
            );
        }
    }
    Ok(())
}
