//! What a run was computed from, by content: a BLAKE3 digest of every input file that changes its
//! results (the package, pathway and flow configs, keyword lists, the data set's annotation files).
//! A run folder records them; resuming, or merging shards, with any of them changed is refused and
//! names the file, so two versions of an input never end up mixed in one result. Paths are not
//! part of the identity: the same files moved elsewhere resume; a file edited in place does not.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;
use crate::error::{Error, Result};

/// Digests keyed by `role:name` (`package:layers/layer_00.onnx`, `pathways:cfg.yaml`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputDigests {
    #[serde(flatten)]
    digests: BTreeMap<String, String>,
    /// Where each input was read from in this process, for messages (not part of the identity).
    #[serde(skip)]
    paths: BTreeMap<String, PathBuf>,
}

impl PartialEq for InputDigests {
    fn eq(&self, other: &InputDigests) -> bool {
        self.digests == other.digests
    }
}

impl InputDigests {
    pub fn new() -> InputDigests {
        InputDigests::default()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// One file under `role`, keyed by its file name.
    pub fn add_file(&mut self, role: &str, path: &Path) -> Result<()> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        self.insert(format!("{role}:{name}"), path)
    }

    /// Files under `role`, keyed by their path relative to `base`.
    pub fn add_files(&mut self, role: &str, base: &Path, files: &[PathBuf]) -> Result<()> {
        for f in files {
            let rel = f.strip_prefix(base).unwrap_or(f);
            self.insert(format!("{role}:{}", rel.display()), f)?;
        }
        Ok(())
    }

    /// Every file of a model package (graphs, external weights, manifest, tokenizer), except its
    /// `golden/` reference tensors and hidden files, which no result depends on.
    pub fn add_package(&mut self, dir: &Path) -> Result<()> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        files.sort();
        self.add_files("package", dir, &files)
    }

    /// The inputs of a run over a data set: the package, the data's annotation files, and each
    /// `(role, file)` of `extra` (a pathway config, a flows file, a keyword list).
    pub fn for_run(model_dir: &Path, data: &DataSpec, extra: &[(&str, &Path)]) -> Result<Self> {
        let mut inputs = InputDigests::new();
        inputs.add_package(model_dir)?;
        let (base, files) = data.annotation_files()?;
        inputs.add_files("data", &base, &files)?;
        for (role, file) in extra {
            inputs.add_file(role, file)?;
        }
        Ok(inputs)
    }

    fn insert(&mut self, key: String, path: &Path) -> Result<()> {
        self.digests.insert(key.clone(), digest_file(path)?);
        self.paths.insert(key, path.to_path_buf());
        Ok(())
    }

    /// Why a run recorded with `recorded` may not continue with these inputs, if it may not.
    pub fn conflict(&self, recorded: &InputDigests) -> Option<String> {
        let name = |key: &str| match self.paths.get(key) {
            Some(p) => format!("{} ({key})", p.display()),
            None => key.to_string(),
        };
        for (key, old) in &recorded.digests {
            match self.digests.get(key) {
                Some(new) if new != old => {
                    return Some(format!(
                        "{} has changed since the run started (its content digest differs)",
                        name(key)
                    ))
                }
                Some(_) => {}
                None => return Some(format!("input {key} of the run is not among this run's")),
            }
        }
        self.digests
            .keys()
            .find(|k| !recorded.digests.contains_key(*k))
            .map(|k| format!("{} is an input the run did not have", name(k)))
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if dir == base && name == "golden" {
                continue;
            }
            walk(base, &path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// `blake3:<hex>` of a file's bytes, read in large chunks hashed on every core.
pub fn digest_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 24];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update_rayon(&buf[..n]);
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_content_not_paths() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("layers")).unwrap();
            std::fs::create_dir_all(d.join("golden")).unwrap();
            std::fs::write(d.join("model.yaml"), "name: x\n").unwrap();
            std::fs::write(d.join("layers/l0.onnx"), [1u8, 2, 3]).unwrap();
        }
        std::fs::write(b.path().join("golden/ref.npy"), "only in b").unwrap();
        let of = |d: &Path| {
            let mut i = InputDigests::new();
            i.add_package(d).unwrap();
            i
        };
        let (da, db) = (of(a.path()), of(b.path()));
        assert_eq!(
            da, db,
            "moved files with the same content are the same input"
        );
        assert_eq!(da.conflict(&db), None);
        std::fs::write(b.path().join("layers/l0.onnx"), [1u8, 2, 4]).unwrap();
        let changed = of(b.path());
        let why = changed.conflict(&da).unwrap();
        assert!(
            why.contains("layers/l0.onnx") && why.contains("changed"),
            "{why}"
        );
        std::fs::write(b.path().join("layers/l1.onnx"), [0u8]).unwrap();
        let why = of(b.path()).conflict(&changed).unwrap();
        assert!(
            why.contains("l1.onnx") && why.contains("did not have"),
            "{why}"
        );
    }

    #[test]
    fn the_digest_is_blake3_of_the_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        // BLAKE3("abc") from the reference test vectors.
        assert_eq!(
            digest_file(&p).unwrap(),
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }
}
