//! Benchmark data (design.md §5): TVBench and TOMATO folders in their native layouts, and plain
//! JSON sample lists. Loading never drops a record silently: records that cannot be scored are
//! returned as [`BadRecord`]s with the reason, for the run's summary.

mod tomato;
mod tvbench;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::answer::{load_samples, Sample};
use crate::error::{Error, Result};

pub use tomato::load_tomato;
pub use tvbench::load_tvbench;

/// A record that was read but cannot be scored, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadRecord {
    pub task: String,
    pub id: String,
    pub reason: String,
}

/// Samples ready to run, sorted by task then by their order in the source, plus the bad records.
#[derive(Debug, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub bad: Vec<BadRecord>,
}

/// Where the data comes from: `tvbench:DIR`, `tomato:DIR`, or `json:FILE` (also a bare `*.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum DataSpec {
    Tvbench(PathBuf),
    Tomato(PathBuf),
    Json(PathBuf),
}

impl std::str::FromStr for DataSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<DataSpec> {
        let (kind, path) = match s.split_once(':') {
            Some((k, p)) if ["tvbench", "tomato", "json"].contains(&k) => (k, p),
            _ if s.ends_with(".json") => ("json", s),
            _ => {
                return Err(Error::Input(format!(
                    "data `{s}`: expected tvbench:DIR, tomato:DIR or json:FILE"
                )))
            }
        };
        let path = PathBuf::from(path);
        Ok(match kind {
            "tvbench" => DataSpec::Tvbench(path),
            "tomato" => DataSpec::Tomato(path),
            _ => DataSpec::Json(path),
        })
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Tvbench(p) => write!(f, "tvbench:{}", p.display()),
            DataSpec::Tomato(p) => write!(f, "tomato:{}", p.display()),
            DataSpec::Json(p) => write!(f, "json:{}", p.display()),
        }
    }
}

/// Loads a dataset, keeping only `tasks` when given (an unknown task name is an error).
pub fn load(spec: &DataSpec, tasks: Option<&[String]>) -> Result<Dataset> {
    let mut ds = match spec {
        DataSpec::Tvbench(dir) => load_tvbench(dir)?,
        DataSpec::Tomato(dir) => load_tomato(dir)?,
        DataSpec::Json(file) => Dataset {
            samples: load_samples(file)?,
            bad: Vec::new(),
        },
    };
    if let Some(wanted) = tasks {
        let known: std::collections::BTreeSet<String> = ds
            .samples
            .iter()
            .map(task_of)
            .chain(ds.bad.iter().map(|b| b.task.clone()))
            .collect();
        if let Some(missing) = wanted.iter().find(|t| !known.contains(*t)) {
            return Err(Error::Input(format!(
                "task `{missing}` is not in {spec}; its tasks are {known:?}"
            )));
        }
        ds.samples.retain(|s| wanted.contains(&task_of(s)));
        ds.bad.retain(|b| wanted.contains(&b.task));
    }
    Ok(ds)
}

/// Loads the samples named by a `--data` argument (`tvbench:DIR`, `tomato:DIR`, `json:FILE` or a
/// `.json` file) for commands that take no task filter; bad records are reported on stderr.
pub fn load_for_command(arg: &str) -> Result<Vec<Sample>> {
    let spec: DataSpec = arg.parse()?;
    let ds = load(&spec, None)?;
    for b in &ds.bad {
        eprintln!("skipped {} [{}]: {}", b.id, b.task, b.reason);
    }
    Ok(ds.samples)
}

/// The task of a sample (`""` when the source has none).
pub fn task_of(s: &Sample) -> String {
    s.task.clone().unwrap_or_default()
}

/// Reads and parses one JSON file of a dataset folder, naming the file on error.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// The `*.json` files of a folder, sorted by name; an empty or missing folder is an error.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            msg: "no .json annotation files in this folder".into(),
        });
    }
    Ok(files)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The options count the prompt supports.
const OPTION_COUNTS: std::ops::RangeInclusive<usize> = 2..=8;

fn check_options(options: &[String]) -> std::result::Result<(), String> {
    if !OPTION_COUNTS.contains(&options.len()) {
        return Err(format!(
            "{} options; expected {} to {}",
            options.len(),
            OPTION_COUNTS.start(),
            OPTION_COUNTS.end()
        ));
    }
    if let Some(o) = options.iter().find(|o| o.trim().is_empty()) {
        return Err(format!("option {o:?} is blank"));
    }
    Ok(())
}
