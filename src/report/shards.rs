//! What every kind of sharded run shares: `--shard K/N` (samples whose index modulo N is K−1), the
//! marker a finished shard leaves, and the checks `vidflow merge` makes before it joins shard
//! folders — the output is none of the inputs, every shard is there once, finished, and not being
//! written — and the order that makes merged records equal a single-process run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lock::FolderLock;
use crate::error::{Error, Result};

/// Written by knockout, lens and attention runs when they finish (eval's is `summary.json`).
pub const FINISHED_FILE: &str = "finished.json";

/// A shard `(k, n)`, 1-based.
pub type Shard = (usize, usize);

/// `K/N`, as the command line writes it.
pub fn shard_name(shard: Option<Shard>) -> String {
    match shard {
        Some((k, n)) => format!("{k}/{n}"),
        None => "(unsharded)".into(),
    }
}

/// Parses `K/N` (1-based K).
pub fn parse_shard(s: &str) -> Result<Shard> {
    let bad = || Error::Input(format!("--shard {s}: expected K/N with 1 <= K <= N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Keeps the items of shard `(k, n)`: those whose index % n == k - 1.
pub fn select_shard<T>(items: Vec<T>, shard: Option<Shard>) -> Vec<T> {
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

/// Marks a run folder finished (removed again when a resumed run has work to do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub samples: usize,
}

pub fn mark_finished(dir: &Path, samples: usize) -> Result<()> {
    let path = dir.join(FINISHED_FILE);
    let text = serde_json::to_string(&Finished { samples }).expect("serialises") + "\n";
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

pub fn clear_finished(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(FINISHED_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// The shard folders of one run, checked for a merge, with the locks that keep them unwritten
/// while they are read.
pub struct ShardSet {
    /// `k -> folder`, every shard of the split that was given.
    pub dirs: BTreeMap<usize, PathBuf>,
    pub count: usize,
    /// Shards of the split that were not given (allowed only with `--partial`).
    pub missing: Vec<usize>,
    _locks: Vec<FolderLock>,
    _out_lock: FolderLock,
}

impl ShardSet {
    /// Checks `dirs` as the shards of one split to be merged into `out` (completeness is checked by
    /// [`ShardSet::require_complete`]). `shard_of` reads a folder's
    /// recorded shard (failing when it is not a run of the merged kind); `finished` says whether
    /// its run finished (`marker` names the file that says so, for the message).
    pub fn check(
        dirs: &[&Path],
        out: &Path,
        marker: &str,
        shard_of: impl Fn(&Path) -> Result<Option<Shard>>,
        finished: impl Fn(&Path) -> bool,
    ) -> Result<ShardSet> {
        if dirs.is_empty() {
            return Err(Error::Input("merge: no shard folders given".into()));
        }
        let out_id = identity(out)?;
        for dir in dirs {
            if identity(dir)? == out_id {
                return Err(Error::Input(format!(
                    "merge --out {} is also one of its input shards; write the merged run to a \
                     new folder",
                    out.display()
                )));
            }
        }
        let out_lock = FolderLock::acquire(out)?;
        let mut locks = Vec::new();
        let mut by_shard: BTreeMap<usize, PathBuf> = BTreeMap::new();
        let mut count = None;
        for &dir in dirs {
            locks.extend(FolderLock::acquire_shared(dir)?);
            let Some((k, n)) = shard_of(dir)? else {
                return Err(Error::Data {
                    path: dir.to_path_buf(),
                    msg: "this run was not sharded (no --shard K/N): there is nothing to merge it \
                          with"
                        .into(),
                });
            };
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
            if let Some(other) = by_shard.insert(k, dir.to_path_buf()) {
                return Err(Error::Data {
                    path: dir.to_path_buf(),
                    msg: format!("shard {k}/{n} is given twice (also {})", other.display()),
                });
            }
            if !finished(dir) {
                return Err(Error::Data {
                    path: dir.to_path_buf(),
                    msg: format!(
                        "shard {k}/{n} is unfinished (no {marker}): rerun its command to resume it"
                    ),
                });
            }
        }
        let n = count.expect("at least one shard");
        let missing: Vec<usize> = (1..=n).filter(|k| !by_shard.contains_key(k)).collect();
        Ok(ShardSet {
            dirs: by_shard,
            count: n,
            missing,
            _locks: locks,
            _out_lock: out_lock,
        })
    }

    /// Refuses an incomplete set of shards unless `partial` (call after checking the shards are
    /// of one run, so that a shard of another run is named as such, not as a missing one).
    pub fn require_complete(&self, partial: bool) -> Result<()> {
        if self.missing.is_empty() || partial {
            return Ok(());
        }
        let names: Vec<String> = self
            .missing
            .iter()
            .map(|k| format!("{k}/{}", self.count))
            .collect();
        Err(Error::Input(format!(
            "merge: shard {} of the run missing; give every shard's folder, or --partial to merge \
             only these (the merged settings then list the missing shards)",
            names.join(", ")
        )))
    }

    /// The position a shard's `j`-th sample had in the unsharded sample list.
    pub fn global_index(&self, k: usize, j: usize) -> usize {
        j * self.count + (k - 1)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_samples_and_global_indices_restore_their_order() {
        let items: Vec<usize> = (0..10).collect();
        let parts: Vec<Vec<usize>> = (1..=3)
            .map(|k| select_shard(items.clone(), Some((k, 3))))
            .collect();
        assert_eq!(parts, [vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (1..=3).map(|k| dir.path().join(format!("s{k}"))).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let shard_of = |d: &Path| -> Result<Option<Shard>> {
            let k = d.file_name().unwrap().to_string_lossy()[1..]
                .parse()
                .unwrap();
            Ok(Some((k, 3)))
        };
        let set = ShardSet::check(&refs, &dir.path().join("m"), "x", shard_of, |_| true).unwrap();
        for (k, part) in parts.iter().enumerate() {
            for (j, &item) in part.iter().enumerate() {
                assert_eq!(set.global_index(k + 1, j), item);
            }
        }
        drop(set);
        let set =
            ShardSet::check(&refs[..2], &dir.path().join("m"), "x", shard_of, |_| true).unwrap();
        let e = set.require_complete(false).unwrap_err().to_string();
        assert!(e.contains("shard 3/3") && e.contains("missing"), "{e}");
        assert!(set.require_complete(true).is_ok());
        drop(set);
        let e = ShardSet::check(&refs, &dir.path().join("m"), "done.json", shard_of, |d| {
            !d.ends_with("s2")
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("shard 2/3 is unfinished (no done.json)"), "{e}");
    }
}
