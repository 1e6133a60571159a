//! One JSON line per sample. Lines are appended and flushed one by one, so a killed run leaves at
//! most one incomplete last line, which resuming discards.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const RECORDS_FILE: &str = "records.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub id: String,
    pub task: String,
    /// False when the sample could not be scored (its `error` says why); never counted in accuracy.
    pub scored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probs: Vec<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub option_share: Vec<f32>,
    /// Open attention edges summed over layers, and the full causal count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edges_open: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edges_total: Option<u64>,
}

/// Reads the complete records of a run. A final line without its newline (the run was killed while
/// writing it) is dropped and the file truncated to the last complete line; a malformed line
/// elsewhere is an error naming its line number.
pub fn read_records(path: &Path) -> Result<Vec<EvalRecord>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.set_len(complete as u64).map_err(|e| Error::io(path, e))?;
    }
    let mut out = Vec::new();
    for (i, line) in bytes[..complete].lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: format!("line {}: {e}", i + 1),
        })?);
    }
    Ok(out)
}

/// Appends records, one flushed line each.
pub struct RecordWriter {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl RecordWriter {
    pub fn append(path: &Path) -> Result<RecordWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(RecordWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, rec: &EvalRecord) -> Result<()> {
        let mut line = serde_json::to_string(rec).expect("record serializes");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
