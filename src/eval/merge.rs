//! `vidflow merge`: the shard folders of one evaluation joined into one folder whose records,
//! summary and settings equal a single-process run's. Refused: an output that is one of the inputs,
//! shards of different runs (settings or input digests differ), a shard still being written or
//! unfinished, a torn line, a sample in two shards, and an incomplete set of shards unless
//! `partial` (which the merged settings then record).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::records::{read_records_strict, rewrite_records, EvalRecord, RECORDS_FILE};
use super::runner::ensure_scored;
use super::settings::{shard_name, EvalSettings};
use super::summary::{summarize, write_summary, Summary, SUMMARY_FILE};
use crate::data::BadRecord;
use crate::error::{Error, Result};
use crate::report::FolderLock;

/// Joins the shard directories of one run into `out`.
pub fn merge_runs(shards: &[&Path], out: &Path, partial: bool) -> Result<Summary> {
    if shards.is_empty() {
        return Err(Error::Input("merge: no shard folders given".into()));
    }
    let out_id = identity(out)?;
    for dir in shards {
        if identity(dir)? == out_id {
            return Err(Error::Input(format!(
                "merge --out {} is also one of its input shards; write the merged run to a new folder",
                out.display()
            )));
        }
    }
    let _out_lock = FolderLock::acquire(out)?;
    let mut base: Option<(EvalSettings, &Path)> = None;
    let mut by_shard: BTreeMap<usize, &Path> = BTreeMap::new();
    let mut count = None;
    let mut records: Vec<(EvalRecord, &Path)> = Vec::new();
    let mut load_errors: Vec<BadRecord> = Vec::new();
    let mut _read_locks = Vec::new();
    for &dir in shards {
        _read_locks.push(FolderLock::acquire_shared(dir)?);
        let s = EvalSettings::read(dir)?.ok_or_else(|| Error::Data {
            path: dir.to_path_buf(),
            msg: "no settings.json: not an evaluation output folder".into(),
        })?;
        let Some((k, n)) = s.shard else {
            return Err(Error::Data {
                path: dir.to_path_buf(),
                msg: "this run was not sharded (no --shard K/N): there is nothing to merge it with"
                    .into(),
            });
        };
        match &base {
            None => base = Some((s.without_shard(), dir)),
            Some((b, first)) => {
                if let Some(why) = s.without_shard().conflict(b) {
                    return Err(Error::Data {
                        path: dir.to_path_buf(),
                        msg: format!("not a shard of the same run as {}: {why}", first.display()),
                    });
                }
            }
        }
        match count {
            None => count = Some(n),
            Some(m) if m != n => {
                return Err(Error::Data {
                    path: dir.to_path_buf(),
                    msg: format!("shard {k}/{n}, but the first shard is one of {m}"),
                })
            }
            Some(_) => {}
        }
        if let Some(other) = by_shard.insert(k, dir) {
            return Err(Error::Data {
                path: dir.to_path_buf(),
                msg: format!(
                    "shard {} is given twice (also {})",
                    shard_name(s.shard),
                    other.display()
                ),
            });
        }
        if !dir.join(SUMMARY_FILE).is_file() {
            return Err(Error::Data {
                path: dir.to_path_buf(),
                msg: format!(
                    "shard {} is unfinished (no {SUMMARY_FILE}): rerun its eval command to resume it",
                    shard_name(s.shard)
                ),
            });
        }
        records.extend(
            read_records_strict(&dir.join(RECORDS_FILE))?
                .into_iter()
                .map(|r| (r, dir)),
        );
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
    let n = count.expect("at least one shard");
    let missing: Vec<usize> = (1..=n).filter(|k| !by_shard.contains_key(k)).collect();
    if !missing.is_empty() && !partial {
        let names: Vec<String> = missing.iter().map(|k| format!("{k}/{n}")).collect();
        return Err(Error::Input(format!(
            "merge: shard {} of the run missing; give every shard's folder, or --partial to merge \
             only these (the merged settings.json then lists the missing shards)",
            names.join(", ")
        )));
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (r, dir) in &records {
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
    let mut records: Vec<EvalRecord> = records.into_iter().map(|(r, _)| r).collect();
    records.sort_by(|a, b| (&a.task, &a.id).cmp(&(&b.task, &b.id)));
    load_errors.sort_by(|a, b| (&a.task, &a.id).cmp(&(&b.task, &b.id)));
    let (mut settings, _) = base.expect("at least one shard");
    settings.missing_shards = missing;
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

/// A folder's identity for "is the output one of the inputs": its canonical path (its parent's,
/// plus its name, while it does not exist yet).
fn identity(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        return std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dir.file_name().unwrap_or_default();
    Ok(std::fs::canonicalize(parent).map_or_else(|_| dir.to_path_buf(), |p| p.join(name)))
}
