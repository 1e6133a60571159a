//! TVBench: `json/<task>.json` lists `{video, question, candidates, answer, start?, end?,
//! question_id?}`; the videos lie under `video/<task>/`.

use std::path::Path;

use serde::Deserialize;

use super::{check_options, json_files, read_json, stem, BadRecord, Dataset};
use crate::answer::{answer_index, window, Sample};
use crate::error::Result;

#[derive(Deserialize)]
struct Record {
    video: String,
    question: String,
    candidates: Vec<String>,
    answer: String,
    start: Option<f64>,
    end: Option<f64>,
    question_id: Option<serde_json::Value>,
}

pub fn load_tvbench(dir: &Path) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for file in json_files(&dir.join("json"))? {
        let task = stem(&file);
        let records: Vec<serde_json::Value> = read_json(&file)?;
        for (i, value) in records.into_iter().enumerate() {
            let fallback_id = format!("{task}/{i}");
            let rec: Record = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    ds.bad.push(BadRecord {
                        task: task.clone(),
                        id: fallback_id,
                        reason: format!("{}: record {i}: {e}", file.display()),
                    });
                    continue;
                }
            };
            let id = match &rec.question_id {
                Some(serde_json::Value::String(s)) => format!("{task}/{s}"),
                Some(v) => format!("{task}/{v}"),
                None => fallback_id,
            };
            let bad = |reason: String| BadRecord {
                task: task.clone(),
                id: id.clone(),
                reason,
            };
            let video = dir.join("video").join(&task).join(&rec.video);
            if let Err(r) = check_options(&rec.candidates) {
                ds.bad.push(bad(r));
                continue;
            }
            let Some(answer) = answer_index(&rec.candidates, &rec.answer) else {
                ds.bad.push(bad(format!(
                    "answer {:?} is not among the candidates {:?}",
                    rec.answer, rec.candidates
                )));
                continue;
            };
            if !video.is_file() {
                ds.bad
                    .push(bad(format!("video {} not found", video.display())));
                continue;
            }
            ds.samples.push(Sample {
                id,
                task: Some(task.clone()),
                video,
                question: rec.question,
                options: rec.candidates,
                answer: Some(answer),
                window: window(rec.start, rec.end),
            });
        }
    }
    Ok(ds)
}
