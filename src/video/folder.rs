//! Videos stored as a folder of frame images (some benchmarks ship frames instead of files).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{Error, Result};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn video_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Video {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The frame images of `dir` (`.jpg`, `.jpeg`, `.png`, any case) in frame order.
///
/// Order is by file name with runs of digits compared as numbers, so `frame_2.jpg` comes before
/// `frame_10.jpg`; for zero-padded names this is plain name order. Other files are ignored.
pub fn list_frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| video_err(dir, format!("cannot list the frame folder: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| video_err(dir, format!("cannot list the frame folder: {e}")))?;
        let path = entry.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            .unwrap_or(false);
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(video_err(
            dir,
            "frame folder holds no .jpg, .jpeg or .png images",
        ));
    }
    files.sort_by(|a, b| {
        let (a, b) = (a.file_name().unwrap(), b.file_name().unwrap());
        natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()).then_with(|| a.cmp(b))
    });
    Ok(files)
}

/// Loads one frame image as RGB (alpha dropped, grey expanded).
pub fn load_frame_image(path: &Path) -> Result<RgbImage> {
    let img =
        image::open(path).map_err(|e| video_err(path, format!("cannot read frame image: {e}")))?;
    Ok(img.to_rgb8())
}

/// Compares names with digit runs as numbers ("a2" < "a10"); ties fall back to byte order.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (strip_zeros(&a[..da]), strip_zeros(&b[..db]));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let nz = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[nz..]
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("f2.jpg", "f10.jpg"), Ordering::Less);
        assert_eq!(natural_cmp("00009.jpg", "00010.jpg"), Ordering::Less);
        assert_eq!(natural_cmp("a.png", "b.png"), Ordering::Less);
        assert_eq!(natural_cmp("f010.jpg", "f10.jpg"), Ordering::Equal);
    }
}
