//! Finding `libonnxruntime.so`: the set-up copies it from the PyPI wheel into `.ort/lib/`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the ONNX Runtime shared library (e.g. the GPU build).
pub const ORT_LIBRARY_ENV: &str = "VIDFLOW_ORT_LIB";

const LIB_NAME: &str = "libonnxruntime.so";

/// Which rule of [`locate_library`] chose the library, so `vidflow doctor` can say why that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// `--ort-lib`.
    Flag,
    /// `$VIDFLOW_ORT_LIB`.
    Env,
    /// `.ort/lib/` of the current directory.
    CurrentDir,
    /// `.ort/lib/` of a folder above the executable.
    BesideExecutable,
    /// `.ort/lib/` of the source tree this binary was built from.
    SourceTree,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Flag => "--ort-lib",
            LibrarySource::Env => ORT_LIBRARY_ENV,
            LibrarySource::CurrentDir => ".ort/lib/ in the current directory",
            LibrarySource::BesideExecutable => ".ort/lib/ above the executable",
            LibrarySource::SourceTree => ".ort/lib/ of the source tree vidflow was built from",
        })
    }
}

/// Resolves the library: an explicit path, then `$VIDFLOW_ORT_LIB`, then `.ort/lib/` in the
/// current directory, beside the executable's project, or in the source tree this was built from.
pub fn locate_library(requested: Option<&Path>) -> Result<PathBuf> {
    find_library(requested).map(|(p, _)| p)
}

/// [`locate_library`] with the rule that chose the library.
pub fn find_library(requested: Option<&Path>) -> Result<(PathBuf, LibrarySource)> {
    if let Some(p) = requested {
        return existing(p, "--ort-lib").map(|p| (p, LibrarySource::Flag));
    }
    if let Some(p) = std::env::var_os(ORT_LIBRARY_ENV) {
        return existing(Path::new(&p), ORT_LIBRARY_ENV).map(|p| (p, LibrarySource::Env));
    }
    let mut candidates = vec![(
        PathBuf::from(".ort/lib").join(LIB_NAME),
        LibrarySource::CurrentDir,
    )];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/vidflow or target/{debug,release}/deps/test-binary
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push((
                up.join(".ort/lib").join(LIB_NAME),
                LibrarySource::BesideExecutable,
            ));
        }
    }
    candidates.push((
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort/lib")
            .join(LIB_NAME),
        LibrarySource::SourceTree,
    ));
    candidates
        .into_iter()
        .find(|(p, _)| p.is_file())
        .ok_or_else(|| {
            Error::Runtime(format!(
                "cannot find {LIB_NAME}: run `make setup` (it copies the library from the onnxruntime \
                 wheel into .ort/lib/), or set {ORT_LIBRARY_ENV} to the library's path"
            ))
        })
}

fn existing(p: &Path, source: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(Error::Runtime(format!(
            "{source} names {}, which is not a file",
            p.display()
        )))
    }
}
