//! TOMATO: `data/<reasoning>.json` is an object keyed by id of `{question, options, answer (0-based),
//! key, demonstration_type, …}`; the video is `videos/<demonstration_type>/<key>.mp4`.

use std::path::Path;

use serde::Deserialize;

use super::{check_options, json_files, read_json, stem, BadRecord, Dataset};
use crate::answer::Sample;
use crate::error::Result;

#[derive(Deserialize)]
struct Record {
    question: String,
    options: Vec<String>,
    answer: i64,
    key: String,
    demonstration_type: String,
}

pub fn load_tomato(dir: &Path) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for file in json_files(&dir.join("data"))? {
        let task = stem(&file);
        // serde_json keeps object order only with a feature; sort ids for a stable order instead.
        let records: std::collections::BTreeMap<String, serde_json::Value> = read_json(&file)?;
        for (key_id, value) in records {
            let id = format!("{task}/{key_id}");
            let bad = |reason: String| BadRecord {
                task: task.clone(),
                id: id.clone(),
                reason,
            };
            let rec: Record = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    ds.bad
                        .push(bad(format!("{}: record {key_id}: {e}", file.display())));
                    continue;
                }
            };
            if let Err(r) = check_options(&rec.options) {
                ds.bad.push(bad(r));
                continue;
            }
            let answer = match usize::try_from(rec.answer) {
                Ok(a) if a < rec.options.len() => a,
                _ => {
                    ds.bad.push(bad(format!(
                        "answer {} is not an index of the {} options",
                        rec.answer,
                        rec.options.len()
                    )));
                    continue;
                }
            };
            let video = dir
                .join("videos")
                .join(&rec.demonstration_type)
                .join(format!("{}.mp4", rec.key));
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
                options: rec.options,
                answer: Some(answer),
                window: None,
            });
        }
    }
    Ok(ds)
}
