//! A knockout run over a sample list, into an output folder that it can resume:
//!
//! - `run.json`: the run's settings; resuming with other settings is an error naming the field;
//! - `knockouts.jsonl`: one [`KnockoutRecord`] per (sample, flow, layer);
//! - `samples.jsonl`: one [`SampleRecord`] per sample, written after its knockout records.
//!
//! A sample with a line in `samples.jsonl` is done and is not run again; knockout records of a
//! sample without one (an interrupted sample) are dropped before the run goes on, so nothing is
//! lost or repeated.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dump::dump_inputs;
use super::flows::Flow;
use super::record::{KnockoutRecord, SampleRecord, SampleStatus};
use super::sample_sweep::{failed_sample, sweep_sample, SweepSettings};
use super::window::WindowStyle;
use crate::answer::{prefetch_ordered, prepare, Sample, SampleInputs};
use crate::error::{Error, Result};
use crate::mask::MaskedRows;
use crate::package::Package;
use crate::prompt::PromptBuilder;
use crate::report::{
    clear_finished, mark_finished, read_jsonl, read_settings, select_shard, FolderLock,
    InputDigests, JsonlWriter, Progress, Shard,
};

pub const RUN_FILE: &str = "run.json";
pub const KNOCKOUTS_FILE: &str = "knockouts.jsonl";
pub const SAMPLES_FILE: &str = "samples.jsonl";

/// What a run folder was made with (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub model: String,
    pub num_layers: usize,
    pub window: usize,
    pub window_style: WindowStyle,
    pub layers: Vec<usize>,
    pub all_samples: bool,
    /// Absent in runs written before the policy existed: those used `uniform`.
    #[serde(default)]
    pub masked_rows: MaskedRows,
    pub flows: Vec<Flow>,
    /// Content digests of the package, the data's annotation files and the flows file: resuming
    /// with any of them changed is refused, naming the file.
    #[serde(default)]
    pub inputs: InputDigests,
    /// `(k, n)`: the run holds the samples whose index % n == k - 1 (`--shard K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Set by `merge --partial`: the shards (K of N) that were missing from the merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<usize>,
}

impl RunManifest {
    /// The first field that differs from `other`, for the resume error.
    fn first_difference(&self, other: &RunManifest) -> Option<&'static str> {
        [
            ("model", self.model != other.model),
            ("num_layers", self.num_layers != other.num_layers),
            ("window", self.window != other.window),
            ("window_style", self.window_style != other.window_style),
            ("layers", self.layers != other.layers),
            ("all_samples", self.all_samples != other.all_samples),
            ("masked_rows", self.masked_rows != other.masked_rows),
            ("flows", self.flows != other.flows),
            ("shard", self.shard != other.shard),
        ]
        .into_iter()
        .find(|(_, differs)| *differs)
        .map(|(name, _)| name)
    }
}

/// Everything a run needs besides the model and the samples.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub flows: Vec<Flow>,
    pub sweep: SweepSettings,
    pub out_dir: PathBuf,
    /// Video decoding threads.
    pub workers: usize,
    /// Also write each sample's exact inputs here (see [`dump_inputs`]).
    pub dump_inputs: Option<PathBuf>,
    pub progress: bool,
    /// What the run is computed from (see [`RunManifest::inputs`]).
    pub inputs: InputDigests,
    /// Run only shard `(k, n)` of the samples.
    pub shard: Option<Shard>,
}

/// Counts of a finished run (this invocation and resumed work together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunTotals {
    pub samples: usize,
    /// Samples already done in the folder before this invocation.
    pub resumed: usize,
    pub used: usize,
    pub skipped_wrong: usize,
    pub failed: usize,
    /// Samples that had failed in an earlier invocation and were run again by this one.
    pub retried: usize,
    pub records: usize,
}

/// The manifest of a knockout run folder, if it holds one.
pub fn read_manifest(path: &Path) -> Result<Option<RunManifest>> {
    read_settings(path, "a knockout run manifest")
}

/// Loads what a previous run left and keeps only complete samples; returns the done ids and the
/// ids of samples that had failed (they are run again: their video may have been fixed).
fn resume_state(out: &Path) -> Result<(HashSet<String>, HashSet<String>)> {
    let samples_path = out.join(SAMPLES_FILE);
    let knock_path = out.join(KNOCKOUTS_FILE);
    let samples = read_jsonl::<SampleRecord>(&samples_path)?;
    let failed: HashSet<String> = samples
        .records
        .iter()
        .filter(|s| s.status == SampleStatus::Failed)
        .map(|s| s.sample_id.clone())
        .collect();
    let done: HashSet<String> = samples
        .records
        .iter()
        .filter(|s| s.status != SampleStatus::Failed)
        .map(|s| s.sample_id.clone())
        .collect();
    let knock = read_jsonl::<KnockoutRecord>(&knock_path)?;
    // Lines are rewritten verbatim: re-serialising parsed floats may change their last digit.
    let kept: Vec<&String> = knock
        .records
        .iter()
        .zip(&knock.lines)
        .filter(|(r, _)| done.contains(&r.sample_id))
        .map(|(_, line)| line)
        .collect();
    if kept.len() != knock.records.len() || knock.dropped_tail {
        let mut w = JsonlWriter::create(&knock_path)?;
        for line in kept {
            w.write_line(line)?;
        }
        w.flush()?;
    }
    if samples.dropped_tail || !failed.is_empty() {
        let mut w = JsonlWriter::create(&samples_path)?;
        for (r, line) in samples.records.iter().zip(&samples.lines) {
            if r.status != SampleStatus::Failed {
                w.write_line(line)?;
            }
        }
        w.flush()?;
    }
    Ok((done, failed))
}

fn check_unique_ids(samples: &[Sample]) -> Result<()> {
    let mut seen = HashSet::new();
    for s in samples {
        if !seen.insert(s.id.as_str()) {
            return Err(Error::Input(format!(
                "sample id {:?} appears more than once in the data; resuming needs unique ids",
                s.id
            )));
        }
    }
    Ok(())
}

/// Runs every sample not yet done in `settings.out_dir`. Samples that cannot be prepared or run
/// are reported (stderr and `samples.jsonl`) and skipped; errors writing the folder stop the run.
pub fn run_knockout(
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    samples: Vec<Sample>,
    settings: &RunSettings,
) -> Result<RunTotals> {
    check_unique_ids(&samples)?;
    let samples = select_shard(samples, settings.shard);
    let out = &settings.out_dir;
    let _lock = FolderLock::acquire(out)?;
    let manifest = RunManifest {
        model: pkg.manifest.name.clone(),
        num_layers: pkg.manifest.num_layers,
        window: settings.sweep.window,
        window_style: settings.sweep.style,
        layers: settings.sweep.layers.clone(),
        all_samples: settings.sweep.all_samples,
        masked_rows: settings.sweep.masked_rows,
        flows: settings.flows.clone(),
        inputs: settings.inputs.clone(),
        shard: settings.shard,
        missing_shards: Vec::new(),
    };
    let manifest_path = out.join(RUN_FILE);
    match read_manifest(&manifest_path)? {
        Some(old) => {
            if let Some(why) = manifest.inputs.conflict(&old.inputs) {
                return Err(Error::Data {
                    path: manifest_path,
                    msg: format!(
                        "refusing to resume: {why}; use another --out, or the same inputs"
                    ),
                });
            }
            if let Some(field) = old.first_difference(&manifest) {
                return Err(Error::Data {
                    path: manifest_path,
                    msg: format!(
                        "the folder holds a run with a different `{field}`; resume with the same \
                         settings or choose another --out"
                    ),
                });
            }
        }
        None => {
            let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
            std::fs::write(&manifest_path, text).map_err(|e| Error::io(&manifest_path, e))?;
        }
    }
    let (done, failed) = resume_state(out)?;
    let total_samples = samples.len();
    let todo: Vec<(usize, Sample)> = samples
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !done.contains(&s.id))
        .collect();
    let resumed = total_samples - todo.len();
    let retried = todo.iter().filter(|(_, s)| failed.contains(&s.id)).count();
    if !todo.is_empty() {
        clear_finished(out)?;
    }

    let per_sample = settings
        .sweep
        .knockouts(settings.flows.len(), pkg.manifest.num_layers)
        .len();
    let progress = Progress::new(
        (todo.len() * per_sample) as u64,
        "knockouts",
        settings.progress,
    );
    let mut knock_w = JsonlWriter::append(&out.join(KNOCKOUTS_FILE))?;
    let mut sample_w = JsonlWriter::append(&out.join(SAMPLES_FILE))?;
    let spec = pkg.manifest.video.clone();
    let prep_builder = Arc::clone(&builder);
    let tokenizer = builder.tokenizer();
    prefetch_ordered(
        todo,
        settings.workers,
        settings.workers + 1,
        move |(_, s): &(usize, Sample)| prepare(&prep_builder, &spec, s),
        |(index, sample), prepared: Result<SampleInputs>| -> Result<()> {
            let outcome = prepared.and_then(|inputs| {
                if let Some(dir) = &settings.dump_inputs {
                    dump_inputs(pkg, dir, index, &sample, &inputs)?;
                }
                let mut tick = |n: usize| progress.inc(n);
                sweep_sample(
                    pkg,
                    tokenizer,
                    &sample,
                    &inputs,
                    &settings.flows,
                    &settings.sweep,
                    &mut tick,
                )
            });
            let status = match outcome {
                Ok(o) => {
                    for r in &o.knockouts {
                        knock_w.write(r)?;
                    }
                    knock_w.flush()?;
                    o.sample
                }
                Err(e) => {
                    let msg = e.to_string();
                    progress.println(&format!("sample {:?} failed: {msg}", sample.id));
                    if !settings.progress {
                        eprintln!("sample {:?} failed: {msg}", sample.id);
                    }
                    progress.inc(per_sample);
                    failed_sample(&sample, &msg)
                }
            };
            sample_w.write(&status)?;
            sample_w.flush()
        },
    )?;
    progress.finish();
    let totals = totals(out, total_samples, resumed, retried)?;
    mark_finished(out, total_samples)?;
    if totals.used == 0 {
        return Err(Error::NothingScored(if totals.samples == 0 {
            "no sample to run: the list is empty, or every record in it is bad (each is named above)"
                .into()
        } else if totals.failed > 0 {
            format!(
                "{} of {} samples failed (their reasons are in {})",
                totals.failed,
                totals.samples,
                out.join(SAMPLES_FILE).display()
            )
        } else {
            format!(
                "the model answered all {} samples wrongly and knockouts measure only correctly \
                 answered ones (--all-samples measures every sample)",
                totals.samples
            )
        }));
    }
    Ok(totals)
}

/// Counts what the folder holds now.
fn totals(out: &Path, samples: usize, resumed: usize, retried: usize) -> Result<RunTotals> {
    let s = read_jsonl::<SampleRecord>(&out.join(SAMPLES_FILE))?.records;
    let records = read_jsonl::<KnockoutRecord>(&out.join(KNOCKOUTS_FILE))?
        .records
        .len();
    let count = |st: SampleStatus| s.iter().filter(|r| r.status == st).count();
    Ok(RunTotals {
        samples,
        resumed,
        used: count(SampleStatus::Used),
        skipped_wrong: count(SampleStatus::SkippedWrong),
        failed: count(SampleStatus::Failed),
        retried,
        records,
    })
}
