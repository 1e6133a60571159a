//! `vidflow merge` of lens shards: `lens.jsonl` and `lens_samples.jsonl`, lines kept verbatim, in
//! the order of the unsharded sample list; then the summary CSV and plots written from the merged
//! records, as one run writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::run::{
    write_lens_reports, LensRecord, LensRun, LensSample, LENS_FILE, LENS_RUN_FILE,
    LENS_SAMPLES_FILE,
};
use crate::error::{Error, Result};
use crate::report::{mark_finished, read_jsonl_complete, JsonlWriter, ShardSet, FINISHED_FILE};

/// A lens record and its line as the shard wrote it.
type RecordLine = (LensRecord, String);

fn run_of(dir: &Path) -> Result<LensRun> {
    LensRun::read(dir)?.ok_or_else(|| Error::Data {
        path: dir.to_path_buf(),
        msg: format!("no {LENS_RUN_FILE}: not a lens output folder"),
    })
}

/// Joins the shard folders of one lens run into `out`; returns the files written.
pub fn merge_lens_runs(shards: &[&Path], out: &Path, partial: bool) -> Result<Vec<PathBuf>> {
    let set = ShardSet::check(
        shards,
        out,
        FINISHED_FILE,
        |d| Ok(run_of(d)?.shard),
        |d| d.join(FINISHED_FILE).is_file(),
    )?;
    let mut base: Option<(LensRun, &Path)> = None;
    let mut samples: Vec<(usize, String, Vec<RecordLine>)> = Vec::new();
    for (&k, dir) in &set.dirs {
        let r = LensRun {
            shard: None,
            ..run_of(dir)?
        };
        match &base {
            None => base = Some((r, dir)),
            Some((b, first)) => {
                let why = r.inputs.conflict(&b.inputs).or_else(|| {
                    (r != *b).then(|| format!("its settings differ ({LENS_RUN_FILE})"))
                });
                if let Some(why) = why {
                    return Err(Error::Data {
                        path: dir.to_path_buf(),
                        msg: format!("not a shard of the same run as {}: {why}", first.display()),
                    });
                }
            }
        }
        let (recs, lines) = read_jsonl_complete::<LensSample>(&dir.join(LENS_SAMPLES_FILE))
            .map(|c| (c.records, c.lines))?;
        let (lens, lens_lines) = read_jsonl_complete::<LensRecord>(&dir.join(LENS_FILE))
            .map(|c| (c.records, c.lines))?;
        let mut by_sample: BTreeMap<String, Vec<RecordLine>> = BTreeMap::new();
        for (r, line) in lens.into_iter().zip(lens_lines) {
            by_sample
                .entry(r.sample_id.clone())
                .or_default()
                .push((r, line));
        }
        for (j, (r, line)) in recs.iter().zip(lines).enumerate() {
            let own = by_sample.remove(&r.sample_id).unwrap_or_default();
            samples.push((set.global_index(k, j), line, own));
        }
    }
    set.require_complete(partial)?;
    let mut ids = std::collections::BTreeSet::new();
    for (_, line, _) in &samples {
        let s: LensSample = serde_json::from_str(line).expect("read above");
        if !ids.insert(s.sample_id.clone()) {
            return Err(Error::Input(format!(
                "sample {:?} is in more than one shard: shards of one run never share a sample",
                s.sample_id
            )));
        }
    }
    samples.sort_by_key(|(i, _, _)| *i);
    let (mut run, _) = base.expect("at least one shard");
    run.missing_shards = set.missing.clone();
    if let Some(old) = LensRun::read(out)? {
        if old != run {
            return Err(Error::Data {
                path: out.to_path_buf(),
                msg: "holds another run; merge into a new folder".into(),
            });
        }
    }
    run.write(out)?;
    let mut rw = JsonlWriter::create(&out.join(LENS_FILE))?;
    let mut sw = JsonlWriter::create(&out.join(LENS_SAMPLES_FILE))?;
    let mut records = Vec::new();
    for (_, sample, own) in samples.iter() {
        for (r, l) in own {
            rw.write_line(l)?;
            records.push(r.clone());
        }
        sw.write_line(sample)?;
    }
    rw.flush()?;
    sw.flush()?;
    let files = write_lens_reports(out, &records, &run.categories, &run.title(), run.num_layers)?;
    mark_finished(out, samples.len())?;
    Ok(files)
}
