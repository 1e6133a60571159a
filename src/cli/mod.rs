//! Subcommands of `vidflow`.

mod answer;
mod attention;
mod bench;
mod check;
mod demo;
mod discover;
mod doctor;
mod eval;
mod info;
mod knockout;
mod lens;
mod plan;
mod runtime_args;
mod serve;
mod slurm;
mod synth;

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
    /// The whole method on the toy models: eval, knockout, lens, pathways, bench -> out/demo/report.md.
    Demo(demo::Args),
    /// Check this machine for the cpu, cuda and tensorrt devices: ONNX Runtime, GPU libraries, GPU.
    Doctor(doctor::Args),
    /// Print the summary of a model package and check its graphs against the manifest.
    Info(info::Args),
    /// Answer a multiple-choice question about a video, or a JSON list of samples.
    Answer(answer::Args),
    /// Evaluate VideoQA accuracy on a TVBench, TOMATO or JSON dataset (resumable, shardable).
    Eval(eval::EvalArgs),
    /// Join the output folders of the shards of one run (eval, knockout, lens or attention).
    Merge(eval::MergeArgs),
    /// Effective pathways from a knockout sweep, written as a pathway config.
    Discover(discover::Args),
    /// Compile a pathway config into an execution plan: rows, keys, edges and FLOPs per layer.
    Plan(plan::Args),
    /// Prefill latency of the full run vs pathway-pruned and dense masked runs.
    Bench(bench::Args),
    /// Check the package's numbers on a device: golden parity, optimised = naive knockouts, pruned = dense.
    Check(check::Args),
    /// Attention-knockout sweeps: block flows between token groups layer by layer, measure the answer.
    Knockout(knockout::Args),
    /// Logit lens: layer-wise option probabilities and keyword counts over video tokens.
    Lens(lens::Args),
    /// Attention maps of a token group over the video tokens, baseline next to a knockout.
    Attention(attention::Args),
    /// Run eval, knockout or lens as a Slurm array job (one task per shard) and merge the shards.
    Slurm(slurm::Args),
    /// Serve VideoQA over HTTP: /v1/videoqa, OpenAI-style /v1/chat/completions, /metrics.
    Serve(serve::Args),
    /// Write a synthetic TVBench-layout dataset (temporal tasks or single-frame questions).
    Synth(synth::Args),
}

/// Keeps glibc from handing large freed blocks back to the kernel. Masks and activations of
/// a few hundred KB are allocated and freed on every run. By default, glibc serves each of them
/// with a fresh `mmap` and returns it on free, so every run page-faults its buffers in again.
/// On the toy model this cost a schedule with per-layer masks about 10% of its prefill (paired
/// `vidflow bench`; docs/prefix-and-exit.md). The trim threshold keeps freed memory in the
/// process. glibc refuses an `M_MMAP_THRESHOLD` above 32 MB, so the first call below has no
/// effect and the threshold stays dynamic; steady-state SmolLM2 runs page-fault no more either
/// way (measured), so it is left as it was.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

pub fn main() -> ExitCode {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIDFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Info(a) => info::run(a),
        Command::Answer(a) => answer::run(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Merge(a) => eval::run_merge(a),
        Command::Discover(a) => discover::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Check(a) => check::run(a),
        Command::Knockout(a) => knockout::run(a),
        Command::Lens(a) => lens::run(a),
        Command::Attention(a) => attention::run(a),
        Command::Slurm(a) => slurm::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Synth(a) => synth::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<vidflow::Error>() {
                Some(vidflow::Error::NothingScored(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
