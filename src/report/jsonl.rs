//! JSON Lines files: appended one record at a time and flushed, so an interrupted run leaves at
//! worst one cut-off final line, which reading drops (and reports) instead of failing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Appends records to a JSONL file.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn append(path: &Path) -> Result<JsonlWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one already serialised record (e.g. a line read back with [`read_jsonl`], kept
    /// verbatim: re-serialising parsed floats may change their last digit).
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.out, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// Creates or truncates `path`.
    pub fn create(path: &Path) -> Result<JsonlWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| Error::Data {
            path: self.path.clone(),
            msg: format!("cannot serialise a record: {e}"),
        })?;
        writeln!(self.out, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// Pushes buffered lines to the file (call at every point a resume may start from).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// The records of a JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonlContents<T> {
    pub records: Vec<T>,
    /// The text of each record's line.
    pub lines: Vec<String>,
    /// Whether a cut-off final line (no newline, not valid JSON) was dropped.
    pub dropped_tail: bool,
}

/// Reads every record of `path` (empty when the file does not exist). A line that does not parse
/// is an error naming the file and line, except a final line without a newline, which an
/// interrupted write leaves behind and which is dropped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<JsonlContents<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(JsonlContents {
                records: Vec::new(),
                lines: Vec::new(),
                dropped_tail: false,
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    let mut kept = Vec::with_capacity(lines.len());
    let mut dropped_tail = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(r) => {
                records.push(r);
                kept.push(line.to_string());
            }
            Err(_) if i + 1 == lines.len() && !complete => dropped_tail = true,
            Err(e) => {
                return Err(Error::Data {
                    path: path.to_path_buf(),
                    msg: format!("line {}: not a valid record: {e}", i + 1),
                })
            }
        }
    }
    Ok(JsonlContents {
        records,
        lines: kept,
        dropped_tail,
    })
}

/// As [`read_jsonl`], for a finished run's file that is about to be merged: a cut-off final line
/// is an error naming the file and line (dropping it would lose a sample).
pub fn read_jsonl_complete<T: DeserializeOwned>(path: &Path) -> Result<JsonlContents<T>> {
    let c = read_jsonl::<T>(path)?;
    if c.dropped_tail {
        return Err(Error::Data {
            path: path.to_path_buf(),
            msg: format!(
                "line {}: cut off (no newline at the end of the file): the run that wrote it was \
                 interrupted; resume it to finish it",
                c.lines.len() + 1
            ),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct R {
        a: u32,
    }

    #[test]
    fn appends_reads_and_drops_a_cut_off_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        assert!(read_jsonl::<R>(&p).unwrap().records.is_empty());
        let mut w = JsonlWriter::append(&p).unwrap();
        w.write(&R { a: 1 }).unwrap();
        w.write(&R { a: 2 }).unwrap();
        w.flush().unwrap();
        drop(w);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"a\": 3");
        std::fs::write(&p, &text).unwrap();
        let c = read_jsonl::<R>(&p).unwrap();
        assert_eq!(c.records, vec![R { a: 1 }, R { a: 2 }]);
        assert!(c.dropped_tail);
        std::fs::write(&p, "{\"a\": 1}\nbroken\n{\"a\": 2}\n").unwrap();
        let e = read_jsonl::<R>(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
