//! TOMATO: `data/<reasoning>.json` is an object keyed by id of `{question, options, answer (0-based),
//! key, demonstration_type, …}`; the video is `videos/<demonstration_type>/<key>.mp4`. Other fields
//! are ignored. Samples come sorted by id within a file; a sample's id is `<reasoning>/<id>`.
//!
//! An id that appears more than once at the top level of a file is one bad record for that id, and
//! none of its records is used: parsers disagree on which one such a file means (most keep the
//! last). A record with a repeated key inside is a bad record.

use std::path::Path;

use serde_json::Value;

use super::fields::{index_range, show, Fields};
use super::strict_json::{Parsed, Place};
use super::{check_options, json_files, kind, read_json, stem, BadRecord, Dataset};
use crate::answer::Sample;
use crate::error::{Error, Result};

pub fn load_tomato(dir: &Path) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for file in json_files(&dir.join("data"))? {
        let task = stem(&file);
        let Parsed { value, duplicates } = read_json(&file)?;
        let records = match value {
            Value::Object(m) => m,
            other => {
                return Err(Error::Data {
                    path: file.clone(),
                    msg: format!(
                        "expected a JSON object of TOMATO records keyed by id, found {}",
                        kind(&other)
                    ),
                })
            }
        };
        // Sorted by id, whatever order the map keeps.
        let mut records: Vec<(String, Value)> = records.into_iter().collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        for (key_id, value) in records {
            let bad = |msg: String| BadRecord {
                task: task.clone(),
                id: format!("{task}/{key_id}"),
                reason: format!("{}: record {key_id:?}: {msg}", file.display()),
            };
            let repeated: Vec<String> = duplicates
                .iter()
                .filter(|d| d.place == Place::Top && d.key == key_id)
                .map(|d| d.to_string())
                .collect();
            if !repeated.is_empty() {
                ds.bad.push(bad(format!(
                    "{}: the id is used by {} records, so none of them is used",
                    repeated.join("; "),
                    repeated.len() + 1
                )));
                continue;
            }
            let inner = Place::Key(key_id.clone());
            if let Some(d) = duplicates.iter().find(|d| d.place == inner) {
                ds.bad.push(bad(d.to_string()));
                continue;
            }
            match record(dir, &task, &value) {
                Ok(mut sample) => {
                    sample.id = format!("{task}/{key_id}");
                    ds.samples.push(sample);
                }
                Err(msg) => ds.bad.push(bad(msg)),
            }
        }
    }
    Ok(ds)
}

/// One record as a sample (its id left empty), or why it cannot be scored.
fn record(dir: &Path, task: &str, value: &Value) -> std::result::Result<Sample, String> {
    let f = Fields::of(value)?;
    let question = f.string("question")?;
    let options = f.strings("options")?;
    let key = f.string("key")?;
    let demonstration_type = f.string("demonstration_type")?;
    for (field, value) in [("key", &key), ("demonstration_type", &demonstration_type)] {
        if value.trim().is_empty() {
            return Err(format!(
                "field {field} is {value:?} (expected a name: the video is \
                 videos/<demonstration_type>/<key>.mp4)"
            ));
        }
    }
    check_options(&options).map_err(|e| format!("field options: {e}"))?;
    let n = options.len();
    let answer = match f.get("answer") {
        None => {
            return Err(format!(
                "field answer is missing (expected an option index, {})",
                index_range(n)
            ))
        }
        Some(v) => match v.as_u64().and_then(|k| usize::try_from(k).ok()) {
            Some(k) if k < n => k,
            _ => {
                return Err(format!(
                    "field answer: {} is not an option index ({} for the {n} options)",
                    show(v),
                    index_range(n)
                ))
            }
        },
    };
    let video = dir
        .join("videos")
        .join(&demonstration_type)
        .join(format!("{key}.mp4"));
    if !video.is_file() {
        return Err(format!("video {} not found", video.display()));
    }
    Ok(Sample {
        id: String::new(),
        task: Some(task.to_owned()),
        video,
        question,
        options,
        answer: Some(answer),
        window: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOMATO folder with `data/count.json` holding `json` (written as is) and an empty video.
    fn folder(json: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        std::fs::create_dir_all(tmp.path().join("videos/human")).unwrap();
        std::fs::write(tmp.path().join("videos/human/k.mp4"), b"").unwrap();
        std::fs::write(tmp.path().join("data/count.json"), json).unwrap();
        tmp
    }

    fn rec(answer: &str) -> String {
        format!(
            r#"{{"question": "How many?", "options": ["1", "2", "3"], "answer": {answer}, "key": "k", "demonstration_type": "human"}}"#
        )
    }

    fn bad(ds: &Dataset) -> Vec<(&str, &str)> {
        ds.bad
            .iter()
            .map(|b| (b.id.as_str(), b.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_repeated_id_is_one_bad_record_and_neither_record_is_used() {
        let json = format!(
            "{{\n\"a\": {},\n\"b\": {},\n\"a\": {}\n}}",
            rec("0"),
            rec("1"),
            rec("2")
        );
        let ds = load_tomato(folder(&json).path()).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["count/b"]);
        let b = bad(&ds);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].0, "count/a");
        assert!(
            b[0].1.ends_with(
                "count.json: record \"a\": duplicate key \"a\" in object at line 4 column 3: \
                 the id is used by 2 records, so none of them is used"
            ),
            "{b:?}"
        );
    }

    #[test]
    fn a_repeated_field_inside_a_record_makes_it_bad() {
        let json = format!(
            "{{\"a\": {}, \"b\": {}}}",
            rec("0"),
            rec("1, \"answer\": 2")
        );
        let ds = load_tomato(folder(&json).path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        let b = bad(&ds);
        assert_eq!(b[0].0, "count/b");
        assert!(
            b[0].1
                .contains("record \"b\": duplicate key \"answer\" in object at line 1"),
            "{b:?}"
        );
    }

    #[test]
    fn answers_that_are_not_option_indices_are_named() {
        let json = format!(
            "{{\"neg\": {}, \"frac\": {}, \"text\": {}, \"big\": {}, \"ok\": {}}}",
            rec("-1"),
            rec("2.5"),
            rec("\"B\""),
            rec("3"),
            rec("2")
        );
        let ds = load_tomato(folder(&json).path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.samples[0].answer, Some(2));
        let b = bad(&ds);
        let want = [
            ("count/big", "3"),
            ("count/frac", "2.5"),
            ("count/neg", "-1"),
            ("count/text", "\"B\""),
        ];
        for ((id, reason), (want_id, v)) in b.iter().zip(want) {
            assert_eq!(*id, want_id);
            let tail =
                format!("field answer: {v} is not an option index (0 to 2 for the 3 options)");
            assert!(reason.ends_with(&tail), "{reason}");
        }
    }

    #[test]
    fn a_bom_is_accepted_and_repeated_options_are_bad() {
        let json = format!(
            "\u{feff}{{\"a\": {}, \"b\": {}}}",
            rec("0"),
            rec("0").replace(r#"["1", "2", "3"]"#, r#"["1", "2", "2"]"#)
        );
        let ds = load_tomato(folder(&json).path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert!(
            ds.bad[0]
                .reason
                .ends_with("field options: options 1 and 2 are both \"2\""),
            "{:?}",
            ds.bad
        );
    }

    #[test]
    fn a_file_that_is_not_an_object_is_an_error_naming_it() {
        let e = load_tomato(folder("[]").path()).unwrap_err().to_string();
        assert!(
            e.contains(
                "count.json: expected a JSON object of TOMATO records keyed by id, found a list"
            ),
            "{e}"
        );
    }
}
