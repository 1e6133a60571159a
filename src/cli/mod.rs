//! Subcommands of `vidflow`.

mod answer;
mod eval;
mod info;
mod runtime_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vidflow",
    version,
    about = "Information-flow analysis and pathway-pruned VideoQA for Video LLMs on ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the summary of a model package and check its graphs against the manifest.
    Info(info::Args),
    /// Answer a multiple-choice question about a video, or a JSON list of samples.
    Answer(answer::Args),
    /// Evaluate VideoQA accuracy on a TVBench, TOMATO or JSON dataset (resumable, shardable).
    Eval(eval::EvalArgs),
    /// Join the output folders of the shards of one evaluation.
    Merge(eval::MergeArgs),
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIDFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Answer(a) => answer::run(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Merge(a) => eval::run_merge(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
