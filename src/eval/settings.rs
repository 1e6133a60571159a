//! The settings of an evaluation run, stored beside its records: a resumed run must have the same
//! settings, and `vidflow merge` refuses to join shards whose settings differ.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::report::InputDigests;
pub use crate::report::{parse_shard, shard_name};

pub const SETTINGS_FILE: &str = "settings.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Package name from its manifest, and the directory it was read from.
    pub model: String,
    pub model_dir: String,
    pub data: String,
    pub tasks: Option<Vec<String>>,
    pub frames: usize,
    /// `full`, `pathways:FILE` or `random:RATIO`.
    pub mode: String,
    /// `--exit-layer K`: the answer read after layer K (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_layer: Option<usize>,
    pub seed: u64,
    pub limit: Option<usize>,
    /// `(k, n)`: this run holds samples with index % n == k - 1.
    pub shard: Option<(usize, usize)>,
    /// Content digests of the package, the pathway config and the annotation files: resuming or
    /// merging with any of them changed is refused.
    #[serde(default)]
    pub inputs: InputDigests,
    /// Set by `merge --partial`: the shards (K of N) that were missing from the merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<usize>,
}

impl EvalSettings {
    /// The settings that must agree between shards of one run (everything but the shard).
    pub fn without_shard(&self) -> EvalSettings {
        EvalSettings {
            shard: None,
            ..self.clone()
        }
    }

    /// The content digests of an evaluation's inputs: the package, the pathway config of a
    /// `pathways:FILE` mode, and the data set's annotation files.
    pub fn digest_inputs(model_dir: &Path, mode: &str, data: &DataSpec) -> Result<InputDigests> {
        let config = mode.strip_prefix("pathways:").map(Path::new);
        let extra: Vec<(&str, &Path)> = config.map(|f| ("pathways", f)).into_iter().collect();
        InputDigests::for_run(model_dir, data, &extra)
    }

    /// Why a run with these settings may not continue the run recorded as `old` (None: it may).
    pub fn conflict(&self, old: &EvalSettings) -> Option<String> {
        if let Some(why) = self.inputs.conflict(&old.inputs) {
            return Some(why);
        }
        let diffs = old.differences(self);
        (!diffs.is_empty()).then(|| format!("other settings ({})", diffs.join("; ")))
    }

    pub fn read(dir: &Path) -> Result<Option<EvalSettings>> {
        let path = dir.join(SETTINGS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Data {
                path: path.clone(),
                msg: format!("not an evaluation settings file: {e}"),
            })
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SETTINGS_FILE);
        let text = serde_json::to_string_pretty(self).expect("settings serialize");
        let tmp = dir.join("settings.json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// A field-by-field description of how two settings differ, for error messages.
    pub fn differences(&self, other: &EvalSettings) -> Vec<String> {
        let a = serde_json::to_value(self).expect("serialize");
        let b = serde_json::to_value(other).expect("serialize");
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        a.iter()
            .filter(|(k, v)| !IDENTITY_BY_CONTENT.contains(&k.as_str()) && b.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).cloned().unwrap_or_default()))
            .collect()
    }
}

/// Fields compared by the content digests in `inputs`, not by their text: a package or data set
/// moved elsewhere is the same input.
const IDENTITY_BY_CONTENT: [&str; 3] = ["inputs", "model_dir", "data"];
