//! What a container says about its video stream; shared by the FFmpeg decoder and the stub of
//! builds without the `video` feature, so that callers compile the same either way.

/// Where a frame count came from; decides whether it is trusted or verified by decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCountSource {
    /// The container's per-stream frame count (`nb_frames`: mp4 sample tables, avi indexes).
    Container,
    /// Stream (or container) duration x average frame rate: an estimate.
    DurationTimesFps,
    /// Neither is known (common in webm / gif); only decoding can tell.
    Unknown,
}

/// What the container says about the video stream, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Decoder name, e.g. `h264`, `vp9`, `mjpeg`, `gif`.
    pub codec: String,
    /// Average frame rate (`avg_frame_rate`, else `r_frame_rate`), what decord's `get_avg_fps`
    /// reports and what converts window seconds to frame indices.
    pub fps: Option<f64>,
    /// Duration in seconds (stream, else container), if known.
    pub duration: Option<f64>,
    /// Frame count as reported or estimated; see `count_source`.
    pub frame_count: Option<usize>,
    pub count_source: FrameCountSource,
}
