//! Sequential decoding of video files with FFmpeg (via `ffmpeg-next`) into RGB frames.
//!
//! Frames are numbered by decoder output order (presentation order), starting at 0: frame `n` is
//! the `n`-th picture the decoder returns, which is what `ffmpeg -vf select=eq(n\,N)` and decord
//! index. We never seek: seeking lands on key frames and its accuracy depends on the container, so
//! every pass decodes from the start and keeps the frames it was asked for.

use std::collections::BTreeMap;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Once;

use ffmpeg::codec::threading;
use ffmpeg::format::stream::Disposition;
use ffmpeg::software::scaling;
use ffmpeg::{format, frame, media};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::info::{FrameCountSource, VideoInfo};
use crate::error::{Error, Result};

fn video_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Video {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// FFmpeg is initialised once per process; its own logging is silenced because every problem it
/// reports reaches the caller as an [`Error::Video`] naming the file.
fn ensure_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // `init` only registers codecs on old FFmpeg versions and cannot fail on current ones.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

struct Opened {
    input: format::context::Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    info: VideoInfo,
}

fn rational(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| r.numerator() as f64 / r.denominator() as f64)
}

fn open(path: &Path) -> Result<Opened> {
    ensure_init();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(video_err(path, "file not found"));
        }
        Err(e) => return Err(video_err(path, format!("cannot read: {e}"))),
        Ok(m) if m.is_dir() => {
            return Err(video_err(path, "is a directory, expected a video file"));
        }
        Ok(m) if m.len() == 0 => return Err(video_err(path, "file is empty, not a video")),
        Ok(_) => {}
    }
    let input = format::input(path).map_err(|e| {
        video_err(
            path,
            format!(
                "not a readable video file (not a video, or a corrupt or truncated container): {e}"
            ),
        )
    })?;
    let stream = input
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Video)
        .find(|s| !s.disposition().contains(Disposition::ATTACHED_PIC))
        .ok_or_else(|| {
            let kinds: Vec<String> = input
                .streams()
                .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
                .collect();
            video_err(
                path,
                if kinds.is_empty() {
                    "no video stream (the file has no streams)".to_string()
                } else {
                    format!("no video stream (streams found: {})", kinds.join(", "))
                },
            )
        })?;
    let stream_index = stream.index();
    let mut ctx =
        ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| {
            video_err(
                path,
                format!("cannot read the video stream parameters: {e}"),
            )
        })?;
    // One decoding thread per video: decoding overlaps the model's compute (see answer::prefetch),
    // whose pool already holds every core, so more decoder threads would only compete with it.
    // Threading changes speed only; decoded pictures are identical.
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 1,
        ..Default::default()
    });
    let codec_id = ctx.id();
    let decoder = ctx.decoder().video().map_err(|e| {
        video_err(
            path,
            format!("no usable decoder for the video codec {codec_id:?}: {e}"),
        )
    })?;

    let fps = rational(stream.avg_frame_rate()).or_else(|| rational(stream.rate()));
    let duration = {
        let tb = rational(stream.time_base());
        let d = stream.duration();
        match tb {
            Some(tb) if d > 0 => Some(d as f64 * tb),
            _ if input.duration() > 0 => {
                Some(input.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64)
            }
            _ => None,
        }
    };
    let (frame_count, count_source) = if stream.frames() > 0 {
        (Some(stream.frames() as usize), FrameCountSource::Container)
    } else {
        match (duration, fps) {
            (Some(d), Some(f)) if (d * f).round() >= 1.0 => (
                Some((d * f).round() as usize),
                FrameCountSource::DurationTimesFps,
            ),
            _ => (None, FrameCountSource::Unknown),
        }
    };
    let info = VideoInfo {
        width: decoder.width(),
        height: decoder.height(),
        codec: decoder
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("{codec_id:?}").to_lowercase()),
        fps,
        duration,
        frame_count,
        count_source,
    };
    Ok(Opened {
        input,
        stream_index,
        decoder,
        info,
    })
}

/// Reads the container's description of the video stream (no decoding).
pub fn probe(path: &Path) -> Result<VideoInfo> {
    open(path).map(|o| o.info)
}

/// Converts decoded pictures of any pixel format to packed RGB24, the way the `ffmpeg` CLI's
/// automatic conversion does: bicubic swscale flags, the frame's own YUV matrix (BT.601 when
/// unspecified) and range. Same choices, same bytes, so tests can compare against the CLI.
struct RgbConverter {
    ctx: Option<(ConvKey, scaling::Context)>,
}

#[derive(PartialEq, Clone, Copy)]
struct ConvKey {
    format: format::Pixel,
    width: u32,
    height: u32,
    colorspace: c_int,
    range: c_int,
}

impl RgbConverter {
    fn new() -> RgbConverter {
        RgbConverter { ctx: None }
    }

    fn convert(&mut self, picture: &frame::Video) -> std::result::Result<RgbImage, String> {
        // SAFETY: reading two plain enum fields of a valid, decoded AVFrame.
        let (colorspace, range) = unsafe {
            let f = picture.as_ptr();
            ((*f).colorspace as c_int, (*f).color_range as c_int)
        };
        let key = ConvKey {
            format: picture.format(),
            width: picture.width(),
            height: picture.height(),
            colorspace,
            range,
        };
        if self.ctx.as_ref().map(|(k, _)| *k != key).unwrap_or(true) {
            let mut ctx = scaling::Context::get(
                key.format,
                key.width,
                key.height,
                format::Pixel::RGB24,
                key.width,
                key.height,
                scaling::Flags::BICUBIC,
            )
            .map_err(|e| {
                format!(
                    "cannot convert {}x{} {:?} pictures to RGB: {e}",
                    key.width, key.height, key.format
                )
            })?;
            set_colorspace(&mut ctx, colorspace, range);
            self.ctx = Some((key, ctx));
        }
        let (_, ctx) = self.ctx.as_mut().expect("converter was just set");
        let mut rgb = frame::Video::empty();
        ctx.run(picture, &mut rgb)
            .map_err(|e| format!("RGB conversion failed: {e}"))?;
        let (w, h) = (key.width as usize, key.height as usize);
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut out = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            out.extend_from_slice(&data[row * stride..row * stride + w * 3]);
        }
        Ok(RgbImage::from_raw(key.width, key.height, out).expect("buffer has w*h*3 bytes"))
    }
}

/// Mirrors libavfilter's `scale` filter (`in_color_matrix=auto`): the matrix follows the frame's
/// colorspace tag (`sws_getCoefficients` maps unknown tags to BT.601) and the input range follows
/// the frame's range tag when set. Failures (e.g. RGB input, where no matrix applies) are ignored,
/// as the filter does.
fn set_colorspace(ctx: &mut scaling::Context, colorspace: c_int, range: c_int) {
    use ffmpeg::ffi;
    // SAFETY: `ctx` owns a valid SwsContext; the tables returned by sws_getCoefficients and
    // sws_getColorspaceDetails are static or owned by the context and outlive the calls.
    unsafe {
        let sws = ctx.as_mut_ptr();
        let mut inv_table: *mut c_int = std::ptr::null_mut();
        let mut table: *mut c_int = std::ptr::null_mut();
        let (mut src_full, mut dst_full, mut brightness, mut contrast, mut saturation) =
            (0, 0, 0, 0, 0);
        if ffi::sws_getColorspaceDetails(
            sws,
            &mut inv_table,
            &mut src_full,
            &mut table,
            &mut dst_full,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        ) < 0
        {
            return;
        }
        let coeffs = ffi::sws_getCoefficients(colorspace);
        if range == ffi::AVColorRange::AVCOL_RANGE_JPEG as c_int {
            src_full = 1;
        } else if range == ffi::AVColorRange::AVCOL_RANGE_MPEG as c_int {
            src_full = 0;
        }
        ffi::sws_setColorspaceDetails(
            sws, coeffs, src_full, coeffs, dst_full, brightness, contrast, saturation,
        );
    }
}

/// The result of one sequential pass over a file.
pub(crate) struct Pass {
    /// One entry per requested position, `None` if the stream ended before that frame.
    pub frames: Vec<Option<RgbImage>>,
    /// Pictures the decoder returned.
    pub decoded: usize,
    /// Whether the pass read to the end of the stream (so `decoded` is the true frame count).
    pub reached_end: bool,
    /// Packets or pictures the demuxer/decoder rejected; decoding goes on past them, as the CLI does.
    pub errors: usize,
    pub last_error: Option<String>,
}

/// Decodes `path` from the start and keeps the pictures at `indices` (any order, repeats allowed).
/// With `stop_when_done`, stops after the last wanted picture; otherwise reads to the end, so
/// `decoded` counts every frame.
pub(crate) fn decode_pass(path: &Path, indices: &[usize], stop_when_done: bool) -> Result<Pass> {
    let Opened {
        mut input,
        stream_index,
        mut decoder,
        ..
    } = open(path)?;
    let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (pos, &idx) in indices.iter().enumerate() {
        wanted.entry(idx).or_default().push(pos);
    }
    let mut pass = Pass {
        frames: vec![None; indices.len()],
        decoded: 0,
        reached_end: false,
        errors: 0,
        last_error: None,
    };
    let mut remaining = wanted.len();
    if remaining == 0 && stop_when_done {
        return Ok(pass);
    }
    let mut converter = RgbConverter::new();
    let mut picture = frame::Video::empty();

    // Returns Ok(true) when every wanted picture is in hand and the caller may stop.
    let mut drain = |decoder: &mut ffmpeg::decoder::Video, pass: &mut Pass| -> Result<bool> {
        loop {
            match decoder.receive_frame(&mut picture) {
                Ok(()) => {
                    let n = pass.decoded;
                    pass.decoded += 1;
                    if let Some(positions) = wanted.get(&n) {
                        let rgb = converter
                            .convert(&picture)
                            .map_err(|m| video_err(path, format!("frame {n}: {m}")))?;
                        for &p in positions {
                            pass.frames[p] = Some(rgb.clone());
                        }
                        remaining -= 1;
                        if remaining == 0 && stop_when_done {
                            return Ok(true);
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => return Ok(false),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(false)
                }
                Err(e) => {
                    pass.errors += 1;
                    pass.last_error = Some(e.to_string());
                    return Ok(false);
                }
            }
        }
    };

    // A demuxer can resync after bad data, but give up on a file that is nothing but bad data.
    let mut consecutive_bad = 0usize;
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => consecutive_bad = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if consecutive_bad < 1000 => {
                consecutive_bad += 1;
                pass.errors += 1;
                pass.last_error = Some("invalid data in the container".into());
                continue;
            }
            Err(e) => {
                // I/O errors are sticky in libavformat: stop reading, keep what was decoded.
                pass.errors += 1;
                pass.last_error = Some(format!("reading the container: {e}"));
                break;
            }
        }
        if packet.stream() != stream_index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            pass.errors += 1;
            pass.last_error = Some(e.to_string());
        }
        if drain(&mut decoder, &mut pass)? {
            return Ok(pass);
        }
    }
    // Flush the pictures the decoder still holds (B-frame reordering, frame threads).
    if decoder.send_eof().is_ok() && drain(&mut decoder, &mut pass)? {
        return Ok(pass);
    }
    pass.reached_end = true;
    Ok(pass)
}

pub(crate) fn describe_errors(pass: &Pass) -> String {
    match (&pass.last_error, pass.errors) {
        (Some(last), n) if n > 0 => format!(" ({n} decode errors, last: {last})"),
        _ => String::new(),
    }
}

/// Decodes exactly the frames at `indices` (0-based, decoder output order; any order, repeats
/// allowed) by reading the file sequentially from the start. Errors name the first index past the
/// end and the number of frames the file really has.
pub fn decode_frames_at(path: &Path, indices: &[usize]) -> Result<Vec<RgbImage>> {
    let pass = decode_pass(path, indices, true)?;
    if pass.decoded == 0 && !indices.is_empty() {
        return Err(video_err(
            path,
            format!(
                "corrupt video: no decodable frame{}",
                describe_errors(&pass)
            ),
        ));
    }
    let mut out = Vec::with_capacity(indices.len());
    for (frame, &idx) in pass.frames.iter().zip(indices) {
        match frame {
            Some(f) => out.push(f.clone()),
            None => {
                return Err(video_err(
                    path,
                    format!(
                        "frame {idx} asked but the video has only {} decodable frames{}",
                        pass.decoded,
                        describe_errors(&pass)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Counts the frames by decoding the whole stream once (no RGB conversion).
pub fn count_frames(path: &Path) -> Result<usize> {
    Ok(decode_pass(path, &[], false)?.decoded)
}
