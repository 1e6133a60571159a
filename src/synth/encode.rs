//! H.264 mp4 writing with FFmpeg (libx264 through `ffmpeg-next`).
//!
//! Settings are fixed for reproducible files: one encoder thread, no B-frames, constant quality
//! (CRF 12, close to visually lossless at these sizes), 4:2:0 chroma, BT.601 limited range (what
//! FFmpeg assumes when a stream carries no colour tags, so vidflow's decoder converts it back with
//! the same matrix).
//!
//! Builds without the `video` feature have no encoder: [`write_mp4`] then refuses, and so does
//! `vidflow synth` before it draws anything (see `synth::generate`).

use std::path::Path;
#[cfg(feature = "video")]
use std::sync::Once;

#[cfg(feature = "video")]
use ffmpeg::software::scaling;
#[cfg(feature = "video")]
use ffmpeg::{codec, encoder, format, frame, Dictionary, Packet, Rational};
#[cfg(feature = "video")]
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::error::{Error, Result};

/// Why synth cannot run in a build without FFmpeg.
pub const NO_VIDEO_ENCODING: &str = "this build has no video encoding (vidflow was built without \
     the `video` feature); build with the default features (`cargo build --release`, which needs \
     FFmpeg's libraries) to write synthetic videos";

#[cfg(not(feature = "video"))]
pub fn write_mp4(path: &Path, _frames: &[RgbImage], _fps: u32) -> Result<()> {
    Err(Error::Video {
        path: path.to_path_buf(),
        msg: NO_VIDEO_ENCODING.to_string(),
    })
}

#[cfg(feature = "video")]
fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

#[cfg(feature = "video")]
fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Video {
        path: path.to_path_buf(),
        msg: format!("encoding: {what}: {e}"),
    }
}

#[cfg(feature = "video")]
/// Writes `frames` (all the same size, even width and height) as an H.264 mp4 at `fps`.
pub fn write_mp4(path: &Path, frames: &[RgbImage], fps: u32) -> Result<()> {
    init();
    let first = frames
        .first()
        .ok_or_else(|| Error::Input("no frames to encode".into()))?;
    let (w, h) = first.dimensions();
    if w % 2 == 1 || h % 2 == 1 {
        return Err(Error::Input(format!(
            "frame size {w}x{h}: H.264 4:2:0 needs even sizes"
        )));
    }
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| err(path, "libx264", "this FFmpeg has no libx264 encoder"))?;
    let mut octx = format::output(path).map_err(|e| err(path, "cannot create the file", e))?;
    let global_header = octx
        .format()
        .flags()
        .contains(format::flag::Flags::GLOBAL_HEADER);

    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| err(path, "encoder context", e))?;
    let tb = Rational::new(1, fps as i32);
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(Rational::new(fps as i32, 1)));
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    opts.set("preset", "medium");
    opts.set("crf", "12");
    opts.set("bf", "0");
    opts.set("threads", "1");
    let mut enc = enc
        .open_with(opts)
        .map_err(|e| err(path, "opening libx264", e))?;
    {
        let mut ost = octx
            .add_stream(codec)
            .map_err(|e| err(path, "adding the stream", e))?;
        ost.set_parameters(&enc);
        ost.set_time_base(tb);
    }
    octx.write_header()
        .map_err(|e| err(path, "writing the header", e))?;
    let ost_tb = octx.stream(0).expect("stream 0 was added").time_base();

    let mut scaler = scaling::Context::get(
        format::Pixel::RGB24,
        w,
        h,
        format::Pixel::YUV420P,
        w,
        h,
        scaling::Flags::BICUBIC,
    )
    .map_err(|e| err(path, "RGB to YUV converter", e))?;

    let write_packets =
        |enc: &mut encoder::Video, octx: &mut format::context::Output| -> Result<()> {
            let mut packet = Packet::empty();
            while enc.receive_packet(&mut packet).is_ok() {
                packet.set_stream(0);
                // One frame per packet; without a duration the muxer's edit list drops the last frame.
                packet.set_duration(1);
                packet.rescale_ts(tb, ost_tb);
                packet
                    .write_interleaved(octx)
                    .map_err(|e| err(path, "writing a packet", e))?;
            }
            Ok(())
        };

    let mut rgb = frame::Video::new(format::Pixel::RGB24, w, h);
    for (i, img) in frames.iter().enumerate() {
        if img.dimensions() != (w, h) {
            return Err(Error::Input(format!(
                "frame {i} is {}x{}, frame 0 is {w}x{h}",
                img.width(),
                img.height()
            )));
        }
        let stride = rgb.stride(0);
        let data = rgb.data_mut(0);
        let row = w as usize * 3;
        for y in 0..h as usize {
            data[y * stride..y * stride + row]
                .copy_from_slice(&img.as_raw()[y * row..(y + 1) * row]);
        }
        let mut yuv = frame::Video::empty();
        scaler
            .run(&rgb, &mut yuv)
            .map_err(|e| err(path, "RGB to YUV", e))?;
        yuv.set_pts(Some(i as i64));
        enc.send_frame(&yuv)
            .map_err(|e| err(path, "sending a frame", e))?;
        write_packets(&mut enc, &mut octx)?;
    }
    enc.send_eof().map_err(|e| err(path, "flushing", e))?;
    write_packets(&mut enc, &mut octx)?;
    octx.write_trailer()
        .map_err(|e| err(path, "writing the trailer", e))?;
    Ok(())
}
