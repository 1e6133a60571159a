//! TVBench: `json/<task>.json` lists `{video, question, candidates, answer, start?, end?,
//! question_id?}`; the videos lie under `video/<task>/`. Other fields are ignored.
//!
//! A sample's id is `<task>/<question_id>`, or `<task>/<index>` for a record without one. A
//! record whose id an earlier record of the file holds already is a bad record named `ID#N`
//! (the first keeps the id). A record with a repeated key is a bad record (see [`super`]).

use std::path::Path;

use serde_json::Value;

use super::fields::{show, Fields};
use super::strict_json::{Parsed, Place};
use super::{check_options, json_files, read_json, stem, top_list, BadRecord, Dataset, IdClaims};
use crate::answer::{answer_index, window, Sample};
use crate::error::Result;

pub fn load_tvbench(dir: &Path) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for file in json_files(&dir.join("json"))? {
        let task = stem(&file);
        let Parsed { value, duplicates } = read_json(&file)?;
        let records = top_list(&file, value, "TVBench records")?;
        let mut ids = IdClaims::default();
        for (i, value) in records.into_iter().enumerate() {
            let fallback_id = format!("{task}/{i}");
            let bad = |id: String, msg: String| BadRecord {
                task: task.clone(),
                id,
                reason: format!("{}: record {i}: {msg}", file.display()),
            };
            // The id first, so that every record, good or bad, claims one.
            let qid = match &value {
                Value::Object(m) => m
                    .get("question_id")
                    .filter(|q| q.is_string() || q.is_number()),
                _ => None,
            };
            let id = match qid {
                Some(Value::String(s)) => format!("{task}/{s}"),
                Some(q) => format!("{task}/{q}"),
                None => fallback_id.clone(),
            };
            if let Err(earlier) = ids.claim(&id, i) {
                let msg = match qid {
                    Some(q) => {
                        format!("duplicate question_id {q}: record {earlier} has it already")
                    }
                    None => format!(
                        "its id {id:?} (from its position: it has no question_id) is the id of \
                         record {earlier} already"
                    ),
                };
                ds.bad.push(bad(format!("{id}#{i}"), msg));
                continue;
            }
            if let Some(d) = duplicates.iter().find(|d| d.place == Place::Index(i)) {
                ds.bad.push(bad(id, d.to_string()));
                continue;
            }
            match record(dir, &task, &value) {
                Ok(mut sample) => {
                    sample.id = id;
                    ds.samples.push(sample);
                }
                Err(msg) => ds.bad.push(bad(id, msg)),
            }
        }
    }
    Ok(ds)
}

/// One record as a sample (its id left empty), or why it cannot be scored.
fn record(dir: &Path, task: &str, value: &Value) -> std::result::Result<Sample, String> {
    let f = Fields::of(value)?;
    if let Some(q) = f.get("question_id") {
        if !(q.is_string() || q.is_number()) {
            return Err(format!(
                "field question_id: expected a string or a number, found {}",
                show(q)
            ));
        }
    }
    let video = f.string("video")?;
    if video.trim().is_empty() {
        return Err(format!(
            "field video is {video:?} (expected a file name under video/{task}/)"
        ));
    }
    let question = f.string("question")?;
    let candidates = f.strings("candidates")?;
    let answer = match f.get("answer") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "field answer: expected the text of one of the candidates, found {}",
                show(other)
            ))
        }
        None => {
            return Err(
                "field answer is missing (expected the text of one of the candidates)".into(),
            )
        }
    };
    let start = f.opt_seconds("start")?;
    let end = f.opt_seconds("end")?;
    check_options(&candidates).map_err(|e| format!("field candidates: {e}"))?;
    let Some(answer) = answer_index(&candidates, &answer) else {
        return Err(format!(
            "field answer: {answer:?} is not among the candidates {candidates:?}"
        ));
    };
    let video = dir.join("video").join(task).join(&video);
    if !video.is_file() {
        return Err(format!("video {} not found", video.display()));
    }
    Ok(Sample {
        id: String::new(),
        task: Some(task.to_owned()),
        video,
        question,
        options: candidates,
        answer: Some(answer),
        window: window(start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TVBench folder with one task file holding `json` (written as is) and empty videos.
    fn folder(json: &[u8], videos: &[&str]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("json")).unwrap();
        std::fs::create_dir_all(tmp.path().join("video/t")).unwrap();
        for v in videos {
            std::fs::write(tmp.path().join("video/t").join(v), b"").unwrap();
        }
        std::fs::write(tmp.path().join("json/t.json"), json).unwrap();
        tmp
    }

    fn rec(qid: &str, candidates: &[&str], answer: &str) -> String {
        serde_json::json!({"video": "a.mp4", "question": "Q?", "candidates": candidates,
                           "answer": answer, "question_id": qid})
        .to_string()
    }

    fn reasons(ds: &Dataset) -> Vec<(String, String)> {
        ds.bad
            .iter()
            .map(|b| (b.id.clone(), b.reason.clone()))
            .collect()
    }

    #[test]
    fn a_repeated_question_id_is_a_bad_record_and_the_first_keeps_it() {
        let json = format!(
            "[{}, {}, {}, {}]",
            rec("q7", &["a", "b"], "a"),
            rec("q8", &["a", "b"], "b"),
            rec("q7", &["a", "b"], "b"),
            r#"{"video": "a.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a"}"#
        );
        let tmp = folder(json.as_bytes(), &["a.mp4"]);
        let ds = load_tvbench(tmp.path()).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["t/q7", "t/q8", "t/3"]);
        assert_eq!(ds.samples[0].answer, Some(0), "the first q7 is kept");
        let r = reasons(&ds);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "t/q7#2");
        assert!(
            r[0].1.ends_with(
                "t.json: record 2: duplicate question_id \"q7\": record 0 has it already"
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_positional_id_taken_by_a_question_id_is_a_bad_record() {
        let json = format!(
            "[{}, {}]",
            rec("1", &["a", "b"], "a"),
            r#"{"video": "a.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a"}"#
        );
        let tmp = folder(json.as_bytes(), &["a.mp4"]);
        let ds = load_tvbench(tmp.path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.bad[0].id, "t/1#1");
        assert!(
            ds.bad[0].reason.contains("is the id of record 0 already"),
            "{:?}",
            ds.bad
        );
    }

    #[test]
    fn repeated_candidates_and_repeated_keys_make_bad_records() {
        let json = format!(
            "[{},\n {},\n {}]",
            rec("q1", &["red", " red "], "red"),
            r#"{"video": "a.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a", "answer": "b", "question_id": "q2"}"#,
            rec("q3", &["a", "b"], "b"),
        );
        let tmp = folder(json.as_bytes(), &["a.mp4"]);
        let ds = load_tvbench(tmp.path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.samples[0].id, "t/q3");
        let r = reasons(&ds);
        assert_eq!(r[0].0, "t/q1");
        assert!(
            r[0].1.ends_with(
                "record 0: field candidates: options 0 and 1 are both \"red\" once the spaces around them are trimmed"
            ),
            "{r:?}"
        );
        assert_eq!(r[1].0, "t/q2");
        assert!(
            r[1].1
                .ends_with("record 1: duplicate key \"answer\" in object at line 2 column 87"),
            "{r:?}"
        );
    }

    #[test]
    fn a_bom_is_accepted_and_a_non_text_answer_is_named() {
        let json = format!(
            "\u{feff}[{}, {}]",
            rec("q1", &["a", "b"], "a"),
            r#"{"video": "a.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": 1, "question_id": "q2"}"#
        );
        let tmp = folder(json.as_bytes(), &["a.mp4"]);
        let ds = load_tvbench(tmp.path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert!(
            ds.bad[0].reason.ends_with(
                "record 1: field answer: expected the text of one of the candidates, found 1"
            ),
            "{:?}",
            ds.bad
        );
    }

    #[test]
    fn hidden_files_beside_the_annotations_are_skipped() {
        let tmp = folder(
            format!("[{}]", rec("q1", &["a", "b"], "a")).as_bytes(),
            &["a.mp4"],
        );
        // An AppleDouble file: binary, not JSON.
        std::fs::write(
            tmp.path().join("json/._t.json"),
            b"\x00\x05\x16\x07\x00\x02\x00\x00\xff",
        )
        .unwrap();
        let ds = load_tvbench(tmp.path()).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert!(ds.bad.is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_list_is_an_error_naming_it() {
        let tmp = folder(br#"{"a": 1}"#, &[]);
        let e = load_tvbench(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("t.json: expected a JSON list of TVBench records, found an object"),
            "{e}"
        );
        let tmp = folder(b"", &[]);
        assert!(load_tvbench(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("t.json"));
    }
}
