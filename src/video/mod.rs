//! Video input: decode a file (mp4, webm, avi, gif, anything FFmpeg reads) or a folder of frame
//! images, pick F frames by the benchmark rule, and turn them into `pixel_values [F,3,H,W]`.
//!
//! Decoding video files needs the `video` cargo feature (FFmpeg, on by default); frame folders do not.
//!
//! Decoding ([`sample_frames`], [`decode_frames_at`]) returns plain RGB frames and is kept apart
//! from preprocessing ([`preprocess`]) so that decoded pixels can be checked exactly against an
//! independent decoder, and preprocessing against the model's own processor.

#[cfg(feature = "video")]
mod decode;
mod folder;
mod info;
#[cfg(not(feature = "video"))]
mod no_decode;
mod preprocess;
mod sampling;

use std::path::Path;

use image::RgbImage;
use ndarray::Array4;

use crate::error::{Error, Result};
use crate::package::manifest::{FrameSampling, VideoSpec};

#[cfg(feature = "video")]
pub use decode::{count_frames, decode_frames_at, probe};
pub use folder::{list_frame_files, load_frame_image};
pub use info::{FrameCountSource, VideoInfo};
#[cfg(not(feature = "video"))]
pub use no_decode::{count_frames, decode_frames_at, probe, NO_VIDEO_DECODING};
pub use preprocess::{filter_type, preprocess, resize_frame, resized_size};
pub use sampling::{segment_middle_indices, SamplingError, TimeWindow};

/// What to sample from a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRequest {
    /// F, the number of frames.
    pub num_frames: usize,
    /// Only sample inside `[start, end]` seconds (converted with the video's average fps).
    pub window: Option<TimeWindow>,
    /// Frame rate of frame folders, which carry none; only needed with a window.
    pub folder_fps: Option<f64>,
}

impl FrameRequest {
    pub fn new(num_frames: usize) -> FrameRequest {
        FrameRequest {
            num_frames,
            window: None,
            folder_fps: None,
        }
    }

    pub fn with_window(mut self, window: Option<TimeWindow>) -> FrameRequest {
        self.window = window;
        self
    }

    pub fn with_folder_fps(mut self, fps: f64) -> FrameRequest {
        self.folder_fps = Some(fps);
        self
    }
}

/// Sampled RGB frames and where they came from.
#[derive(Debug, Clone)]
pub struct SampledFrames {
    /// One RGB frame per sampled index, in index order, at the video's own resolution.
    pub frames: Vec<RgbImage>,
    /// The 0-based frame indices (decoder output order, or position in the sorted folder).
    pub indices: Vec<usize>,
    /// Frames in the whole video (exact: counted by decoding unless the container lists it).
    pub total_frames: usize,
    /// Frame rate used for the window (None for folders without `folder_fps`).
    pub fps: Option<f64>,
    /// Packets or pictures FFmpeg rejected while decoding; decoding went on past them.
    pub decode_errors: usize,
}

impl SampledFrames {
    /// Seconds between consecutive sampled frames: the mean spacing of the indices over the frame
    /// rate. `None` without a frame rate or with fewer than two frames. (Qwen2.5-VL's reference
    /// takes frames in the video / frames sampled / fps: the same up to the rounding of indices.)
    pub fn seconds_per_frame(&self) -> Option<f64> {
        let fps = self.fps.filter(|f| f.is_finite() && *f > 0.0)?;
        let (first, last) = (*self.indices.first()?, *self.indices.last()?);
        let n = self.indices.len();
        (n >= 2).then(|| (last - first) as f64 / (n - 1) as f64 / fps)
    }

    /// The time in seconds of the first frame of each group of `per_group` sampled frames: its
    /// index over the frame rate, or over 1 frame per second when the rate is unknown (as HF
    /// processors fall back). Prompts that write `Time {t}s:` per frame show these.
    pub fn frame_times(&self, per_group: usize) -> Vec<f64> {
        let fps = self
            .fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .unwrap_or(1.0);
        self.indices
            .iter()
            .step_by(per_group.max(1))
            .map(|&i| i as f64 / fps)
            .collect()
    }
}

/// Preprocessed input for the vision graph plus the frames it came from.
#[derive(Debug, Clone)]
pub struct VideoInput {
    /// `[F,3,H,W]` float32.
    pub pixel_values: Array4<f32>,
    pub sampled: SampledFrames,
}

fn video_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Video {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Samples `request.num_frames` frames from a video file or a folder of frame images, by the rule
/// of [`segment_middle_indices`].
///
/// Frame counts: the container's count (`nb_frames`) is trusted when present; otherwise duration x
/// fps is used as an estimate and checked by decoding to the end; when neither is known, the file
/// is decoded once to count its frames. Whenever decoding finds a different count, the indices are
/// recomputed from the true count and the file is decoded again, so the frames are always those of
/// the rule applied to the real number of decodable frames.
///
/// Builds without the `video` feature read frame folders only and refuse video files.
pub fn sample_frames(path: &Path, request: &FrameRequest) -> Result<SampledFrames> {
    if path.is_dir() {
        return sample_folder(path, request);
    }
    sample_file(path, request)
}

#[cfg(not(feature = "video"))]
fn sample_file(path: &Path, _request: &FrameRequest) -> Result<SampledFrames> {
    Err(no_decode::refuse(path))
}

#[cfg(feature = "video")]
fn sample_file(path: &Path, request: &FrameRequest) -> Result<SampledFrames> {
    let info = probe(path)?;
    let fps = info.fps;
    let plan = |total: usize| {
        segment_middle_indices(total, request.num_frames, request.window, fps)
            .map_err(|e| video_err(path, e.to_string()))
    };
    let (mut total, mut verified) = match (info.frame_count, info.count_source) {
        (Some(n), FrameCountSource::Container) => (n, false),
        (Some(n), FrameCountSource::DurationTimesFps) => (n, false),
        _ => (count_frames(path)?, true),
    };
    let mut trusted = verified || info.count_source == FrameCountSource::Container;
    // Two passes at most: the second one runs with a count that decoding has established.
    for _ in 0..2 {
        if total == 0 {
            return Err(video_err(path, "corrupt video: no decodable frame"));
        }
        let indices = match plan(total) {
            Ok(ix) => ix,
            Err(_) if !verified => {
                // The listed count may be wrong; only a decoded count can justify this error.
                total = count_frames(path)?;
                verified = true;
                trusted = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let pass = decode::decode_pass(path, &indices, trusted)?;
        if pass.decoded == 0 {
            return Err(video_err(
                path,
                format!(
                    "corrupt video: no decodable frame{}",
                    decode::describe_errors(&pass)
                ),
            ));
        }
        if pass.reached_end && pass.decoded != total && !verified {
            tracing::debug!(
                path = %path.display(),
                listed = total,
                decoded = pass.decoded,
                "frame count differs from the container's; resampling"
            );
            total = pass.decoded;
            verified = true;
            trusted = true;
            if plan(total)? != indices {
                continue;
            }
        }
        if pass.frames.iter().all(Option::is_some) {
            if pass.errors > 0 {
                tracing::warn!(
                    path = %path.display(),
                    errors = pass.errors,
                    last = pass.last_error.as_deref().unwrap_or(""),
                    "decoding went on past damaged data"
                );
            }
            return Ok(SampledFrames {
                frames: pass.frames.into_iter().map(Option::unwrap).collect(),
                indices,
                total_frames: total,
                fps,
                decode_errors: pass.errors,
            });
        }
        let missing = indices[pass.frames.iter().position(Option::is_none).unwrap()];
        return Err(video_err(
            path,
            format!(
                "corrupt video: frame {missing} is needed but only {} frames could be decoded{}",
                pass.decoded,
                decode::describe_errors(&pass)
            ),
        ));
    }
    Err(video_err(
        path,
        format!("frame count is unstable between two decoding passes (last count {total})"),
    ))
}

fn sample_folder(dir: &Path, request: &FrameRequest) -> Result<SampledFrames> {
    let files = list_frame_files(dir)?;
    let indices = segment_middle_indices(
        files.len(),
        request.num_frames,
        request.window,
        request.folder_fps,
    )
    .map_err(|e| video_err(dir, e.to_string()))?;
    let frames = indices
        .iter()
        .map(|&i| load_frame_image(&files[i]))
        .collect::<Result<Vec<_>>>()?;
    Ok(SampledFrames {
        frames,
        indices,
        total_frames: files.len(),
        fps: request.folder_fps,
        decode_errors: 0,
    })
}

/// Samples `spec.num_frames * spec.frames_per_group` frames by `spec.sampling` and preprocesses
/// them for the vision graph.
pub fn load_video(
    path: &Path,
    spec: &VideoSpec,
    window: Option<TimeWindow>,
    folder_fps: Option<f64>,
) -> Result<VideoInput> {
    let request = match spec.sampling {
        FrameSampling::SegmentMiddle => FrameRequest {
            num_frames: spec.input_frames(),
            window,
            folder_fps,
        },
    };
    let sampled = sample_frames(path, &request)?;
    let pixel_values = preprocess(&sampled.frames, spec)?;
    Ok(VideoInput {
        pixel_values,
        sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(indices: Vec<usize>, fps: Option<f64>) -> SampledFrames {
        SampledFrames {
            frames: Vec::new(),
            indices,
            total_frames: 100,
            fps,
            decode_errors: 0,
        }
    }

    #[test]
    fn frame_times_are_index_over_rate_or_one_per_second() {
        assert_eq!(
            sampled(vec![3, 9, 15], Some(2.0)).frame_times(1),
            [1.5, 4.5, 7.5]
        );
        assert_eq!(sampled(vec![3, 9], None).frame_times(1), [3.0, 9.0]);
        assert_eq!(sampled(vec![3, 9], Some(0.0)).frame_times(1), [3.0, 9.0]);
        // Temporal groups of two: each group's first frame.
        assert_eq!(
            sampled(vec![0, 2, 4, 6], Some(4.0)).frame_times(2),
            [0.0, 1.0]
        );
    }
}
