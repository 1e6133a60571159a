//! Builds without the `video` feature (no FFmpeg: `cargo test --no-default-features`): video files
//! are refused with a message that names the missing feature, a missing file is still reported as
//! missing, frame folders decode as before (compared with the `image` crate's own reading of the
//! files), and `vidflow synth` refuses before it writes anything.
#![cfg(not(feature = "video"))]

mod common;

use std::process::Command;

use common::*;
use vidflow::synth::{self, Suite, SynthConfig};
use vidflow::video::{probe, sample_frames, FrameRequest, NO_VIDEO_DECODING};

#[test]
fn video_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, b"not decoded in this build").unwrap();
    let err = sample_frames(&clip, &FrameRequest::new(4))
        .unwrap_err()
        .to_string();
    assert!(err.contains(NO_VIDEO_DECODING), "{err}");
    assert!(err.contains("without the `video` feature"), "{err}");
    assert!(probe(&clip).unwrap_err().to_string().contains("video"));
    let gone = dir.path().join("gone.mp4");
    let err = sample_frames(&gone, &FrameRequest::new(4))
        .unwrap_err()
        .to_string();
    assert!(err.contains("file not found"), "{err}");

    // The binary says the same for `vidflow answer`.
    let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["answer", "--model"])
        .arg(tiny_dir())
        .arg("--video")
        .arg(&clip)
        .args([
            "--question",
            "What happens?",
            "--option",
            "a",
            "--option",
            "b",
        ])
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without the `video` feature"), "{err}");
}

#[test]
fn frame_folders_still_work() {
    let folder = repo_path("tests/fixtures/knockout/frames/clip0");
    let got = sample_frames(&folder, &FrameRequest::new(2)).unwrap();
    // The folder's files in name order (zero-padded names), read here by the image crate.
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!((got.total_frames, got.frames.len()), (files.len(), 2));
    for (img, &i) in got.frames.iter().zip(&got.indices) {
        let want = image::open(&files[i]).unwrap().to_rgb8();
        assert_eq!(img.as_raw(), want.as_raw(), "{}", files[i].display());
    }
}

#[test]
fn synth_refuses_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 0,
        per_task: 1,
        size: 64,
        frames: 8,
        fps: 8,
        suite: Suite::Temporal,
        tasks: None,
        dump_frames: None,
    };
    let err = synth::generate(dir.path(), &cfg, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains(synth::NO_VIDEO_ENCODING), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
