//! A multiple-choice video question, and the JSON list format that carries several of them.
//!
//! ```json
//! [{"id": "s1", "video": "clips/a.mp4", "question": "What happens first?",
//!   "options": ["The ball falls.", "The cup tips."], "answer": 1, "start": 0.5, "end": 4.0}]
//! ```
//! `video` is relative to the JSON file; `answer` is the 0-based option index or the option text;
//! `id`, `answer`, `start`, `end` and `task` are optional.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
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

#[derive(Deserialize)]
#[serde(untagged)]
enum AnswerField {
    Index(usize),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleRecord {
    id: Option<String>,
    task: Option<String>,
    video: PathBuf,
    question: String,
    options: Vec<String>,
    answer: Option<AnswerField>,
    start: Option<f64>,
    end: Option<f64>,
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

/// Reads a JSON list of samples; errors name the file, the record and the field.
pub fn load_samples(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        msg: format!("expected a JSON list of samples: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    records
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let bad = |msg: String| Error::Data {
                path: path.to_path_buf(),
                msg: format!("record {i}: {msg}"),
            };
            let r: SampleRecord = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
            let answer = match r.answer {
                None => None,
                Some(AnswerField::Index(k)) if k < r.options.len() => Some(k),
                Some(AnswerField::Index(k)) => {
                    return Err(bad(format!(
                        "answer index {k} is outside the {} options",
                        r.options.len()
                    )))
                }
                Some(AnswerField::Text(t)) => {
                    Some(answer_index(&r.options, &t).ok_or_else(|| {
                        bad(format!(
                            "answer {t:?} is not among the options {:?}",
                            r.options
                        ))
                    })?)
                }
            };
            Ok(Sample {
                id: r.id.unwrap_or_else(|| format!("{i}")),
                task: r.task,
                video: base.join(r.video),
                question: r.question,
                options: r.options,
                answer,
                window: window(r.start, r.end),
            })
        })
        .collect()
}
