//! `vidflow synth`: writes a synthetic TVBench-layout dataset (see `vidflow::synth`).

use std::path::PathBuf;

use vidflow::synth::{self, Suite, SynthConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (json/<task>.json, video/<task>/*.mp4, synth.json).
    #[arg(long)]
    out: PathBuf,
    /// Seed; the same seed writes the same dataset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per task.
    #[arg(long, default_value_t = 100)]
    per_task: usize,
    /// Frame width and height in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Frames per video.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Frame rate of the videos.
    #[arg(long, default_value_t = 8)]
    fps: u32,
    /// temporal (the five TVBench-like tasks) or image (single-frame questions, for the image stage).
    #[arg(long, default_value = "temporal")]
    suite: String,
    /// Only these tasks (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Also write frames/<task>.npy: F segment-middle frames per video, decoded by vidflow (uint8).
    #[arg(long, value_name = "F")]
    dump_frames: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        seed: a.seed,
        per_task: a.per_task,
        size: a.size,
        frames: a.frames,
        fps: a.fps,
        suite: a.suite.parse::<Suite>()?,
        tasks: a.tasks,
        dump_frames: a.dump_frames,
    };
    let summary = synth::generate(&a.out, &cfg, |_, _| {})?;
    for (task, t) in &summary.tasks {
        println!(
            "{task:<20} {:>6} samples   answer positions {:?}   classes {:?}",
            t.samples, t.answer_positions, t.classes
        );
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
