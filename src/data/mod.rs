//! Benchmark data (design.md §5): TVBench and TOMATO folders in their native layouts, and plain
//! JSON sample lists. Loading never drops a record silently: records that cannot be scored are
//! returned as [`BadRecord`]s with the reason, for the run's summary. A reason names the file, the
//! record (its index in a list, its key in a TOMATO object), the field, the value found and what
//! was expected.
//!
//! What the loaders check, beyond each field's type:
//!
//! - **Ids are unique within a data set.** The first record with an id keeps it; a later record
//!   with the same id (a repeated TVBench `question_id`, a repeated `id` in a sample list, or a
//!   positional id that an explicit one already took) is a bad record named `ID#N`, N being its
//!   index in the file: `duplicate question_id "q7": record 0 has it already`.
//! - **Options are distinct** once the spaces around them are trimmed, and none is blank
//!   ([`check_options`]; `vidflow answer --option` uses the same [`check_option_texts`]).
//! - **No key is repeated in a JSON object** ([`strict_json`]): a repeated field inside a record
//!   makes that record bad; a repeated top-level id in a TOMATO file makes that id a bad record
//!   (neither of its records is used: other tools keep the last one, this one would keep the first,
//!   and which is meant cannot be told).
//! - A UTF-8 byte order mark at the start of a file is accepted and ignored.
//! - **Hidden files are skipped**: in a `json/` or `data/` folder, a `.json` file whose name starts
//!   with `.` (macOS `._x.json` AppleDouble files, editor backups) is not read, and one line on
//!   stderr names it: `skipped hidden file DIR/._x.json`.
//!
//! A file or folder that yields no samples and no bad records is returned as an empty
//! [`Dataset`]; the caller decides whether that is an error. A missing `json/` (TVBench) or
//! `data/` (TOMATO) folder, or one without annotation files, is an error.

mod annotations;
pub(crate) mod fields;
pub(crate) mod strict_json;
mod tomato;
mod tvbench;

use std::collections::HashMap;
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
        DataSpec::Json(file) => load_samples(file)?,
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

/// The first `n` samples of every task, tasks in name order.
pub fn first_per_task(samples: &[Sample], n: usize) -> Vec<Sample> {
    let mut by_task: std::collections::BTreeMap<String, Vec<Sample>> = Default::default();
    for smp in samples {
        let v = by_task.entry(task_of(smp)).or_default();
        if v.len() < n {
            v.push(smp.clone());
        }
    }
    by_task.into_values().flatten().collect()
}

/// The task of a sample (`""` when the source has none).
pub fn task_of(s: &Sample) -> String {
    s.task.clone().unwrap_or_default()
}

/// Reads and parses one dataset JSON file strictly (see [`strict_json`]), naming the file on
/// error.
pub(crate) fn read_json(path: &Path) -> Result<strict_json::Parsed> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    strict_json::parse(&bytes).map_err(|msg| Error::Data {
        path: path.to_path_buf(),
        msg,
    })
}

/// The top-level list of a parsed file, or an error saying what was found instead.
pub(crate) fn top_list(
    path: &Path,
    value: serde_json::Value,
    what: &str,
) -> Result<Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(Error::Data {
            path: path.to_path_buf(),
            msg: format!("expected a JSON list of {what}, found {}", kind(&other)),
        }),
    }
}

/// "an object", "a string", … for messages about a whole file.
pub(crate) fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The `*.json` files of a folder, sorted by name; an empty or missing folder is an error. Hidden
/// ones (name starting with `.`) are skipped, each named on stderr.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let (files, hidden) = list_json_files(dir)?;
    for h in &hidden {
        eprintln!("skipped hidden file {}", h.display());
    }
    if files.is_empty() {
        let note = if hidden.is_empty() {
            String::new()
        } else {
            format!(" (only {} hidden one(s), skipped)", hidden.len())
        };
        return Err(Error::Data {
            path: dir.to_path_buf(),
            msg: format!("no .json annotation files in this folder{note}"),
        });
    }
    Ok(files)
}

/// The `*.json` files of a folder, sorted by name: those to read, and the hidden ones.
fn list_json_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut hidden = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let is_hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_hidden {
            hidden.push(path);
        } else {
            files.push(path);
        }
    }
    files.sort();
    hidden.sort();
    Ok((files, hidden))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The first record to use each id, to keep sample ids unique within a data set.
#[derive(Default)]
pub(crate) struct IdClaims(HashMap<String, usize>);

impl IdClaims {
    /// Claims `id` for `record`; `Err(earlier)` when record `earlier` holds it already.
    pub fn claim(&mut self, id: &str, record: usize) -> std::result::Result<(), usize> {
        match self.0.get(id) {
            Some(&earlier) => Err(earlier),
            None => {
                self.0.insert(id.to_owned(), record);
                Ok(())
            }
        }
    }
}

/// The options count the prompt supports.
const OPTION_COUNTS: std::ops::RangeInclusive<usize> = 2..=8;

/// The options of a record: 2 to 8 of them, none blank, no two the same once trimmed.
pub fn check_options(options: &[String]) -> std::result::Result<(), String> {
    if !OPTION_COUNTS.contains(&options.len()) {
        return Err(format!(
            "{} options; expected {} to {}",
            options.len(),
            OPTION_COUNTS.start(),
            OPTION_COUNTS.end()
        ));
    }
    check_option_texts(options)
}

/// The texts of a list of options: none blank, no two the same once the spaces around them are
/// trimmed (`options 0 and 1 are both "red"`). Two equal options cannot both be answered, and a
/// text answer would match the first only.
pub fn check_option_texts(options: &[String]) -> std::result::Result<(), String> {
    if let Some((i, o)) = options
        .iter()
        .enumerate()
        .find(|(_, o)| o.trim().is_empty())
    {
        return Err(format!("option {i} is blank ({o:?})"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, o) in options.iter().enumerate() {
        let t = o.trim();
        if let Some(&i) = seen.get(t) {
            let note = if options[i] == *o {
                ""
            } else {
                " once the spaces around them are trimmed"
            };
            return Err(format!("options {i} and {j} are both {t:?}{note}"));
        }
        seen.insert(t, j);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_must_be_distinct_and_not_blank() {
        assert_eq!(check_options(&strings(&["red", "blue"])), Ok(()));
        assert_eq!(
            check_options(&strings(&["red", "red"])),
            Err("options 0 and 1 are both \"red\"".into())
        );
        assert_eq!(
            check_options(&strings(&["a", "red ", "b", " red"])),
            Err("options 1 and 3 are both \"red\" once the spaces around them are trimmed".into())
        );
        assert_eq!(
            check_options(&strings(&["a", "  "])),
            Err("option 1 is blank (\"  \")".into())
        );
        assert_eq!(
            check_options(&strings(&["a"])),
            Err("1 options; expected 2 to 8".into())
        );
        assert_eq!(check_option_texts(&strings(&["a"])), Ok(()));
    }

    #[test]
    fn hidden_json_files_are_skipped_and_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for name in [
            "b.json",
            "a.json",
            "._a.json",
            ".hidden.json",
            "notes.txt",
            ".DS_Store",
        ] {
            std::fs::write(d.join(name), b"\x00\x05\x16\x07").unwrap();
        }
        let (files, hidden) = list_json_files(d).unwrap();
        assert_eq!(files, [d.join("a.json"), d.join("b.json")]);
        assert_eq!(hidden, [d.join("._a.json"), d.join(".hidden.json")]);
        assert_eq!(json_files(d).unwrap(), files);

        let only_hidden = tempfile::tempdir().unwrap();
        std::fs::write(only_hidden.path().join("._x.json"), b"\x00").unwrap();
        let e = json_files(only_hidden.path()).unwrap_err().to_string();
        assert!(
            e.contains("no .json annotation files in this folder (only 1 hidden one(s), skipped)"),
            "{e}"
        );
        assert!(json_files(&d.join("nope")).is_err());
    }

    #[test]
    fn a_json_list_with_bad_records_loads_through_the_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.json");
        std::fs::write(
            &path,
            r#"[{"id": "a", "task": "t1", "video": "v.mp4", "question": "Q?", "options": ["x", "y"], "answer": -1},
                {"id": "b", "task": "t2", "video": "v.mp4", "question": "Q?", "options": ["x", "y"], "answer": 0}]"#,
        )
        .unwrap();
        let spec: DataSpec = format!("json:{}", path.display()).parse().unwrap();
        let ds = load(&spec, None).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.bad.len(), 1);
        let only_t1 = load(&spec, Some(&["t1".to_string()])).unwrap();
        assert!(only_t1.samples.is_empty());
        assert_eq!(only_t1.bad[0].id, "a");
    }
}
