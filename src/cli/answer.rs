//! `vidflow answer`: answer a multiple-choice question about a video (or a JSON list of them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;
use vidflow::answer::{self, prefetch_ordered, OptionScores, Sample, SampleInputs};
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
    /// Answer in the model's own words: generate up to N tokens after the open-ended prompt (no
    /// `--option`s; see docs/serving.md for the prompt and how masks apply to generated tokens).
    #[arg(long, value_name = "N", conflicts_with_all = ["samples", "answer"])]
    generate: Option<usize>,
    /// With --generate: 0 is greedy; above 0 samples from the logits divided by it.
    #[arg(long, default_value_t = 0.0, requires = "generate")]
    temperature: f32,
    /// With --generate: nucleus sampling keeps the most likely tokens up to this probability.
    #[arg(long, default_value_t = 1.0, requires = "generate")]
    top_p: f32,
    /// With --generate: seed of the sampler.
    #[arg(long, default_value_t = 0, requires = "generate")]
    seed: u64,
    /// With --generate: a pathway config (a knockout is a config with its rules) under which the
    /// prompt is read and every token generated.
    #[arg(long, value_name = "FILE", requires = "generate")]
    pathways: Option<PathBuf>,
    /// With --generate: what a row without an open key attends to (uniform or zero).
    #[arg(long, default_value = "uniform", requires = "generate")]
    masked_rows: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// What `--json` prints per sample. `frame_indices` are the frames the model saw; absent only when
/// the video could not be decoded (then `error` says why).
#[derive(Serialize)]
struct AnswerRecord<'a> {
    id: &'a str,
    video: String,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    match (&args.samples, args.generate) {
        (_, Some(n)) => run_generate(&args, &pkg, &builder, n),
        (Some(path), None) => run_list(&args, &pkg, builder, path),
        (None, None) => run_one(&args, &pkg, &builder),
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

/// At least two `--option`s, none blank, no two the same (the data sets' own check).
fn check_cli_options(options: &[String]) -> anyhow::Result<()> {
    if options.len() < 2 {
        bail!("give at least two --option values (got {})", options.len());
    }
    if let Err(e) = vidflow::data::check_option_texts(options) {
        bail!("--option: {e}");
    }
    Ok(())
}

fn run_one(args: &Args, pkg: &Package, builder: &PromptBuilder) -> anyhow::Result<()> {
    let video = args.video.clone().expect("clap requires --video");
    let question = args.question.clone().expect("clap requires --question");
    check_cli_options(&args.options)?;
    if let Some(fps) = args.fps {
        if !(fps.is_finite() && fps > 0.0) {
            bail!("--fps {fps}: expected a positive frame rate (frames per second)");
        }
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
    let total_frames = input.sampled.total_frames;
    let inputs = SampleInputs::new(input, &pkg.manifest.video, layout, |times| {
        builder.layout_at(&sample.question, &opts, truth, times)
    })?;
    let scores = answer::answer(pkg, &inputs)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &sample, Some(&inputs.frame_indices), Ok(&scores))?;
    } else {
        print_table(
            &mut out,
            &sample,
            &inputs.frame_indices,
            total_frames,
            &scores,
        )?;
    }
    Ok(())
}

/// What `--generate --json` prints.
#[derive(Serialize)]
struct GeneratedRecord<'a> {
    video: String,
    frame_indices: &'a [usize],
    question: &'a str,
    text: &'a str,
    tokens: &'a [i64],
    finish_reason: &'static str,
    prompt_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
}

fn run_generate(
    args: &Args,
    pkg: &Package,
    builder: &PromptBuilder,
    max_tokens: usize,
) -> anyhow::Result<()> {
    let video = args.video.clone().expect("clap requires --video");
    let question = args.question.clone().expect("clap requires --question");
    if max_tokens == 0 {
        bail!("--generate 0: expected the most tokens to generate, at least 1");
    }
    if !args.options.is_empty() {
        bail!(
            "--generate answers in the model's own words: give no --option (got {})",
            args.options.len()
        );
    }
    let config = args
        .pathways
        .as_deref()
        .map(vidflow::pathway::PathwayConfig::from_file)
        .transpose()?;
    let spec = vidflow::generate::GenerateSpec {
        max_tokens,
        sampling: vidflow::generate::Sampling {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        },
        pathways: config.as_ref(),
        masked_rows: args.masked_rows.parse()?,
        stop: vidflow::generate::stop_tokens(pkg),
    };
    let layout = builder.layout_open(&question, None)?;
    let input = load_video(
        &video,
        &pkg.manifest.video,
        answer::window(args.start, args.end),
        args.fps,
    )?;
    let inputs = SampleInputs::new(input, &pkg.manifest.video, layout, |times| {
        builder.layout_open_at(&question, None, times)
    })?;
    let out = vidflow::generate::generate(pkg, &inputs, &spec, |_| true)
        .with_context(|| format!("--generate {max_tokens}"))?;
    let text = vidflow::generate::decode_text(builder.tokenizer(), &out.tokens)?;
    let mut w = std::io::stdout().lock();
    if args.json {
        let rec = GeneratedRecord {
            video: video.display().to_string(),
            frame_indices: &inputs.frame_indices,
            question: &question,
            text: &text,
            tokens: &out.tokens,
            finish_reason: out.finish.reason(),
            prompt_tokens: out.prompt_len,
            prefill_ms: out.prefill_ms,
            decode_ms: out.decode_ms,
        };
        writeln!(w, "{}", serde_json::to_string(&rec)?)?;
    } else {
        writeln!(
            w,
            "video     {} (frames {:?})",
            video.display(),
            inputs.frame_indices
        )?;
        writeln!(w, "question  {question}")?;
        writeln!(w, "answer    {text}")?;
        writeln!(
            w,
            "{} tokens ({}), prompt {} positions; prefill {:.1} ms, decoding {:.1} ms",
            out.tokens.len(),
            out.finish.reason(),
            out.prompt_len,
            out.prefill_ms,
            out.decode_ms
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
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    answer_list(
        pkg,
        builder,
        path,
        args.workers.max(1),
        args.json,
        &mut out,
        &mut err,
    )
}

/// Answers a sample list: bad records are named on `err` first, then every usable sample gets
/// its line on `out`, in order. No usable sample at all is an error.
fn answer_list(
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    path: &Path,
    workers: usize,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let data = answer::load_samples(path)?;
    for b in &data.bad {
        writeln!(err, "skipped {}: {}", b.id, b.reason)?;
    }
    // Nothing to score is exit status 2, as in `vidflow eval` (vidflow::Error::NothingScored).
    if data.samples.is_empty() {
        return Err(vidflow::Error::NothingScored(if data.bad.is_empty() {
            format!("{}: the sample list is empty", path.display())
        } else {
            format!(
                "{}: none of its {} records can be used (each is named above)",
                path.display(),
                data.bad.len()
            )
        })
        .into());
    }
    let samples = data.samples;
    let total = samples.len();
    let mut scored = 0usize;
    let mut correct = 0usize;
    let mut failed = Vec::new();
    let spec = pkg.manifest.video.clone();
    // As `answer::answer_all`, keeping each sample's frame indices for the output.
    prefetch_ordered(
        samples,
        workers,
        workers + 1,
        move |s: &Sample| answer::prepare(&builder, &spec, s),
        |sample, prepared| {
            let (frames, result) = match prepared {
                Ok(inputs) => {
                    let result = answer::answer(pkg, &inputs);
                    (Some(inputs.frame_indices), result)
                }
                Err(e) => (None, Err(e)),
            };
            let frames = frames.as_deref();
            let write = match &result {
                Ok(scores) => {
                    scored += 1;
                    if scores.correct() == Some(true) {
                        correct += 1;
                    }
                    if json {
                        print_json(out, &sample, frames, Ok(scores))
                    } else {
                        print_row(out, &sample, scores)
                    }
                }
                Err(e) => {
                    failed.push(format!("{}: {e}", sample.id));
                    if json {
                        print_json(out, &sample, frames, Err(e.to_string()))
                    } else {
                        writeln!(out, "{:<16} error: {e}", sample.id).map_err(anyhow::Error::from)
                    }
                }
            };
            write.map_err(|e| vidflow::Error::Input(format!("cannot write output: {e}")))
        },
    )
    .with_context(|| format!("answering {}", path.display()))?;
    if !json {
        let bad = match data.bad.len() {
            0 => String::new(),
            n => format!("; {n} bad records not run"),
        };
        writeln!(
            out,
            "{scored} of {total} samples scored, {correct} correct; {} failed{bad}",
            failed.len()
        )?;
    }
    for f in &failed {
        writeln!(err, "skipped {f}")?;
    }
    if scored == 0 {
        return Err(vidflow::Error::NothingScored(format!(
            "{}: none of its {total} samples could be answered; the first, {}",
            path.display(),
            failed.first().map_or("", String::as_str)
        ))
        .into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use vidflow::runtime::RuntimeOptions;

    fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[test]
    fn repeated_options_are_refused_like_in_the_data_sets() {
        let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = check_cli_options(&opts(&["red", "red"])).unwrap_err();
        assert_eq!(e.to_string(), "--option: options 0 and 1 are both \"red\"");
        let e = check_cli_options(&opts(&["red", "blue", " blue"])).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--option: options 1 and 2 are both \"blue\""));
        let e = check_cli_options(&opts(&["red"])).unwrap_err();
        assert!(e.to_string().contains("at least two --option"));
        check_cli_options(&opts(&["red", "blue"])).unwrap();
    }

    #[test]
    fn sample_lists_print_the_sampled_frames_and_name_bad_records() {
        let pkg = Package::open(
            &repo("tests/fixtures/tiny"),
            &RuntimeOptions {
                threads: 1,
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        let builder = Arc::new(PromptBuilder::new(&pkg.manifest, pkg.dir()).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let list = tmp.path().join("samples.json");
        let frames = repo("tests/fixtures/knockout/frames/clip0");
        let good = serde_json::json!({"id": "good", "video": frames, "question": "Q?",
                                      "options": ["x", "y"], "answer": 1});
        let bad = serde_json::json!({"id": "bad", "video": frames, "question": "Q?",
                                     "options": ["x", "y"], "answer": -1});
        std::fs::write(&list, serde_json::json!([good, bad]).to_string()).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        answer_list(
            &pkg,
            Arc::clone(&builder),
            &list,
            1,
            true,
            &mut out,
            &mut err,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        let idx = lines[0]["frame_indices"].as_array().expect("frame indices");
        assert_eq!(idx.len(), pkg.manifest.video.num_frames);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("skipped bad: ")
                && err.contains("record 1: field answer: -1 is neither an option index"),
            "{err}"
        );

        std::fs::write(&list, serde_json::json!([bad]).to_string()).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = answer_list(&pkg, builder, &list, 1, true, &mut out, &mut err).unwrap_err();
        assert!(
            e.to_string().contains("none of its 1 records can be used"),
            "{e}"
        );
    }
}
