//! The annotation files a data set is read from, for a run's content identity
//! (`report::InputDigests`): the same listing the loaders read, hidden files left out.

use std::path::PathBuf;

use super::{list_json_files, DataSpec};
use crate::error::Result;

impl DataSpec {
    /// The folder the files are named relative to, and the annotation files, sorted.
    pub fn annotation_files(&self) -> Result<(PathBuf, Vec<PathBuf>)> {
        Ok(match self {
            DataSpec::Tvbench(dir) => (dir.clone(), list_json_files(&dir.join("json"))?.0),
            DataSpec::Tomato(dir) => (dir.clone(), list_json_files(&dir.join("data"))?.0),
            DataSpec::Json(file) => (
                file.parent().map(PathBuf::from).unwrap_or_default(),
                vec![file.clone()],
            ),
        })
    }
}
