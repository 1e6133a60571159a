//! The JSON file in which a run folder records what it was made with (`settings.json`,
//! `run.json`, `lens_run.json`, …): absent means no run yet; one that does not parse is an error
//! naming the file and what it should have been; writes go through a renamed temporary file, so a
//! kill leaves the old or the new version whole.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Reads `path`; `what` names the expected content for the error ("a lens run record").
pub fn read_settings<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).map(Some).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: format!("not {what}: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_settings<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("settings serialise") + "\n";
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
