//! Running an evaluation: select the shard, skip what the records already hold, answer the rest
//! with video decoding ahead of the engine, append a record per sample, summarise.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::records::{read_records, EvalRecord, RecordWriter, RECORDS_FILE};
use super::settings::EvalSettings;
use super::summary::{summarize, write_summary, Summary};
use crate::answer::{self, prefetch_ordered, score_options, OptionScores, Sample, SampleInputs};
use crate::data::{task_of, BadRecord, Dataset};
use crate::engine::run_plan;
use crate::error::{Error, Result};
use crate::package::Package;
use crate::pathway::{Pathways, SequenceGroups};
use crate::plan::Plan;
use crate::prompt::PromptBuilder;

/// How each sample is run.
pub enum EvalMode {
    /// The plain causal model.
    Full,
    /// Only the pathways of a config (or random blocking) open, executed as a pruned plan.
    Pathways(Pathways),
}

impl EvalMode {
    /// `full`, `pathways:FILE` or `random:RATIO[:SEED]` (`seed` applies when the mode names none).
    /// A config written for another layer count is mapped onto the model's when `scale` is set.
    pub fn parse(s: &str, seed: u64, num_layers: usize, scale: bool) -> Result<EvalMode> {
        let pathways = if s == "full" {
            return Ok(EvalMode::Full);
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
        Ok(EvalMode::Pathways(if scale {
            pathways.scaled_to(num_layers)
        } else {
            pathways
        }))
    }

    /// Scores a prepared sample; returns the scores and (open, total) edges summed over layers.
    fn score(&self, pkg: &Package, inputs: &SampleInputs) -> Result<(OptionScores, u64, u64)> {
        let layout = &inputs.layout;
        let s = layout.seq_len as u64;
        let total = pkg.num_layers() as u64 * s * (s + 1) / 2;
        match self {
            EvalMode::Full => Ok((answer::answer(pkg, inputs)?, total, total)),
            EvalMode::Pathways(p) => {
                let schedule = p.resolve(&SequenceGroups::from_prompt(layout), pkg.num_layers())?;
                let plan = Plan::compile(&schedule);
                let (embeds, rotary) = answer::embed(pkg, inputs)?;
                let out = run_plan(pkg, &schedule, &plan, embeds.view(), &rotary)?;
                let labels = &pkg.manifest.prompt.option_labels[..layout.option_token_ids.len()];
                let scores = score_options(
                    out.last_logits(),
                    labels,
                    &layout.option_token_ids,
                    layout.answer,
                )?;
                let open: u64 = schedule.open_edges().iter().map(|&e| e as u64).sum();
                Ok((scores, open, total))
            }
        }
    }
}

/// Keeps the samples (and load errors) of shard `(k, n)`: those whose index % n == k - 1.
pub fn select_shard<T>(items: Vec<T>, shard: Option<(usize, usize)>) -> Vec<T> {
    match shard {
        None => items,
        Some((k, n)) => items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, x)| x)
            .collect(),
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

/// Runs (or resumes) an evaluation into `out`. Settings must match those of an earlier run there.
pub fn run_eval(
    pkg: &Package,
    settings: &EvalSettings,
    mode: &EvalMode,
    data: Dataset,
    out: &Path,
    workers: usize,
    progress: bool,
) -> Result<Summary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    match EvalSettings::read(out)? {
        Some(old) if &old != settings => {
            return Err(Error::Input(format!(
                "{} holds a run with other settings ({}); use another --out or the same settings",
                out.display(),
                old.differences(settings).join("; ")
            )))
        }
        Some(_) => {}
        None => settings.write(out)?,
    }
    let mut samples = data.samples;
    if let Some(limit) = settings.limit {
        samples.truncate(limit);
    }
    let samples = select_shard(samples, settings.shard);
    let load_errors: Vec<BadRecord> = select_shard(data.bad, settings.shard);

    let records_path = out.join(RECORDS_FILE);
    let done: BTreeSet<String> = read_records(&records_path)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let todo: Vec<Sample> = samples
        .into_iter()
        .filter(|s| !done.contains(&s.id))
        .collect();

    let mut video = pkg.manifest.video.clone();
    video.num_frames = settings.frames;
    let builder = Arc::new(PromptBuilder::from_parts(
        &pkg.manifest.prompt,
        &pkg.manifest.special_tokens,
        &video,
        &pkg.tokenizer_path(),
    )?);
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
    let summary = summarize(&records, &load_errors);
    write_summary(out, &summary)?;
    std::fs::write(
        out.join("load_errors.json"),
        serde_json::to_string_pretty(&load_errors).expect("serialize") + "\n",
    )
    .map_err(|e| Error::io(out, e))?;
    Ok(summary)
}

/// Joins the shard directories of one run into `out`: settings must agree (all but the shard),
/// shards must be distinct, and no sample may appear twice.
pub fn merge_runs(shards: &[&Path], out: &Path) -> Result<Summary> {
    let mut base: Option<EvalSettings> = None;
    let mut seen_shards = BTreeSet::new();
    let mut records: Vec<EvalRecord> = Vec::new();
    let mut load_errors: Vec<BadRecord> = Vec::new();
    for dir in shards {
        let s = EvalSettings::read(dir)?.ok_or_else(|| Error::Data {
            path: dir.to_path_buf(),
            msg: "no settings.json: not an evaluation output folder".into(),
        })?;
        match &base {
            None => base = Some(s.without_shard()),
            Some(b) if *b != s.without_shard() => {
                return Err(Error::Data {
                    path: dir.to_path_buf(),
                    msg: format!(
                        "settings differ from the first shard's: {}",
                        b.differences(&s.without_shard()).join("; ")
                    ),
                })
            }
            Some(_) => {}
        }
        if !seen_shards.insert(s.shard) {
            return Err(Error::Data {
                path: dir.to_path_buf(),
                msg: format!("shard {:?} is given twice", s.shard),
            });
        }
        records.extend(read_records(&dir.join(RECORDS_FILE))?);
        let le = dir.join("load_errors.json");
        if le.exists() {
            let text = std::fs::read_to_string(&le).map_err(|e| Error::io(&le, e))?;
            let v: Vec<BadRecord> = serde_json::from_str(&text).map_err(|e| Error::Data {
                path: le.clone(),
                msg: e.to_string(),
            })?;
            load_errors.extend(v);
        }
    }
    let mut ids = BTreeSet::new();
    if let Some(dup) = records.iter().find(|r| !ids.insert(r.id.clone())) {
        return Err(Error::Input(format!(
            "sample {} appears in more than one shard",
            dup.id
        )));
    }
    records.sort_by(|a, b| (&a.task, &a.id).cmp(&(&b.task, &b.id)));
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    base.expect("at least one shard").write(out)?;
    let mut w = RecordWriter::append(&out.join(RECORDS_FILE))?;
    for r in &records {
        w.write(r)?;
    }
    let summary = summarize(&records, &load_errors);
    write_summary(out, &summary)?;
    Ok(summary)
}
