//! `vidflow merge` of attention shards: `attention.jsonl` lines kept verbatim in the order of the
//! unsharded sample list, and every shard's heatmaps copied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::run::{file_safe, AttentionRecord, AttentionRun, ATTENTION_FILE, ATTENTION_RUN_FILE};
use crate::error::{Error, Result};
use crate::report::{mark_finished, read_jsonl_complete, JsonlWriter, ShardSet, FINISHED_FILE};

fn run_of(dir: &Path) -> Result<AttentionRun> {
    AttentionRun::read(dir)?.ok_or_else(|| Error::Data {
        path: dir.to_path_buf(),
        msg: format!("no {ATTENTION_RUN_FILE}: not an attention output folder"),
    })
}

/// Joins the shard folders of one attention run into `out`; returns the heatmap files.
pub fn merge_attention_runs(shards: &[&Path], out: &Path, partial: bool) -> Result<Vec<PathBuf>> {
    let set = ShardSet::check(
        shards,
        out,
        FINISHED_FILE,
        |d| Ok(run_of(d)?.shard),
        |d| d.join(FINISHED_FILE).is_file(),
    )?;
    let mut base: Option<(AttentionRun, &Path)> = None;
    let mut samples: Vec<(usize, String, Vec<String>, PathBuf)> = Vec::new();
    for (&k, dir) in &set.dirs {
        let r = AttentionRun {
            shard: None,
            ..run_of(dir)?
        };
        match &base {
            None => base = Some((r, dir)),
            Some((b, first)) => {
                let why = r.inputs.conflict(&b.inputs).or_else(|| {
                    (r != *b).then(|| format!("its settings differ ({ATTENTION_RUN_FILE})"))
                });
                if let Some(why) = why {
                    return Err(Error::Data {
                        path: dir.to_path_buf(),
                        msg: format!("not a shard of the same run as {}: {why}", first.display()),
                    });
                }
            }
        }
        let path = dir.join(ATTENTION_FILE);
        let c = read_jsonl_complete::<AttentionRecord>(&path)?;
        let mut order: Vec<String> = Vec::new();
        let mut by_sample: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (r, line) in c.records.iter().zip(c.lines) {
            if !by_sample.contains_key(&r.sample_id) {
                order.push(r.sample_id.clone());
            }
            by_sample.entry(r.sample_id.clone()).or_default().push(line);
        }
        for (j, id) in order.into_iter().enumerate() {
            let lines = by_sample.remove(&id).unwrap_or_default();
            samples.push((set.global_index(k, j), id, lines, dir.clone()));
        }
    }
    set.require_complete(partial)?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some((_, id, _, _)) = samples
        .iter()
        .find(|(_, id, _, _)| !seen.insert(id.clone()))
    {
        return Err(Error::Input(format!(
            "sample {id:?} is in more than one shard: shards of one run never share a sample"
        )));
    }
    samples.sort_by_key(|(i, _, _, _)| *i);
    let (mut run, _) = base.expect("at least one shard");
    run.missing_shards = set.missing.clone();
    if let Some(old) = AttentionRun::read(out)? {
        if old != run {
            return Err(Error::Data {
                path: out.to_path_buf(),
                msg: "holds another run; merge into a new folder".into(),
            });
        }
    }
    run.write(out)?;
    let heat = out.join("heatmaps");
    std::fs::create_dir_all(&heat).map_err(|e| Error::io(&heat, e))?;
    let mut w = JsonlWriter::create(&out.join(ATTENTION_FILE))?;
    let mut files = Vec::new();
    for (_, id, lines, dir) in &samples {
        for l in lines {
            w.write_line(l)?;
        }
        for ext in ["png", "svg"] {
            let name = format!("{}.{ext}", file_safe(id));
            let (from, to) = (dir.join("heatmaps").join(&name), heat.join(&name));
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            files.push(to);
        }
    }
    w.flush()?;
    mark_finished(out, samples.len())?;
    Ok(files)
}
