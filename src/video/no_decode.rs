//! Stand-in for the FFmpeg decoder in builds without the `video` feature (a machine without
//! FFmpeg's libraries): every video file is refused with a message that says how to get decoding,
//! while frame folders, which need no FFmpeg, keep working in `sample_frames`.

use std::path::Path;

use image::RgbImage;

use super::info::VideoInfo;
use crate::error::{Error, Result};

/// The message of every refused video file; tests and docs quote it.
pub const NO_VIDEO_DECODING: &str = "this build has no video decoding (vidflow was built without \
     the `video` feature); decode the video into a folder of frame images, or build with the \
     default features (`cargo build --release`, which needs FFmpeg's libraries)";

/// A missing file is still reported as missing, so that the message points at the real problem.
pub(crate) fn refuse(path: &Path) -> Error {
    let msg = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => NO_VIDEO_DECODING.to_string(),
    };
    Error::Video {
        path: path.to_path_buf(),
        msg,
    }
}

pub fn probe(path: &Path) -> Result<VideoInfo> {
    Err(refuse(path))
}

pub fn decode_frames_at(path: &Path, _indices: &[usize]) -> Result<Vec<RgbImage>> {
    Err(refuse(path))
}

pub fn count_frames(path: &Path) -> Result<usize> {
    Err(refuse(path))
}
