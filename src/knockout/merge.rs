//! `vidflow merge` of knockout shards: `knockouts.jsonl` and `samples.jsonl` of every shard, lines
//! kept verbatim, in the order of the unsharded sample list, under the shards' common `run.json`.
//! The reports (summary CSVs, plots) are then written from the merged records, as for one run.

use std::collections::BTreeMap;
use std::path::Path;

use super::record::{KnockoutRecord, SampleRecord};
use super::run::{read_manifest, RunManifest, KNOCKOUTS_FILE, RUN_FILE, SAMPLES_FILE};
use crate::error::{Error, Result};
use crate::report::{read_jsonl_complete, JsonlWriter, ShardSet, FINISHED_FILE};

fn manifest_of(dir: &Path) -> Result<RunManifest> {
    read_manifest(&dir.join(RUN_FILE))?.ok_or_else(|| Error::Data {
        path: dir.to_path_buf(),
        msg: format!("no {RUN_FILE}: not a knockout run folder"),
    })
}

/// Joins the shard folders of one knockout run into `out`; returns the number of samples.
pub fn merge_knockout_runs(shards: &[&Path], out: &Path, partial: bool) -> Result<usize> {
    let set = ShardSet::check(
        shards,
        out,
        FINISHED_FILE,
        |d| Ok(manifest_of(d)?.shard),
        |d| d.join(FINISHED_FILE).is_file(),
    )?;
    let mut base: Option<(RunManifest, &Path)> = None;
    // (global index, sample line, its knockout lines)
    let mut samples: Vec<(usize, String, Vec<String>)> = Vec::new();
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for (&k, dir) in &set.dirs {
        let m = RunManifest {
            shard: None,
            ..manifest_of(dir)?
        };
        match &base {
            None => base = Some((m, dir)),
            Some((b, first)) => {
                let why = m
                    .inputs
                    .conflict(&b.inputs)
                    .or_else(|| (m != *b).then(|| "its settings differ (run.json)".to_string()));
                if let Some(why) = why {
                    return Err(Error::Data {
                        path: dir.to_path_buf(),
                        msg: format!("not a shard of the same run as {}: {why}", first.display()),
                    });
                }
            }
        }
        let (recs, lines) = read_jsonl_complete::<SampleRecord>(&dir.join(SAMPLES_FILE))
            .map(|c| (c.records, c.lines))?;
        let (knocks, knock_lines) =
            read_jsonl_complete::<KnockoutRecord>(&dir.join(KNOCKOUTS_FILE))
                .map(|c| (c.records, c.lines))?;
        let mut by_sample: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (r, line) in knocks.iter().zip(knock_lines) {
            by_sample
                .entry(r.sample_id.as_str())
                .or_default()
                .push(line);
        }
        for (j, (r, line)) in recs.iter().zip(lines).enumerate() {
            if let Some(other) = seen.insert(r.sample_id.clone(), dir) {
                return Err(Error::Data {
                    path: dir.join(SAMPLES_FILE),
                    msg: format!(
                        "sample {:?} is also in {}: shards of one run never share a sample",
                        r.sample_id,
                        other.display()
                    ),
                });
            }
            let knocks = by_sample.remove(r.sample_id.as_str()).unwrap_or_default();
            samples.push((set.global_index(k, j), line, knocks));
        }
        if let Some(orphan) = by_sample.keys().next() {
            return Err(Error::Data {
                path: dir.join(KNOCKOUTS_FILE),
                msg: format!(
                    "knockout records of sample {orphan:?}, which samples.jsonl does not list"
                ),
            });
        }
    }
    set.require_complete(partial)?;
    samples.sort_by_key(|(i, _, _)| *i);
    let (mut manifest, _) = base.expect("at least one shard");
    manifest.missing_shards = set.missing.clone();
    let manifest_path = out.join(RUN_FILE);
    if let Some(old) = read_manifest(&manifest_path)? {
        if old != manifest {
            return Err(Error::Data {
                path: out.to_path_buf(),
                msg: "holds another run; merge into a new folder".into(),
            });
        }
    }
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&manifest_path, text).map_err(|e| Error::io(&manifest_path, e))?;
    let mut kw = JsonlWriter::create(&out.join(KNOCKOUTS_FILE))?;
    let mut sw = JsonlWriter::create(&out.join(SAMPLES_FILE))?;
    for (_, sample, knocks) in &samples {
        for l in knocks {
            kw.write_line(l)?;
        }
        sw.write_line(sample)?;
    }
    kw.flush()?;
    sw.flush()?;
    crate::report::mark_finished(out, samples.len())?;
    Ok(samples.len())
}
