//! `vidflow answer`: answer a multiple-choice question about a video (or a JSON list of them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;
use vidflow::answer::{self, OptionScores, Sample, SampleInputs};
use vidflow::package::Package;
use vidflow::prompt::PromptBuilder;
use vidflow::video::load_video;

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory.
    #[arg(long)]
    model: PathBuf,
    /// Video file (mp4, webm, avi, gif, …) or a folder of frame images (jpg/png, sorted by name).
    #[arg(long, required_unless_present = "samples", conflicts_with = "samples")]
    video: Option<PathBuf>,
    /// The question.
    #[arg(long, required_unless_present = "samples")]
    question: Option<String>,
    /// One option (repeat for each, 2 or more).
    #[arg(long = "option")]
    options: Vec<String>,
    /// The correct option: its text or its label (e.g. `B`).
    #[arg(long)]
    answer: Option<String>,
    /// Start of the time window, in seconds.
    #[arg(long)]
    start: Option<f64>,
    /// End of the time window, in seconds.
    #[arg(long)]
    end: Option<f64>,
    /// Frame rate of a frame folder (needed for a time window on a folder).
    #[arg(long)]
    fps: Option<f64>,
    /// A JSON list of samples instead of one video (see docs/commands.md: sample lists).
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Threads decoding videos ahead of the engine (sample lists).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Print JSON (one object per sample, one per line) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// What `--json` prints per sample.
#[derive(Serialize)]
struct AnswerRecord<'a> {
    id: &'a str,
    video: String,
    frame_indices: Option<&'a [usize]>,
    question: &'a str,
    options: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    scores: Option<&'a OptionScores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pkg = Package::open(&args.model, &args.runtime.options()?)?;
    let builder = Arc::new(PromptBuilder::new(&pkg.manifest, pkg.dir())?);
    match &args.samples {
        Some(path) => run_list(&args, &pkg, builder, path),
        None => run_one(&args, &pkg, &builder),
    }
}

fn resolve_answer(answer: &str, options: &[String], labels: &[String]) -> anyhow::Result<usize> {
    if let Some(i) = answer::answer_index(options, answer) {
        return Ok(i);
    }
    if let Some(i) = labels.iter().take(options.len()).position(|l| l == answer) {
        return Ok(i);
    }
    bail!("--answer {answer:?} is neither one of the options {options:?} nor one of their labels")
}

fn run_one(args: &Args, pkg: &Package, builder: &PromptBuilder) -> anyhow::Result<()> {
    let video = args.video.clone().expect("clap requires --video");
    let question = args.question.clone().expect("clap requires --question");
    if args.options.len() < 2 {
        bail!(
            "give at least two --option values (got {})",
            args.options.len()
        );
    }
    let truth = args
        .answer
        .as_deref()
        .map(|a| resolve_answer(a, &args.options, &pkg.manifest.prompt.option_labels))
        .transpose()?;
    let sample = Sample {
        id: video.display().to_string(),
        task: None,
        video: video.clone(),
        question,
        options: args.options.clone(),
        answer: truth,
        window: answer::window(args.start, args.end),
    };
    let opts: Vec<&str> = sample.options.iter().map(String::as_str).collect();
    let layout = builder.layout(&sample.question, &opts, truth)?;
    let input = load_video(&video, &pkg.manifest.video, sample.window, args.fps)?;
    let inputs = SampleInputs {
        pixels: input.pixel_values,
        frame_indices: input.sampled.indices.clone(),
        layout,
    };
    let scores = answer::answer(pkg, &inputs)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &sample, Some(&inputs.frame_indices), Ok(&scores))?;
    } else {
        print_table(
            &mut out,
            &sample,
            &inputs.frame_indices,
            input.sampled.total_frames,
            &scores,
        )?;
    }
    Ok(())
}

fn run_list(
    args: &Args,
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    path: &Path,
) -> anyhow::Result<()> {
    let samples = answer::load_samples(path)?;
    let total = samples.len();
    let mut scored = 0usize;
    let mut correct = 0usize;
    let mut failed = Vec::new();
    let mut out = std::io::stdout().lock();
    answer::answer_all(
        pkg,
        builder,
        samples,
        args.workers.max(1),
        |sample, result| {
            let write = match &result {
                Ok(scores) => {
                    scored += 1;
                    if scores.correct() == Some(true) {
                        correct += 1;
                    }
                    if args.json {
                        print_json(&mut out, sample, None, Ok(scores))
                    } else {
                        print_row(&mut out, sample, scores)
                    }
                }
                Err(e) => {
                    failed.push(format!("{}: {e}", sample.id));
                    if args.json {
                        print_json(&mut out, sample, None, Err(e.to_string()))
                    } else {
                        writeln!(out, "{:<16} error: {e}", sample.id).map_err(anyhow::Error::from)
                    }
                }
            };
            write.map_err(|e| vidflow::Error::Input(format!("cannot write output: {e}")))
        },
    )
    .with_context(|| format!("answering {}", path.display()))?;
    if !args.json {
        writeln!(
            out,
            "{scored} of {total} samples scored, {correct} correct; {} failed",
            failed.len()
        )?;
    }
    for f in &failed {
        eprintln!("skipped {f}");
    }
    Ok(())
}

fn print_json(
    out: &mut impl Write,
    sample: &Sample,
    frame_indices: Option<&[usize]>,
    result: Result<&OptionScores, String>,
) -> anyhow::Result<()> {
    let (scores, error) = match result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let rec = AnswerRecord {
        id: &sample.id,
        video: sample.video.display().to_string(),
        frame_indices,
        question: &sample.question,
        options: &sample.options,
        scores,
        correct: scores.and_then(|s| s.correct()),
        error,
    };
    writeln!(out, "{}", serde_json::to_string(&rec)?)?;
    Ok(())
}

fn print_row(out: &mut impl Write, sample: &Sample, s: &OptionScores) -> anyhow::Result<()> {
    let verdict = match s.correct() {
        Some(true) => "correct",
        Some(false) => "wrong",
        None => "-",
    };
    writeln!(
        out,
        "{:<16} predicted {} (p={:.4}, share {:.1}%)  {verdict}",
        sample.id,
        s.labels[s.predicted],
        s.probs[s.predicted],
        100.0 * s.option_share[s.predicted]
    )?;
    Ok(())
}

fn print_table(
    out: &mut impl Write,
    sample: &Sample,
    frames: &[usize],
    total_frames: usize,
    s: &OptionScores,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "video     {} (frames {frames:?} of {total_frames})",
        sample.video.display()
    )?;
    writeln!(out, "question  {}", sample.question)?;
    writeln!(out)?;
    writeln!(
        out,
        "  {:<6} {:>10} {:>8}  option",
        "label", "p(label)", "share"
    )?;
    for (i, text) in sample.options.iter().enumerate() {
        let mut marks = Vec::new();
        if i == s.predicted {
            marks.push("predicted");
        }
        if s.truth == Some(i) {
            marks.push("truth");
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("   <- {}", marks.join(", "))
        };
        writeln!(
            out,
            "  {:<6} {:>10.6} {:>7.2}%  {text}{marks}",
            s.labels[i],
            s.probs[i],
            100.0 * s.option_share[i]
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "answer probabilities are softmax over the whole vocabulary at the last position; share = renormalised over the options"
    )?;
    let verdict = match s.correct() {
        Some(true) => " (correct)",
        Some(false) => " (wrong)",
        None => "",
    };
    writeln!(out, "predicted {}{verdict}", s.labels[s.predicted])?;
    Ok(())
}
