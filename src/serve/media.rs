//! Where a request's video comes from: a path confined to the served root (no `..` escapes, no
//! symbolic links out of it), or the file's bytes in a `data:` URL, written to a private temporary
//! file for the decoder and removed after the request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;

use super::api::ApiError;

/// A video ready for the decoder; an uploaded one is deleted when this is dropped.
#[derive(Debug)]
pub struct VideoSource {
    path: PathBuf,
    temporary: bool,
}

impl VideoSource {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for VideoSource {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Resolves video references against one root.
#[derive(Debug)]
pub struct Media {
    /// Canonical root; `None` serves uploads only.
    root: Option<PathBuf>,
    /// Private folder for uploaded bytes.
    uploads: PathBuf,
    next: AtomicU64,
}

impl Media {
    /// `root` must exist; uploads go to a fresh folder under `uploads_parent`.
    pub fn new(root: Option<&Path>, uploads_parent: &Path) -> crate::Result<Media> {
        let root = root
            .map(|r| {
                std::fs::canonicalize(r).map_err(|e| {
                    crate::Error::Input(format!(
                        "--video-root {}: {e} (expected an existing folder)",
                        r.display()
                    ))
                })
            })
            .transpose()?;
        if let Some(r) = &root {
            if !r.is_dir() {
                return Err(crate::Error::Input(format!(
                    "--video-root {}: not a folder",
                    r.display()
                )));
            }
        }
        let uploads = uploads_parent.join(format!("vidflow-serve-{}", std::process::id()));
        std::fs::create_dir_all(&uploads).map_err(|e| crate::Error::io(&uploads, e))?;
        Ok(Media {
            root,
            uploads,
            next: AtomicU64::new(0),
        })
    }

    /// A `data:[mime];base64,...` URL, a `file://` URL or a plain path under the root.
    pub fn resolve(&self, reference: &str, param: &str) -> Result<VideoSource, ApiError> {
        if let Some(rest) = reference.strip_prefix("data:") {
            return self.upload(rest, param);
        }
        if reference.starts_with("http://") || reference.starts_with("https://") {
            return Err(ApiError::field(
                param,
                "remote URLs are not fetched: give a path under the server's video root or the \
                 file's bytes as a data: URL",
            ));
        }
        let path = reference.strip_prefix("file://").unwrap_or(reference);
        self.confined(path, param).map(|path| VideoSource {
            path,
            temporary: false,
        })
    }

    fn confined(&self, path: &str, param: &str) -> Result<PathBuf, ApiError> {
        let Some(root) = &self.root else {
            return Err(ApiError::new(
                403,
                Some(param),
                "this server reads no local files (started without --video-root): send the \
                 file's bytes as a data: URL",
            ));
        };
        if path.is_empty() || path.contains('\0') {
            return Err(ApiError::field(param, "the video path is empty"));
        }
        let escape = || {
            ApiError::new(
                403,
                Some(param),
                format!("{path:?} is outside the server's video root"),
            )
        };
        // Lexically first: a path that leaves the root is refused whether or not something
        // exists there, so answers never tell which files exist outside it.
        let joined = root.join(path);
        if !lexically_inside(&joined, root) {
            return Err(escape());
        }
        let real = std::fs::canonicalize(&joined).map_err(|_| {
            ApiError::new(
                404,
                Some(param),
                format!("no video {path:?} under the server's video root"),
            )
        })?;
        if !real.starts_with(root) {
            return Err(escape());
        }
        // A frame folder's images are read one by one: each must stay inside the root too.
        if real.is_dir() {
            let entries = std::fs::read_dir(&real).map_err(|e| {
                ApiError::new(
                    404,
                    Some(param),
                    format!("{path:?}: cannot list the folder: {e}"),
                )
            })?;
            for e in entries.flatten() {
                match std::fs::canonicalize(e.path()) {
                    Ok(p) if p.starts_with(root) => {}
                    _ => return Err(escape()),
                }
            }
        }
        Ok(real)
    }

    fn upload(&self, rest: &str, param: &str) -> Result<VideoSource, ApiError> {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| ApiError::field(param, "a data: URL needs a comma before its data"))?;
        if !meta.ends_with(";base64") {
            return Err(ApiError::field(
                param,
                "a data: URL must be base64 (data:video/mp4;base64,...)",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| {
                ApiError::field(param, format!("the data: URL is not valid base64: {e}"))
            })?;
        if bytes.is_empty() {
            return Err(ApiError::field(param, "the data: URL holds no bytes"));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.uploads.join(format!("upload-{n}"));
        std::fs::write(&path, &bytes).map_err(|e| {
            ApiError::new(
                500,
                Some(param),
                format!("cannot store the uploaded video: {e}"),
            )
        })?;
        Ok(VideoSource {
            path,
            temporary: true,
        })
    }
}

/// Whether `path` (absolute) stays under `root` once `.` and `..` are applied to its text.
fn lexically_inside(path: &Path, root: &Path) -> bool {
    use std::path::Component;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => parts.clear(),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            Component::Normal(p) => parts.push(p),
        }
    }
    let normal: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts)
        .collect();
    normal.starts_with(root)
}

impl Drop for Media {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.uploads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("clips")).unwrap();
        std::fs::write(root.join("clips/a.mp4"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.mp4"), b"s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.mp4"), root.join("link.mp4")).unwrap();
        let media = Media::new(Some(&root), tmp.path()).unwrap();
        assert!(media.resolve("clips/a.mp4", "video").is_ok());
        assert!(media.resolve("file://clips/a.mp4", "video").is_ok());
        let status = |r: &str| media.resolve(r, "video").unwrap_err().status;
        assert_eq!(status("../secret.mp4"), 403);
        assert_eq!(status("clips/../../secret.mp4"), 403);
        assert_eq!(status("link.mp4"), 403);
        assert_eq!(status(tmp.path().join("secret.mp4").to_str().unwrap()), 403);
        assert_eq!(status("missing.mp4"), 404);
        // Leaving the root is 403 whether or not the file exists.
        assert_eq!(status("../missing.mp4"), 403);
        assert_eq!(status("/nonexistent/x.mp4"), 403);
        assert!(media.resolve("clips/../clips/a.mp4", "video").is_ok());
        assert_eq!(status("https://example.com/v.mp4"), 400);
    }

    #[test]
    fn uploads_are_written_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let media = Media::new(None, tmp.path()).unwrap();
        let src = media
            .resolve("data:video/mp4;base64,aGVsbG8=", "video")
            .unwrap();
        assert_eq!(std::fs::read(src.path()).unwrap(), b"hello");
        let p = src.path().to_path_buf();
        drop(src);
        assert!(!p.exists());
        assert_eq!(
            media
                .resolve("data:video/mp4;base64,@@", "video")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            media
                .resolve("data:video/mp4,abc", "video")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            media.resolve("clips/a.mp4", "video").unwrap_err().status,
            403
        );
    }
}
