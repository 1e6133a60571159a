//! `vidflow merge` of evaluation shards: one folder whose records, summary and settings equal a
//! single-process run's. Besides the checks every merge makes ([`ShardSet::check`]), refused:
//! shards of different runs (settings or input digests differ), a torn line, a sample in two shards.

use std::collections::BTreeMap;
use std::path::Path;

use super::records::{read_records_strict, rewrite_records, EvalRecord, RECORDS_FILE};
use super::runner::ensure_scored;
use super::settings::EvalSettings;
use super::summary::{summarize, write_summary, Summary, SUMMARY_FILE};
use crate::data::BadRecord;
use crate::error::{Error, Result};
use crate::report::ShardSet;

fn settings_of(dir: &Path) -> Result<EvalSettings> {
    EvalSettings::read(dir)?.ok_or_else(|| Error::Data {
        path: dir.to_path_buf(),
        msg: "no settings.json: not an evaluation output folder".into(),
    })
}

/// Joins the shard directories of one evaluation into `out`.
pub fn merge_runs(shards: &[&Path], out: &Path, partial: bool) -> Result<Summary> {
    let set = ShardSet::check(
        shards,
        out,
        SUMMARY_FILE,
        |d| Ok(settings_of(d)?.shard),
        |d| d.join(SUMMARY_FILE).is_file(),
    )?;
    let mut base: Option<(EvalSettings, &Path)> = None;
    let mut records: Vec<(usize, EvalRecord, &Path)> = Vec::new();
    let mut load_errors: Vec<BadRecord> = Vec::new();
    for (&k, dir) in &set.dirs {
        let s = settings_of(dir)?.without_shard();
        match &base {
            None => base = Some((s, dir)),
            Some((b, first)) => {
                if let Some(why) = s.conflict(b) {
                    return Err(Error::Data {
                        path: dir.to_path_buf(),
                        msg: format!("not a shard of the same run as {}: {why}", first.display()),
                    });
                }
            }
        }
        for (j, r) in read_records_strict(&dir.join(RECORDS_FILE))?
            .into_iter()
            .enumerate()
        {
            records.push((set.global_index(k, j), r, dir));
        }
        let le = dir.join("load_errors.json");
        if le.exists() {
            let text = std::fs::read_to_string(&le).map_err(|e| Error::io(&le, e))?;
            let v: Vec<BadRecord> = serde_json::from_str(&text).map_err(|e| Error::Data {
                path: le.clone(),
                msg: format!("not a list of load errors: {e}"),
            })?;
            load_errors.extend(v);
        }
    }
    set.require_complete(partial)?;
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (_, r, dir) in &records {
        if let Some(first) = seen.insert(r.id.as_str(), dir) {
            let msg = if first == *dir {
                format!("sample {} has two records in this shard", r.id)
            } else {
                format!(
                    "sample {} is in this shard and in {}: shards of one run never share a sample",
                    r.id,
                    first.display()
                )
            };
            return Err(Error::Data {
                path: dir.join(RECORDS_FILE),
                msg,
            });
        }
    }
    // A single-process run writes records in sample order (retried samples last); merged records
    // follow the shards' interleaving, which is that order.
    records.sort_by_key(|(i, _, _)| *i);
    let records: Vec<EvalRecord> = records.into_iter().map(|(_, r, _)| r).collect();
    load_errors.sort_by(|a, b| (&a.task, &a.id).cmp(&(&b.task, &b.id)));
    let (mut settings, _) = base.expect("at least one shard");
    settings.missing_shards = set.missing.clone();
    if let Some(old) = EvalSettings::read(out)? {
        if old != settings {
            return Err(Error::Data {
                path: out.to_path_buf(),
                msg: "holds another run; merge into a new folder".into(),
            });
        }
    }
    settings.write(out)?;
    rewrite_records(&out.join(RECORDS_FILE), &records)?;
    std::fs::write(
        out.join("load_errors.json"),
        serde_json::to_string_pretty(&load_errors).expect("serialize") + "\n",
    )
    .map_err(|e| Error::io(out, e))?;
    let summary = summarize(&records, &load_errors);
    write_summary(out, &summary)?;
    ensure_scored(&summary)?;
    Ok(summary)
}
