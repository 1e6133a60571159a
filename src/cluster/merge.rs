//! `vidflow merge` for every kind of run: the kind is read from the first shard's settings file,
//! and every shard must be of that kind.

use std::path::{Path, PathBuf};

use crate::attention::{merge_attention_runs, ATTENTION_RUN_FILE};
use crate::error::{Error, Result};
use crate::eval::{merge_runs, Summary, SETTINGS_FILE};
use crate::knockout::{merge_knockout_runs, RUN_FILE};
use crate::lens::{merge_lens_runs, LENS_RUN_FILE};

/// The kinds of run a folder can hold, by the settings file that marks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Eval,
    Knockout,
    Lens,
    Attention,
}

impl RunKind {
    pub const ALL: [RunKind; 4] = [
        RunKind::Eval,
        RunKind::Knockout,
        RunKind::Lens,
        RunKind::Attention,
    ];

    pub fn settings_file(self) -> &'static str {
        match self {
            RunKind::Eval => SETTINGS_FILE,
            RunKind::Knockout => RUN_FILE,
            RunKind::Lens => LENS_RUN_FILE,
            RunKind::Attention => ATTENTION_RUN_FILE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RunKind::Eval => "eval",
            RunKind::Knockout => "knockout",
            RunKind::Lens => "lens",
            RunKind::Attention => "attention",
        }
    }

    /// The kind of run `dir` holds.
    pub fn of(dir: &Path) -> Result<RunKind> {
        let found: Vec<RunKind> = RunKind::ALL
            .into_iter()
            .filter(|k| dir.join(k.settings_file()).is_file())
            .collect();
        match found.as_slice() {
            [k] => Ok(*k),
            [] => Err(Error::Data {
                path: dir.to_path_buf(),
                msg: format!(
                    "not a vidflow run folder: none of {} is in it",
                    RunKind::ALL.map(|k| k.settings_file()).join(", ")
                ),
            }),
            _ => Err(Error::Data {
                path: dir.to_path_buf(),
                msg:
                    "holds the settings of more than one kind of run; give each run its own folder"
                        .into(),
            }),
        }
    }
}

/// What a merge wrote.
#[derive(Debug)]
pub enum MergeOutcome {
    Eval(Summary),
    Knockout {
        samples: usize,
        reports: crate::report::ReportFiles,
    },
    Lens {
        files: Vec<PathBuf>,
    },
    Attention {
        files: Vec<PathBuf>,
    },
}

/// Joins the shard folders of one run (of any kind) into `out`.
pub fn merge(shards: &[&Path], out: &Path, partial: bool) -> Result<MergeOutcome> {
    let first = shards
        .first()
        .ok_or_else(|| Error::Input("merge: no shard folders given".into()))?;
    let kind = RunKind::of(first)?;
    for dir in &shards[1..] {
        let k = RunKind::of(dir)?;
        if k != kind {
            return Err(Error::Data {
                path: dir.to_path_buf(),
                msg: format!(
                    "holds a {} run, but {} holds a {} run: merge joins shards of one run",
                    k.name(),
                    first.display(),
                    kind.name()
                ),
            });
        }
    }
    Ok(match kind {
        RunKind::Eval => MergeOutcome::Eval(merge_runs(shards, out, partial)?),
        RunKind::Knockout => MergeOutcome::Knockout {
            samples: merge_knockout_runs(shards, out, partial)?,
            reports: crate::report::write_knockout_reports(out)?,
        },
        RunKind::Lens => MergeOutcome::Lens {
            files: merge_lens_runs(shards, out, partial)?,
        },
        RunKind::Attention => MergeOutcome::Attention {
            files: merge_attention_runs(shards, out, partial)?,
        },
    })
}
