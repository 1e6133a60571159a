//! `vidflow serve`: the HTTP server (the library's `serve` module does the work).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use vidflow::serve::{Limits, ServeOptions};

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// A pathway config every request runs under (a knockout is a config with its rules).
    #[arg(long, value_name = "FILE")]
    pathways: Option<PathBuf>,
    /// Map a pathway config written for another layer count onto the model's.
    #[arg(long)]
    scale: bool,
    /// What a row without an open key attends to (uniform or zero).
    #[arg(long, default_value = "uniform")]
    masked_rows: String,
    /// Address to listen on (port 0: any free port; the line printed at start says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Folder whose videos and frame folders requests may name (no path may leave it); without
    /// it only uploaded bytes (data: URLs) are served.
    #[arg(long, value_name = "DIR")]
    video_root: Option<PathBuf>,
    /// Requests that may wait for the engine; more are answered 429.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Seconds from a request's arrival to its answer; later is 504.
    #[arg(long, default_value_t = 60.0)]
    deadline: f64,
    /// Largest request body, MiB (uploaded videos travel in it, base64).
    #[arg(long, default_value_t = 32)]
    max_body_mb: usize,
    /// Longest question or option, bytes.
    #[arg(long, default_value_t = 2048)]
    max_question_bytes: usize,
    /// Most tokens a chat completion may ask for.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.deadline.is_finite() && args.deadline > 0.0) {
        bail!(
            "--deadline {}: expected a positive number of seconds",
            args.deadline
        );
    }
    if args.queue == 0 || args.max_body_mb == 0 || args.max_tokens == 0 {
        bail!("--queue, --max-body-mb and --max-tokens must be at least 1");
    }
    vidflow::serve::run(ServeOptions {
        model: args.model,
        runtime: args.runtime.options()?,
        pathways: args.pathways,
        scale: args.scale,
        masked_rows: args.masked_rows.parse()?,
        bind: args.bind,
        video_root: args.video_root,
        queue: args.queue,
        deadline: Duration::from_secs_f64(args.deadline),
        max_body_bytes: args.max_body_mb << 20,
        limits: Limits {
            max_question_bytes: args.max_question_bytes,
            max_tokens: args.max_tokens,
        },
    })?;
    Ok(())
}
