//! Video decoding and preprocessing, checked against the `ffmpeg` command-line tool.
//!
//! Every video is generated here with the `ffmpeg` CLI (lavfi test sources) into a temporary
//! directory, so the tests need `ffmpeg` and `ffprobe` on PATH. Decoded frames are compared byte
//! for byte with an independent decode of the same frame indices by the CLI
//! (`select=eq(n\,IDX)` to raw RGB24), and frame counts with `ffprobe -count_frames`.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use vidflow::package::manifest::{FrameSampling, ResizeFilter, ResizeMode, VideoSpec};
use vidflow::video::{
    decode_frames_at, load_video, preprocess, probe, resize_frame, sample_frames,
    segment_middle_indices, FrameCountSource, FrameRequest, TimeWindow,
};
use vidflow::Error;

fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` (these tests need it on PATH): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ffmpeg -v error -y <args> <dir/name>`; returns the output path.
fn make(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut all = vec!["-v", "error", "-y"];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    run("ffmpeg", &all);
    path
}

fn lavfi(source: &str) -> Vec<&str> {
    vec!["-f", "lavfi", "-i", source]
}

fn cli_size(path: &Path) -> (u32, u32) {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    let s = String::from_utf8(out).unwrap();
    let mut it = s.trim().split(',').map(|v| v.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn cli_count(path: &Path) -> usize {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    String::from_utf8(out).unwrap().trim().parse().unwrap()
}

/// The CLI's RGB24 pictures at `indices` (any order, repeats allowed).
fn cli_frames(path: &Path, indices: &[usize]) -> Vec<Vec<u8>> {
    let (w, h) = cli_size(path);
    let mut uniq: Vec<usize> = indices.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let select = uniq
        .iter()
        .map(|i| format!("eq(n\\,{i})"))
        .collect::<Vec<_>>()
        .join("+");
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-vf",
            &format!("select={select}"),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
    );
    let size = (w * h * 3) as usize;
    assert_eq!(
        out.len(),
        size * uniq.len(),
        "CLI returned a wrong byte count"
    );
    indices
        .iter()
        .map(|i| {
            let k = uniq.binary_search(i).unwrap();
            out[k * size..(k + 1) * size].to_vec()
        })
        .collect()
}

fn assert_same_pixels(path: &Path, idx: usize, ours: &RgbImage, theirs: &[u8]) {
    assert_eq!(
        (ours.width(), ours.height()),
        cli_size(path),
        "{}: frame {idx} size",
        path.display()
    );
    if ours.as_raw().as_slice() != theirs {
        let diff = ours
            .as_raw()
            .iter()
            .zip(theirs)
            .filter(|(a, b)| a != b)
            .count();
        let max = ours
            .as_raw()
            .iter()
            .zip(theirs)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        panic!(
            "{}: frame {idx} differs from the CLI in {diff} of {} bytes (max diff {max})",
            path.display(),
            theirs.len()
        );
    }
}

/// Samples F frames and checks count, indices and every pixel against the CLI.
fn check_against_cli(path: &Path, f: usize, expected_indices: &[usize]) {
    let total = cli_count(path);
    let sampled = sample_frames(path, &FrameRequest::new(f)).unwrap();
    assert_eq!(
        sampled.total_frames,
        total,
        "{}: frame count",
        path.display()
    );
    assert_eq!(sampled.indices, expected_indices, "{}", path.display());
    assert_eq!(
        sampled.indices,
        segment_middle_indices(total, f, None, None).unwrap()
    );
    let refs = cli_frames(path, &sampled.indices);
    for ((img, r), idx) in sampled.frames.iter().zip(&refs).zip(&sampled.indices) {
        assert_same_pixels(path, *idx, img, r);
    }
}

/// The Video error's message, after checking it names `path`.
fn video_msg<T: std::fmt::Debug>(r: vidflow::Result<T>, path: &Path) -> String {
    let e = match r {
        Ok(_) => panic!("{}: expected an error, got Ok", path.display()),
        Err(e) => e,
    };
    match e {
        Error::Video { path: p, msg } => {
            assert_eq!(p, path, "error names the wrong path");
            eprintln!("{}: {msg}", p.display());
            msg
        }
        other => panic!("expected Error::Video, got {other:?}"),
    }
}

// Expected indices below are the reference formula (MVBench get_index) evaluated in Python.

#[test]
fn mp4_h264_with_b_frames_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=160x120:rate=30:duration=3");
    args.extend([
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "12", "-bf", "2",
    ]);
    let p = make(dir.path(), "a.mp4", &args);
    let info = probe(&p).unwrap();
    assert_eq!(info.count_source, FrameCountSource::Container);
    assert_eq!((info.width, info.height), (160, 120));
    assert_eq!(info.fps, Some(30.0));
    check_against_cli(&p, 8, &[5, 16, 27, 38, 49, 61, 72, 83]);
}

#[test]
fn webm_vp9_without_frame_count_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=128x96:rate=25:duration=2");
    args.extend(["-c:v", "libvpx-vp9", "-b:v", "200k"]);
    let p = make(dir.path(), "b.webm", &args);
    // webm streams carry no frame count: the count is duration x fps, verified by decoding.
    assert_ne!(probe(&p).unwrap().count_source, FrameCountSource::Container);
    check_against_cli(&p, 8, &[3, 9, 15, 21, 27, 34, 40, 46]);
}

#[test]
fn webm_vp9_odd_size_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("mandelbrot=size=97x61:rate=25");
    args.extend(["-t", "2", "-c:v", "libvpx-vp9"]);
    let p = make(dir.path(), "odd.webm", &args);
    check_against_cli(&p, 8, &[3, 9, 15, 21, 27, 34, 40, 46]);
}

#[test]
fn avi_mjpeg_full_range_odd_size_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("mandelbrot=size=97x61:rate=10");
    args.extend(["-t", "3", "-c:v", "mjpeg"]);
    let p = make(dir.path(), "c.avi", &args);
    check_against_cli(&p, 8, &[1, 5, 8, 12, 15, 19, 23, 26]);
}

#[test]
fn avi_mpeg4_odd_size_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=97x61:rate=15:duration=2");
    args.extend(["-c:v", "mpeg4"]);
    let p = make(dir.path(), "d.avi", &args);
    check_against_cli(&p, 8, &[1, 5, 8, 12, 15, 19, 23, 26]);
}

#[test]
fn gif_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let p = make(
        dir.path(),
        "e.gif",
        &lavfi("testsrc2=size=64x48:rate=10:duration=2"),
    );
    check_against_cli(&p, 8, &[1, 3, 6, 8, 11, 13, 15, 18]);
}

#[test]
fn variable_frame_rate_mp4_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=160x120:rate=30:duration=3");
    // Keeps the first 30 frames and then every 4th: timestamps become irregular.
    args.extend([
        "-vf",
        "select=lt(n\\,30)+not(mod(n\\,4))",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    ]);
    let p = make(dir.path(), "vfr.mp4", &args);
    check_against_cli(&p, 8, &[2, 8, 13, 18, 24, 30, 35, 40]);
}

#[test]
fn raw_h264_without_count_or_duration_is_counted_by_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=160x120:rate=30:duration=3");
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264"]);
    let p = make(dir.path(), "h.h264", &args);
    assert_eq!(probe(&p).unwrap().count_source, FrameCountSource::Unknown);
    check_against_cli(&p, 8, &[5, 16, 27, 38, 49, 61, 72, 83]);
}

#[test]
fn full_range_bt709_tagged_mp4_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=96x64:rate=30:duration=1");
    args.extend([
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuvj420p",
        "-colorspace",
        "bt709",
        "-color_range",
        "pc",
    ]);
    let p = make(dir.path(), "pc709.mp4", &args);
    check_against_cli(&p, 4, &[3, 10, 17, 25]);
}

#[test]
fn explicit_indices_in_any_order_with_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=160x120:rate=30:duration=1");
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let p = make(dir.path(), "x.mp4", &args);
    let idx = [29, 0, 7, 7, 15];
    let ours = decode_frames_at(&p, &idx).unwrap();
    for ((img, r), i) in ours.iter().zip(cli_frames(&p, &idx)).zip(idx) {
        assert_same_pixels(&p, i, img, &r);
    }
    let msg = video_msg(decode_frames_at(&p, &[3, 30]), &p);
    assert!(
        msg.contains("frame 30") && msg.contains("only 30 decodable frames"),
        "{msg}"
    );
}

#[test]
fn window_selects_frames_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=160x120:rate=30:duration=3");
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let p = make(dir.path(), "w.mp4", &args);

    let req = FrameRequest::new(8).with_window(Some(TimeWindow::new(1.0, 2.0)));
    let s = sample_frames(&p, &req).unwrap();
    assert_eq!(s.indices, [31, 35, 39, 42, 46, 50, 53, 57]);
    for ((img, r), i) in s
        .frames
        .iter()
        .zip(cli_frames(&p, &s.indices))
        .zip(&s.indices)
    {
        assert_same_pixels(&p, *i, img, &r);
    }
    // An end past the video is clamped to the last frame, as in the reference.
    let s = sample_frames(
        &p,
        &FrameRequest::new(4).with_window(Some(TimeWindow::new(0.5, 99.0))),
    )
    .unwrap();
    assert_eq!(
        s.indices,
        segment_middle_indices(90, 4, Some(TimeWindow::new(0.5, 99.0)), Some(30.0)).unwrap()
    );
    assert!(s.indices[0] >= 15);

    let outside = FrameRequest::new(4).with_window(Some(TimeWindow::new(5.0, 6.0)));
    let msg = video_msg(sample_frames(&p, &outside), &p);
    assert!(msg.contains("outside the video"), "{msg}");

    let short = FrameRequest::new(8).with_window(Some(TimeWindow::new(1.0, 1.1)));
    let msg = video_msg(sample_frames(&p, &short), &p);
    assert!(
        msg.contains("window holds only 4 frames") && msg.contains("8 frames asked"),
        "{msg}"
    );

    let reversed = FrameRequest::new(4).with_window(Some(TimeWindow::new(2.0, 1.0)));
    let msg = video_msg(sample_frames(&p, &reversed), &p);
    assert!(msg.contains("invalid time window"), "{msg}");
}

fn write_frames(dir: &Path, names: &[String]) -> Vec<RgbImage> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Each frame is distinct: a gradient shifted by the frame number.
            let img = RgbImage::from_fn(20, 12, |x, y| {
                Rgb([(x * 10 + i as u32) as u8, (y * 20) as u8, (i * 17) as u8])
            });
            img.save(dir.join(name)).unwrap();
            img
        })
        .collect()
}

#[test]
fn frame_folder_in_natural_name_order() {
    let dir = tempfile::tempdir().unwrap();
    // Written in an order that differs from both creation and plain byte order.
    let names: Vec<String> = (1..=12).map(|i| format!("frame_{i}.png")).collect();
    let imgs = write_frames(dir.path(), &names);
    std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();

    let s = sample_frames(dir.path(), &FrameRequest::new(4)).unwrap();
    assert_eq!(s.total_frames, 12);
    assert_eq!(s.indices, [1, 4, 7, 9]);
    for (img, i) in s.frames.iter().zip(&s.indices) {
        assert_eq!(img, &imgs[*i], "frame {i} (file {})", names[*i]);
    }

    let windowed = FrameRequest::new(4)
        .with_window(Some(TimeWindow::new(1.0, 3.0)))
        .with_folder_fps(3.0);
    let s = sample_frames(dir.path(), &windowed).unwrap();
    assert_eq!(s.indices, [3, 5, 6, 7]);
    assert_eq!(s.frames[0], imgs[3]);

    let no_fps = FrameRequest::new(4).with_window(Some(TimeWindow::new(1.0, 3.0)));
    let msg = video_msg(sample_frames(dir.path(), &no_fps), dir.path());
    assert!(msg.contains("frame rate is unknown"), "{msg}");

    let msg = video_msg(
        sample_frames(dir.path(), &FrameRequest::new(13)),
        dir.path(),
    );
    assert!(
        msg.contains("only 12 decodable frames") && msg.contains("13 frames asked"),
        "{msg}"
    );
}

#[test]
fn frame_folder_of_jpegs_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("{i:05}.JPG")).collect();
    write_frames(dir.path(), &names);
    let s = sample_frames(dir.path(), &FrameRequest::new(3)).unwrap();
    assert_eq!(s.indices, segment_middle_indices(6, 3, None, None).unwrap());
    let expected = image::open(dir.path().join(&names[s.indices[1]]))
        .unwrap()
        .to_rgb8();
    assert_eq!(s.frames[1], expected);

    let empty = tempfile::tempdir().unwrap();
    let msg = video_msg(
        sample_frames(empty.path(), &FrameRequest::new(3)),
        empty.path(),
    );
    assert!(msg.contains("no .jpg, .jpeg or .png"), "{msg}");

    let bad = tempfile::tempdir().unwrap();
    write_frames(bad.path(), &["b.png".to_string()]);
    // Two frames, F = 2: the rule picks index 0 twice (segment width 0.5), i.e. `a.png`.
    let broken = bad.path().join("a.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let msg = video_msg(sample_frames(bad.path(), &FrameRequest::new(2)), &broken);
    assert!(msg.contains("cannot read frame image"), "{msg}");
}

#[test]
fn error_messages_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let req = FrameRequest::new(8);

    let missing = d.join("missing.mp4");
    let msg = video_msg(sample_frames(&missing, &req), &missing);
    assert_eq!(msg, "file not found");

    let empty = d.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let msg = video_msg(sample_frames(&empty, &req), &empty);
    assert!(msg.contains("empty"), "{msg}");

    let text = d.join("notes.mp4");
    std::fs::write(&text, "this is a note, not a video\n".repeat(20)).unwrap();
    let msg = video_msg(sample_frames(&text, &req), &text);
    assert!(msg.contains("not a readable video file"), "{msg}");

    let mut args = lavfi("sine=frequency=440:duration=1");
    args.extend(["-c:a", "pcm_s16le"]);
    let audio = make(d, "tone.wav", &args);
    let msg = video_msg(sample_frames(&audio, &req), &audio);
    assert!(
        msg.contains("no video stream") && msg.contains("audio"),
        "{msg}"
    );

    let mut args = lavfi("testsrc2=size=64x48:rate=10");
    args.extend(["-frames:v", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let short = make(d, "short.mp4", &args);
    let msg = video_msg(sample_frames(&short, &req), &short);
    assert_eq!(
        msg,
        "only 5 decodable frames found, fewer than the 8 frames asked"
    );

    // Truncated mp4 whose index (moov) was at the end: the container cannot be opened.
    let mut args = lavfi("testsrc2=size=64x48:rate=10:duration=2");
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let whole = make(d, "whole.mp4", &args);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = d.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = video_msg(sample_frames(&cut, &req), &cut);
    assert!(msg.contains("corrupt or truncated"), "{msg}");

    // Valid container, picture data destroyed: nothing decodes.
    let mut args = lavfi("testsrc2=size=64x48:rate=10:duration=2");
    args.extend(["-c:v", "mjpeg"]);
    let good = make(d, "good.avi", &args);
    let mut bytes = std::fs::read(&good).unwrap();
    // Zero the payload of every video chunk (`00dc`) inside the `movi` list, keeping the RIFF
    // structure and index intact, so the container opens but no picture decodes.
    let movi = bytes.windows(4).position(|w| w == b"movi").unwrap() + 4;
    let mut k = movi;
    while k + 8 <= bytes.len() && &bytes[k..k + 4] == b"00dc" {
        let size = u32::from_le_bytes(bytes[k + 4..k + 8].try_into().unwrap()) as usize;
        bytes[k + 8..k + 8 + size].fill(0);
        k += 8 + size + (size & 1);
    }
    assert!(k > movi + 8, "no video chunk found to corrupt");
    let corrupt = d.join("corrupt.avi");
    std::fs::write(&corrupt, &bytes).unwrap();
    let msg = video_msg(sample_frames(&corrupt, &req), &corrupt);
    assert!(msg.contains("corrupt video"), "{msg}");
}

fn spec(mode: ResizeMode, filter: ResizeFilter, h: usize, w: usize) -> VideoSpec {
    VideoSpec {
        num_frames: 2,
        frame_height: h,
        frame_width: w,
        resize_mode: mode,
        resize_filter: filter,
        rescale_factor: 1.0 / 255.0,
        image_mean: [0.5, 0.25, 0.0],
        image_std: [0.5, 0.25, 2.0],
        grid_h: 2,
        grid_w: 2,
        sampling: FrameSampling::SegmentMiddle,
        frames_per_group: 1,
        trailing_tokens: 0,
    }
}

#[test]
fn preprocess_normalises_channel_first() {
    let red = RgbImage::from_pixel(7, 5, Rgb([255, 51, 0]));
    let blue = RgbImage::from_pixel(7, 5, Rgb([0, 0, 255]));
    let s = spec(ResizeMode::Stretch, ResizeFilter::Bilinear, 4, 6);
    let x = preprocess(&[red, blue], &s).unwrap();
    assert_eq!(x.shape(), &[2, 3, 4, 6]);
    // Constant images stay constant under any resize filter.
    let v = |f: usize, c: usize| x[[f, c, 2, 3]];
    assert!((v(0, 0) - 1.0).abs() < 1e-6); // (1 - 0.5) / 0.5
    assert!((v(0, 1) - (0.2 - 0.25) / 0.25).abs() < 1e-6);
    assert!((v(0, 2) - 0.0).abs() < 1e-6);
    assert!((v(1, 0) + 1.0).abs() < 1e-6);
    assert!((v(1, 2) - 0.5).abs() < 1e-6);
    assert!(x.iter().all(|v| v.is_finite()));
}

#[test]
fn shortest_edge_crop_keeps_the_centre() {
    // 40x20 frame: left half black, a 10-pixel white band in the centre, right part black.
    let img = RgbImage::from_fn(40, 20, |x, _| {
        if (15..25).contains(&x) {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    });
    let s = spec(ResizeMode::ShortestEdgeCrop, ResizeFilter::Nearest, 10, 10);
    let out = resize_frame(&img, &s).unwrap();
    // 40x20 -> 20x10 -> crop columns 5..15: the white band (7..12 after scaling) sits in the middle.
    assert_eq!(out.dimensions(), (10, 10));
    let row: Vec<u8> = (0..10).map(|x| out.get_pixel(x, 5).0[0]).collect();
    assert_eq!(row, [0, 0, 255, 255, 255, 255, 255, 0, 0, 0]);

    let s = spec(ResizeMode::Stretch, ResizeFilter::Bicubic, 10, 10);
    assert_eq!(resize_frame(&img, &s).unwrap().dimensions(), (10, 10));
}

#[test]
fn load_video_gives_pixel_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = lavfi("testsrc2=size=97x61:rate=15:duration=1");
    args.extend(["-c:v", "mpeg4"]);
    let p = make(dir.path(), "v.avi", &args);
    let s = spec(ResizeMode::ShortestEdgeCrop, ResizeFilter::Bicubic, 32, 32);
    let v = load_video(&p, &s, None, None).unwrap();
    assert_eq!(v.pixel_values.shape(), &[2, 3, 32, 32]);
    assert_eq!(
        v.sampled.indices,
        segment_middle_indices(15, 2, None, None).unwrap()
    );
    let again = preprocess(&v.sampled.frames, &s).unwrap();
    assert_eq!(v.pixel_values, again);
}
