//! A multiple-choice video question, and the JSON list format that carries several of them.
//!
//! ```json
//! [{"id": "s1", "video": "clips/a.mp4", "question": "What happens first?",
//!   "options": ["The ball falls.", "The cup tips."], "answer": 1, "start": 0.5, "end": 4.0}]
//! ```
//! `video` is relative to the JSON file; `answer` is the 0-based option index or the option text;
//! `id`, `answer`, `start`, `end` and `task` are optional (a record without `id` gets its index).
//! Other fields are an error. [`load_samples`] returns the usable samples and the bad records.

use std::path::{Path, PathBuf};

use crate::data::fields::{index_range, show, Fields};
use crate::data::strict_json::{Parsed, Place};
use crate::data::{check_options, read_json, top_list, BadRecord, Dataset, IdClaims};
use crate::error::Result;
use crate::video::TimeWindow;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    pub task: Option<String>,
    pub video: PathBuf,
    pub question: String,
    pub options: Vec<String>,
    /// Ground-truth option index.
    pub answer: Option<usize>,
    pub window: Option<TimeWindow>,
}

/// Resolves an answer given as index or text to an option index.
pub fn answer_index(options: &[String], answer: &str) -> Option<usize> {
    options.iter().position(|o| o == answer)
}

pub fn window(start: Option<f64>, end: Option<f64>) -> Option<TimeWindow> {
    match (start, end) {
        (None, None) => None,
        (s, e) => Some(TimeWindow::new(
            s.unwrap_or(0.0),
            e.unwrap_or(f64::INFINITY),
        )),
    }
}

/// The fields a sample record may have.
const FIELDS: [&str; 8] = [
    "id", "task", "video", "question", "options", "answer", "start", "end",
];

/// Reads a JSON list of samples. A record that cannot be used is a [`BadRecord`] whose reason
/// names the file, the record and the field, and loading goes on; only a file that cannot be read
/// or is not a JSON list is an error. Ids are unique: a record whose id an earlier one holds is a
/// bad record named `ID#N`, N its index. Options must pass [`check_options`]; a repeated key in a
/// record makes it bad, and a UTF-8 byte order mark is accepted (see [`crate::data`]).
pub fn load_samples(path: &Path) -> Result<Dataset> {
    let Parsed { value, duplicates } = read_json(path)?;
    let records = top_list(path, value, "samples")?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut ds = Dataset::default();
    let mut ids = IdClaims::default();
    for (i, v) in records.into_iter().enumerate() {
        let field = |name: &str| match &v {
            serde_json::Value::Object(m) => m.get(name).and_then(|x| x.as_str()),
            _ => None,
        };
        let explicit = field("id");
        let id = explicit.map_or_else(|| format!("{i}"), str::to_owned);
        let task = field("task").unwrap_or_default().to_owned();
        let bad = |id: String, msg: String| BadRecord {
            task: task.clone(),
            id,
            reason: format!("{}: record {i}: {msg}", path.display()),
        };
        if let Err(earlier) = ids.claim(&id, i) {
            let msg = match explicit {
                Some(x) => format!("duplicate id {x:?}: record {earlier} has it already"),
                None => format!(
                    "its id {id:?} (from its position: it has no id) is the id of record \
                     {earlier} already"
                ),
            };
            ds.bad.push(bad(format!("{id}#{i}"), msg));
            continue;
        }
        if let Some(d) = duplicates.iter().find(|d| d.place == Place::Index(i)) {
            ds.bad.push(bad(id, d.to_string()));
            continue;
        }
        match sample_record(base, &v) {
            Ok(mut s) => {
                s.id = id;
                ds.samples.push(s);
            }
            Err(msg) => ds.bad.push(bad(id, msg)),
        }
    }
    Ok(ds)
}

/// One record as a sample (its id left empty), or why it cannot be used.
fn sample_record(base: &Path, v: &serde_json::Value) -> std::result::Result<Sample, String> {
    let f = Fields::of(v)?;
    f.deny_unknown(&FIELDS)?;
    f.opt_string("id")?;
    let task = f.opt_string("task")?;
    let video = f.string("video")?;
    if video.trim().is_empty() {
        return Err(format!(
            "field video is {video:?} (expected the path of a video file or a frame folder, \
             relative to the list)"
        ));
    }
    let question = f.string("question")?;
    let options = f.strings("options")?;
    let start = f.opt_seconds("start")?;
    let end = f.opt_seconds("end")?;
    check_options(&options).map_err(|e| format!("field options: {e}"))?;
    let n = options.len();
    let answer = match f.get("answer") {
        None => None,
        Some(serde_json::Value::String(t)) => {
            Some(answer_index(&options, t).ok_or_else(|| {
                format!("field answer: {t:?} is not among the options {options:?}")
            })?)
        }
        Some(a) => match a.as_u64().and_then(|k| usize::try_from(k).ok()) {
            Some(k) if k < n => Some(k),
            Some(k) => {
                return Err(format!(
                    "field answer: {k} is not an option index ({} for the {n} options)",
                    index_range(n)
                ))
            }
            None => {
                return Err(format!(
                    "field answer: {} is neither an option index ({}) nor an option text",
                    show(a),
                    index_range(n)
                ))
            }
        },
    };
    Ok(Sample {
        id: String::new(),
        task,
        video: base.join(video),
        question,
        options,
        answer,
        window: window(start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("samples.json");
        std::fs::write(&path, json).unwrap();
        (tmp, path)
    }

    fn rec(id: &str, options: &str, answer: &str) -> String {
        format!(
            r#"{{"id": "{id}", "video": "a.mp4", "question": "Q?", "options": {options}, "answer": {answer}}}"#
        )
    }

    fn reasons(ds: &Dataset) -> Vec<(&str, &str)> {
        ds.bad
            .iter()
            .map(|b| (b.id.as_str(), b.reason.as_str()))
            .collect()
    }

    #[test]
    fn bad_records_are_reported_and_the_good_ones_kept() {
        let json = format!(
            "[{},\n {},\n {},\n {},\n {},\n {}]",
            rec("s0", r#"["x", "y"]"#, "1"),
            rec("s1", r#"["x", "y"]"#, "-1"),
            rec("s2", r#"["x", "y"]"#, "2.5"),
            rec("s3", r#"["x", "y"]"#, "true"),
            rec("s4", r#"["x", "y"]"#, "5"),
            rec("s5", r#"["x", "y"]"#, r#""y""#),
        );
        let (_tmp, path) = list(&json);
        let ds = load_samples(&path).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s0", "s5"]);
        assert_eq!(ds.samples[1].answer, Some(1));
        assert_eq!(ds.samples[0].video, path.parent().unwrap().join("a.mp4"));
        let r = reasons(&ds);
        let file = path.display().to_string();
        assert_eq!(
            r,
            [
                ("s1", format!("{file}: record 1: field answer: -1 is neither an option index (0 to 1) nor an option text").as_str()),
                ("s2", format!("{file}: record 2: field answer: 2.5 is neither an option index (0 to 1) nor an option text").as_str()),
                ("s3", format!("{file}: record 3: field answer: true is neither an option index (0 to 1) nor an option text").as_str()),
                ("s4", format!("{file}: record 4: field answer: 5 is not an option index (0 to 1 for the 2 options)").as_str()),
            ]
        );
    }

    #[test]
    fn ids_are_unique_and_options_distinct() {
        let json = format!(
            "[{}, {}, {}, {}, {}]",
            rec("a", r#"["x", "y"]"#, "0"),
            rec("a", r#"["x", "y"]"#, "1"),
            rec("b", r#"["red", "red"]"#, "0"),
            r#"{"video": "a.mp4", "question": "Q?", "options": ["x", "y"]}"#,
            rec("3", r#"["x", "y"]"#, "0"),
        );
        let (_tmp, path) = list(&json);
        let ds = load_samples(&path).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "3"]);
        assert_eq!(ds.samples[0].answer, Some(0), "the first `a` is kept");
        let r = reasons(&ds);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].0, "a#1");
        assert!(r[0]
            .1
            .ends_with("record 1: duplicate id \"a\": record 0 has it already"));
        assert_eq!(r[1].0, "b");
        assert!(r[1]
            .1
            .ends_with("record 2: field options: options 0 and 1 are both \"red\""));
        // Record 3 has no id and so gets "3", which the explicit id of record 4 repeats.
        assert_eq!(r[2].0, "3#4");
        assert!(r[2]
            .1
            .ends_with("record 4: duplicate id \"3\": record 3 has it already"));
        assert_eq!(ds.samples[1].question, "Q?");
        assert_eq!(ds.samples[1].answer, None);
    }

    #[test]
    fn a_positional_id_taken_earlier_is_a_bad_record() {
        let json = format!(
            "[{}, {}]",
            rec("1", r#"["x", "y"]"#, "0"),
            r#"{"video": "a.mp4", "question": "Q?", "options": ["x", "y"]}"#,
        );
        let (_tmp, path) = list(&json);
        let ds = load_samples(&path).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.bad[0].id, "1#1");
        assert!(ds.bad[0].reason.contains("is the id of record 0 already"));
    }

    #[test]
    fn repeated_keys_unknown_fields_and_types_are_named() {
        let json = "\u{feff}[\n{\"id\": \"k\", \"video\": \"a.mp4\", \"question\": \"Q?\", \"options\": [\"x\", \"y\"], \"video\": \"b.mp4\"},\n\
                    {\"id\": \"u\", \"video\": \"a.mp4\", \"question\": \"Q?\", \"options\": [\"x\", \"y\"], \"colour\": 1},\n\
                    {\"id\": \"t\", \"task\": \"tk\", \"video\": \"a.mp4\", \"question\": 3, \"options\": [\"x\", \"y\"]},\n\
                    7]";
        let (_tmp, path) = list(json);
        let ds = load_samples(&path).unwrap();
        assert!(ds.samples.is_empty());
        let r = reasons(&ds);
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(
            r[0].1
                .ends_with("record 0: duplicate key \"video\" in object at line 2 column 78"),
            "{r:?}"
        );
        assert!(
            r[1].1
                .contains("record 1: unknown field \"colour\"; expected one of id, task"),
            "{r:?}"
        );
        assert!(
            r[2].1
                .ends_with("record 2: field question: expected a string, found 3"),
            "{r:?}"
        );
        assert_eq!(ds.bad[2].task, "tk");
        assert_eq!(
            r[3],
            (
                "3",
                format!("{}: record 3: expected an object, found 7", path.display()).as_str()
            )
        );
    }

    #[test]
    fn an_empty_list_is_an_empty_dataset_and_a_non_list_an_error() {
        let (_tmp, path) = list("[]");
        let ds = load_samples(&path).unwrap();
        assert!(ds.samples.is_empty() && ds.bad.is_empty());
        let (_tmp, path) = list(r#"{"id": "x"}"#);
        let e = load_samples(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("samples.json: expected a JSON list of samples, found an object"),
            "{e}"
        );
    }
}
