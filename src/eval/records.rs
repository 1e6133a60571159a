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

/// Reads the complete records of a run that this process is about to resume. A final line without
/// its newline (the run was killed while writing it) is dropped and the file truncated to the last
/// complete line; a malformed line elsewhere is an error naming its line number.
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
    parse_lines(path, &bytes[..complete])
}

/// Reads the records of a finished run without changing the file (for `merge`): a cut-off final
/// line is an error naming the file and line, since its sample would otherwise be lost.
pub fn read_records_strict(path: &Path) -> Result<Vec<EvalRecord>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        return Err(Error::Data {
            path: path.to_path_buf(),
            msg: format!(
                "line {}: cut off (no newline at the end of the file): the run that wrote it was \
                 interrupted; resume that shard to finish it",
                bytes.iter().filter(|&&b| b == b'\n').count() + 1
            ),
        });
    }
    parse_lines(path, &bytes)
}

fn parse_lines(path: &Path, bytes: &[u8]) -> Result<Vec<EvalRecord>> {
    let mut out = Vec::new();
    for (i, line) in bytes.lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: format!("line {}: not an evaluation record: {e}", i + 1),
        })?);
    }
    Ok(out)
}

/// Rewrites the records file with only `keep` (whose lines are kept verbatim), through a
/// temporary file renamed over the old one, so that a kill leaves either version whole.
pub fn rewrite_records(path: &Path, keep: &[EvalRecord]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut w = RecordWriter::create(&tmp)?;
        for r in keep {
            w.write(r)?;
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Appends records, one flushed line each.
pub struct RecordWriter {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl RecordWriter {
    /// Creates or truncates `path`.
    pub fn create(path: &Path) -> Result<RecordWriter> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(RecordWriter {
            file,
            path: path.to_path_buf(),
        })
    }

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
