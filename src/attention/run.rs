//! `vidflow attention` over a sample list: per sample, the maps of the chosen layers for the
//! baseline and (with a flow) for a knockout, into `attention.jsonl` and a heatmap grid per sample
//! (`heatmaps/<sample>.{png,svg}`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::heatmap::{write_heatmaps, Panel};
use super::maps::{attention_maps, AttentionMap, MapKnockout, VideoGrid};
use crate::answer::{embed, prefetch_ordered, prepare, Sample, SampleInputs};
use crate::error::{Error, Result};
use crate::knockout::{Flow, ResolvedFlow};
use crate::package::Package;
use crate::prompt::PromptBuilder;
use crate::report::{
    clear_finished, mark_finished, read_settings, select_shard, write_settings, FolderLock,
    InputDigests, JsonlWriter, Progress, Shard,
};

pub const ATTENTION_FILE: &str = "attention.jsonl";

/// One (sample, variant, layer) map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionRecord {
    pub sample_id: String,
    pub task: Option<String>,
    /// `baseline` or `knockout`.
    pub variant: String,
    /// The knocked-out flow and its blocked layers (0-based), for the knockout variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_layers: Vec<usize>,
    /// The query group whose rows are averaged.
    pub query: String,
    pub layer: usize,
    pub layer_1: usize,
    pub video_mass: f64,
    pub other_mass: f64,
    pub frame_mass: Vec<f64>,
    /// `[frame][row][column]` attention on each video token.
    pub frames: Vec<Vec<Vec<f64>>>,
}

#[derive(Debug, Clone)]
pub struct AttentionSettings {
    /// Token group whose rows are the queries, e.g. `last`, `question`, `option.true`.
    pub query: String,
    pub layers: Vec<usize>,
    /// A flow to knock out, and where.
    pub knockout: Option<(Flow, Vec<usize>)>,
    pub out_dir: PathBuf,
    pub workers: usize,
    pub progress: bool,
    /// What the run reads (package, data, flows file), recorded in `attention_run.json`.
    pub inputs: InputDigests,
    /// Run only shard `(k, n)` of the samples.
    pub shard: Option<Shard>,
}

pub const ATTENTION_RUN_FILE: &str = "attention_run.json";

/// `attention_run.json`: what an attention folder was made with, for `vidflow merge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionRun {
    pub model: String,
    pub query: String,
    pub layers: Vec<usize>,
    /// The knocked-out flow and its layers, if any.
    pub knockout: Option<(String, Vec<usize>)>,
    pub inputs: InputDigests,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<usize>,
}

impl AttentionRun {
    pub fn read(dir: &std::path::Path) -> Result<Option<AttentionRun>> {
        read_settings(&dir.join(ATTENTION_RUN_FILE), "an attention run record")
    }

    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        write_settings(&dir.join(ATTENTION_RUN_FILE), self)
    }
}

fn records(
    sample: &Sample,
    settings: &AttentionSettings,
    variant: &str,
    maps: &[AttentionMap],
) -> Vec<AttentionRecord> {
    let knock = (variant == "knockout")
        .then_some(settings.knockout.as_ref())
        .flatten();
    maps.iter()
        .map(|m| AttentionRecord {
            sample_id: sample.id.clone(),
            task: sample.task.clone(),
            variant: variant.into(),
            flow: knock.map(|(f, _)| f.name.clone()),
            block_layers: knock.map(|(_, l)| l.clone()).unwrap_or_default(),
            query: settings.query.clone(),
            layer: m.layer,
            layer_1: m.layer + 1,
            video_mass: m.video_mass,
            other_mass: m.other_mass,
            frame_mass: m.frame_mass(),
            frames: m.frames.clone(),
        })
        .collect()
}

/// The maps of one prepared sample: baseline, then knockout (when set).
pub fn attention_sample(
    pkg: &Package,
    sample: &Sample,
    inputs: &SampleInputs,
    settings: &AttentionSettings,
) -> Result<Vec<AttentionRecord>> {
    let layout = &inputs.layout;
    let queries = layout.group(&settings.query)?.to_vec();
    let v = &pkg.manifest.video;
    let grid = VideoGrid {
        frame_starts: layout.groups.frames.iter().map(|f| f[0]).collect(),
        h: v.grid_h,
        w: v.grid_w,
    };
    let (embeds, rotary) = embed(pkg, inputs)?;
    let base = attention_maps(
        pkg,
        &embeds,
        &rotary,
        &grid,
        &queries,
        &settings.layers,
        None,
    )?;
    let mut out = records(sample, settings, "baseline", &base);
    if let Some((flow, block_layers)) = &settings.knockout {
        let resolved = ResolvedFlow::new(flow, layout)?;
        let knock = attention_maps(
            pkg,
            &embeds,
            &rotary,
            &grid,
            &queries,
            &settings.layers,
            Some(MapKnockout {
                flow: &resolved,
                layers: block_layers,
            }),
        )?;
        out.extend(records(sample, settings, "knockout", &knock));
    }
    Ok(out)
}

/// A sample id as a file name (heatmaps/<this>.png).
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn panel(title: String, records: &[AttentionRecord], variant: &str) -> Panel {
    Panel {
        title,
        maps: records
            .iter()
            .filter(|r| r.variant == variant)
            .map(|r| AttentionMap {
                layer: r.layer,
                frames: r.frames.clone(),
                video_mass: r.video_mass,
                other_mass: r.other_mass,
            })
            .collect(),
    }
}

/// Runs every sample; failed samples are reported on stderr and skipped. Returns the heatmap files.
pub fn run_attention(
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    samples: Vec<Sample>,
    settings: &AttentionSettings,
) -> Result<Vec<PathBuf>> {
    let out = &settings.out_dir;
    let _lock = FolderLock::acquire(out)?;
    clear_finished(out)?;
    AttentionRun {
        model: pkg.manifest.name.clone(),
        query: settings.query.clone(),
        layers: settings.layers.clone(),
        knockout: settings
            .knockout
            .as_ref()
            .map(|(f, l)| (f.name.clone(), l.clone())),
        inputs: settings.inputs.clone(),
        shard: settings.shard,
        missing_shards: Vec::new(),
    }
    .write(out)?;
    let samples = select_shard(samples, settings.shard);
    let total = samples.len();
    let mut first_failure: Option<String> = None;
    let heat_dir = out.join("heatmaps");
    std::fs::create_dir_all(&heat_dir).map_err(|e| Error::io(&heat_dir, e))?;
    let mut w = JsonlWriter::create(&out.join(ATTENTION_FILE))?;
    let progress = Progress::new(samples.len() as u64, "attention", settings.progress);
    let spec = pkg.manifest.video.clone();
    let mut files = Vec::new();
    prefetch_ordered(
        samples,
        settings.workers,
        settings.workers + 1,
        move |s: &Sample| prepare(&builder, &spec, s),
        |sample, prepared: Result<SampleInputs>| -> Result<()> {
            match prepared.and_then(|inp| attention_sample(pkg, &sample, &inp, settings)) {
                Ok(recs) => {
                    for r in &recs {
                        w.write(r)?;
                    }
                    w.flush()?;
                    let mut panels = vec![panel("baseline".into(), &recs, "baseline")];
                    if let Some((flow, layers)) = &settings.knockout {
                        let shown: Vec<String> =
                            layers.iter().map(|l| (l + 1).to_string()).collect();
                        panels.push(panel(
                            format!("knockout {} in L{}", flow.name, shown.join(",")),
                            &recs,
                            "knockout",
                        ));
                    }
                    let title = format!(
                        "attention of {} over video tokens: {}",
                        settings.query, sample.id
                    );
                    let (png, svg) =
                        write_heatmaps(&heat_dir.join(file_safe(&sample.id)), &title, &panels)?;
                    files.extend([png, svg]);
                }
                Err(e) => {
                    let msg = format!("sample {:?} failed: {e}", sample.id);
                    first_failure.get_or_insert_with(|| msg.clone());
                    progress.println(&msg);
                    if !settings.progress {
                        eprintln!("{msg}");
                    }
                }
            }
            progress.inc(1);
            Ok(())
        },
    )?;
    progress.finish();
    mark_finished(out, total)?;
    if files.is_empty() {
        return Err(Error::NothingScored(match first_failure {
            None => {
                "no sample to run: the list is empty, or every record in it is bad (each is named \
                     above)"
                    .into()
            }
            Some(first) => format!("all {total} samples failed; the first: {first}"),
        }));
    }
    Ok(files)
}
