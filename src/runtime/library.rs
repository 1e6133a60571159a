//! Finding `libonnxruntime.so`: the set-up copies it from the PyPI wheel into `.ort/lib/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the ONNX Runtime shared library (e.g. the GPU build).
pub const ORT_LIBRARY_ENV: &str = "VIDFLOW_ORT_LIB";

const LIB_NAME: &str = "libonnxruntime.so";

/// Resolves the library: an explicit path, then `$VIDFLOW_ORT_LIB`, then `.ort/lib/` in the
/// current directory, beside the executable's project, or in the source tree this was built from.
pub fn locate_library(requested: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = requested {
        return existing(p, "--ort-lib");
    }
    if let Some(p) = std::env::var_os(ORT_LIBRARY_ENV) {
        return existing(Path::new(&p), ORT_LIBRARY_ENV);
    }
    let mut candidates = vec![PathBuf::from(".ort/lib").join(LIB_NAME)];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/vidflow or target/{debug,release}/deps/test-binary
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join(".ort/lib").join(LIB_NAME));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort/lib")
            .join(LIB_NAME),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
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
