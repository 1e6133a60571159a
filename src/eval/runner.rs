//! Running an evaluation: select the shard, skip what the records already hold, answer the rest
//! with video decoding ahead of the engine, append a record per sample, summarise.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::records::{read_records, rewrite_records, EvalRecord, RecordWriter, RECORDS_FILE};
use super::settings::EvalSettings;
use super::summary::{summarize, write_summary, Summary, SUMMARY_FILE};
use crate::answer::{self, prefetch_ordered, OptionScores, Sample, SampleInputs};
use crate::data::{task_of, BadRecord, Dataset};
use crate::engine::{run_plan, run_plan_after, PrefixMasks};
use crate::error::{Error, Result};
use crate::package::Package;
use crate::pathway::{Pathways, SequenceGroups};
use crate::plan::Plan;
use crate::prompt::PromptBuilder;
use crate::report::{select_shard, FolderLock};

/// How each sample is run.
#[derive(Debug, Clone)]
pub enum EvalMode {
    /// The plain causal model, the answer read after the last layer or after `exit_layer`.
    Full { exit_layer: Option<usize> },
    /// Only the pathways of a config (or random blocking) open, executed as a pruned plan.
    Pathways(Pathways),
}

impl EvalMode {
    /// `full`, `pathways:FILE` or `random:RATIO[:SEED]` (`seed` applies when the mode names none).
    /// A config written for another layer count is mapped onto the model's when `scale` is set.
    /// `exit_layer` (1-based) reads the answer after that layer; a config's own `exit_layer`
    /// must then agree.
    pub fn parse(
        s: &str,
        seed: u64,
        num_layers: usize,
        scale: bool,
        exit_layer: Option<usize>,
    ) -> Result<EvalMode> {
        if let Some(k) = exit_layer {
            if k == 0 || k > num_layers {
                return Err(Error::Input(format!(
                    "--exit-layer {k}: expected a layer from 1 to {num_layers}"
                )));
            }
        }
        let pathways = if s == "full" {
            return Ok(EvalMode::Full { exit_layer });
        } else if let Some(file) = s.strip_prefix("pathways:") {
            Pathways::parse(file)?
        } else if let Some(rest) = s.strip_prefix("random:") {
            let arg = if rest.contains(':') {
                s.to_string()
            } else {
                format!("{s}:{seed}")
            };
            Pathways::parse(&arg)?
        } else {
            return Err(Error::Input(format!(
                "--mode {s}: expected full, pathways:FILE or random:RATIO[:SEED]"
            )));
        };
        let pathways = if scale {
            pathways.scaled_to(num_layers)
        } else {
            pathways
        };
        Ok(EvalMode::Pathways(match (pathways, exit_layer) {
            (p, None) => p,
            (Pathways::Config(mut c), Some(k)) => {
                if c.exit_layer.is_some_and(|own| own != k) {
                    return Err(Error::Input(format!(
                        "--exit-layer {k}: {} has exit_layer {}",
                        c.path.display(),
                        c.exit_layer.unwrap_or_default()
                    )));
                }
                c.exit_layer = Some(k);
                Pathways::Config(c)
            }
            (Pathways::Random(_), Some(_)) => {
                return Err(Error::Input(
                    "--exit-layer with random blocking: write a pathway config with exit_layer \
                     instead"
                        .into(),
                ))
            }
        }))
    }

    /// Scores a prepared sample; returns the scores and (open, total) edges summed over layers
    /// (the layers an early exit skips count as closed).
    pub(crate) fn score(
        &self,
        pkg: &Package,
        inputs: &SampleInputs,
    ) -> Result<(OptionScores, u64, u64)> {
        let layout = &inputs.layout;
        let s = layout.seq_len as u64;
        let per_layer = s * (s + 1) / 2;
        let total = pkg.num_layers() as u64 * per_layer;
        match self {
            EvalMode::Full { exit_layer } => {
                let layers = exit_layer.unwrap_or(pkg.num_layers());
                let logits = answer::causal_logits(pkg, inputs, layers)?;
                let scores = answer::scores_from(pkg, layout, logits.view())?;
                Ok((scores, layers as u64 * per_layer, total))
            }
            EvalMode::Pathways(p) => {
                let schedule = p.resolve(&SequenceGroups::from_prompt(layout), pkg.num_layers())?;
                let plan = Plan::compile(&schedule);
                // Random blocking draws over every position after the first video token, so its
                // masks over the prefix change with the question's length: never reused.
                let split = match p {
                    Pathways::Config(_) => answer::split(
                        pkg,
                        inputs,
                        PrefixMasks::Schedule(&schedule),
                        schedule.num_layers(),
                        false,
                    )?,
                    Pathways::Random(_) => None,
                };
                let out = match split {
                    Some(sp) => {
                        run_plan_after(pkg, &schedule, &plan, &sp.prefix, &sp.embeds, &sp.rotary)?
                    }
                    None => {
                        let (embeds, rotary) = answer::embed(pkg, inputs)?;
                        run_plan(pkg, &schedule, &plan, &embeds, &rotary)?
                    }
                };
                let scores = answer::scores_from(pkg, layout, out.last_logits())?;
                let open: u64 = schedule.open_edges().iter().map(|&e| e as u64).sum();
                Ok((scores, open, total))
            }
        }
    }
}

fn record_of(sample: &Sample, result: Result<(OptionScores, u64, u64)>) -> EvalRecord {
    let base = EvalRecord {
        id: sample.id.clone(),
        task: task_of(sample),
        scored: false,
        error: None,
        predicted: None,
        predicted_label: None,
        truth: sample.answer,
        correct: None,
        probs: Vec::new(),
        option_share: Vec::new(),
        edges_open: None,
        edges_total: None,
    };
    match result {
        Ok((s, open, total)) => EvalRecord {
            scored: true,
            predicted: Some(s.predicted),
            predicted_label: Some(s.labels[s.predicted].clone()),
            correct: s.correct(),
            probs: s.probs,
            option_share: s.option_share,
            edges_open: Some(open),
            edges_total: Some(total),
            ..base
        },
        Err(e) => EvalRecord {
            error: Some(e.to_string()),
            ..base
        },
    }
}

/// Runs (or resumes) an evaluation into `out`, which it holds locked for its whole life. Settings,
/// input digests included, must match those of an earlier run there. Samples that failed before
/// are run again. A run in which no sample could be scored is an error
/// ([`Error::NothingScored`]), after its records and summary are written.
pub fn run_eval(
    pkg: &Package,
    settings: &EvalSettings,
    mode: &EvalMode,
    data: Dataset,
    out: &Path,
    workers: usize,
    progress: bool,
) -> Result<Summary> {
    let _lock = FolderLock::acquire(out)?;
    match EvalSettings::read(out)? {
        Some(old) => {
            if let Some(why) = settings.conflict(&old) {
                return Err(Error::Data {
                    path: out.to_path_buf(),
                    msg: format!(
                        "refusing to resume: the folder holds a run with {why}; use another \
                         --out, or the same inputs and settings"
                    ),
                });
            }
        }
        None => settings.write(out)?,
    }
    let mut samples = data.samples;
    if let Some(limit) = settings.limit {
        samples.truncate(limit);
    }
    let samples = select_shard(samples, settings.shard);
    let load_errors: Vec<BadRecord> = select_shard(data.bad, settings.shard);

    let records_path = out.join(RECORDS_FILE);
    let earlier = read_records(&records_path)?;
    let (done, failed): (Vec<EvalRecord>, Vec<EvalRecord>) =
        earlier.into_iter().partition(|r| r.scored);
    if !failed.is_empty() {
        // Failed samples are tried again (their video may have been fixed): drop their records.
        rewrite_records(&records_path, &done)?;
    }
    let done: BTreeSet<String> = done.into_iter().map(|r| r.id).collect();
    let failed: BTreeSet<String> = failed.into_iter().map(|r| r.id).collect();
    let todo: Vec<Sample> = samples
        .into_iter()
        .filter(|s| !done.contains(&s.id))
        .collect();
    let retried = todo.iter().filter(|s| failed.contains(&s.id)).count();
    if !todo.is_empty() {
        // The summary marks a finished run (`merge` refuses a shard without one).
        let _ = std::fs::remove_file(out.join(SUMMARY_FILE));
    }

    let mut video = pkg.manifest.video.clone();
    video.num_frames = settings.frames;
    let builder = Arc::new(
        PromptBuilder::from_parts(
            &pkg.manifest.prompt,
            &pkg.manifest.special_tokens,
            &video,
            &pkg.tokenizer_path(),
        )?
        .with_max_positions(pkg.manifest.max_positions),
    );
    let bar = if progress {
        let b = ProgressBar::new(todo.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} samples  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .expect("template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut writer = RecordWriter::append(&records_path)?;
    let spec = video.clone();
    let prep_builder = Arc::clone(&builder);
    prefetch_ordered(
        todo,
        workers.max(1),
        workers.max(1) + 1,
        move |s: &Sample| answer::prepare(&prep_builder, &spec, s),
        |sample, prepared| {
            let result = prepared.and_then(|inputs| mode.score(pkg, &inputs));
            writer.write(&record_of(&sample, result))?;
            bar.inc(1);
            Ok::<(), Error>(())
        },
    )?;
    bar.finish_and_clear();
    let records = read_records(&records_path)?;
    let mut summary = summarize(&records, &load_errors);
    summary.retried = retried;
    std::fs::write(
        out.join("load_errors.json"),
        serde_json::to_string_pretty(&load_errors).expect("serialize") + "\n",
    )
    .map_err(|e| Error::io(out, e))?;
    write_summary(out, &summary)?;
    ensure_scored(&summary)?;
    Ok(summary)
}

/// A summary that scored nothing is an error naming why (the first reason, and how many).
pub fn ensure_scored(summary: &Summary) -> Result<()> {
    if summary.overall.scored > 0 {
        return Ok(());
    }
    Err(Error::NothingScored(match summary.not_scored.first() {
        None => "the data set has no samples (after --tasks, --limit and --shard)".into(),
        Some(b) => format!(
            "none of the {} samples was scored; the first, {} [{}]: {}",
            summary.not_scored.len(),
            b.id,
            b.task,
            b.reason
        ),
    }))
}
