//! `vidflow answer` on the shipped test package: every input kind works, every error case says
//! what went wrong and with which file. Videos are generated here with the ffmpeg CLI.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tiny_dir;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed by the set-up");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 3-second 12 fps test pattern in the given container/codec.
fn make_video(dir: &Path, name: &str, codec_args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x72:rate=12",
        "-t",
        "3",
    ];
    args.extend_from_slice(codec_args);
    let p = path.to_str().unwrap().to_string();
    args.push(&p);
    ffmpeg(&args);
    path
}

fn vidflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .arg("answer")
        .arg("--model")
        .arg(tiny_dir())
        .args(["--threads", "1"])
        .args(args)
        .output()
        .unwrap()
}

const QUESTION: [&str; 8] = [
    "--question",
    "What appears first?",
    "--option",
    "A red square",
    "--option",
    "A blue circle",
    "--option",
    "Nothing",
];

fn answer_json(video: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--video", video.to_str().unwrap(), "--json"];
    args.extend_from_slice(&QUESTION);
    args.extend_from_slice(extra);
    let out = vidflow(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn check_scores(v: &serde_json::Value, frames: usize) {
    let s = &v["scores"];
    let probs: Vec<f64> = s["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let share: Vec<f64> = s["option_share"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 3);
    assert!(probs.iter().all(|&p| p > 0.0 && p < 1.0), "{probs:?}");
    assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    let best = (0..3)
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap();
    assert_eq!(s["predicted"].as_u64().unwrap() as usize, best);
    assert_eq!(v["frame_indices"].as_array().unwrap().len(), frames);
}

#[test]
fn answers_every_input_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let videos = [
        make_video(d, "h264.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
        make_video(d, "vp9.webm", &["-c:v", "libvpx-vp9", "-b:v", "200k"]),
        make_video(d, "mjpeg.avi", &["-c:v", "mjpeg"]),
        make_video(d, "mpeg4.avi", &["-c:v", "mpeg4"]),
        make_video(d, "anim.gif", &[]),
    ];
    let folder = d.join("frames");
    std::fs::create_dir(&folder).unwrap();
    let pattern = folder.join("f%03d.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x72:rate=12",
        "-t",
        "1",
        pattern.to_str().unwrap(),
    ]);

    let mut answers = Vec::new();
    for v in videos.iter().chain([&folder]) {
        let json = answer_json(v, &["--answer", "B"]);
        check_scores(&json, 4);
        assert_eq!(json["scores"]["truth"], 1, "--answer B is option 1");
        answers.push(json["scores"]["probs"].clone());
    }
    // The pictures differ between inputs, so the model's probabilities do too: the video
    // actually reaches the model.
    assert_ne!(
        answers[0], answers[5],
        "frame folder and mp4 gave identical probabilities"
    );

    // A time window changes the sampled frames.
    let windowed = answer_json(&videos[0], &["--start", "1", "--end", "2"]);
    let idx: Vec<u64> = windowed["frame_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(idx.iter().all(|&i| (12..=24).contains(&i)), "{idx:?}");
}

#[test]
fn table_output_names_options_and_prediction() {
    let tmp = tempfile::tempdir().unwrap();
    let v = make_video(
        tmp.path(),
        "clip.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let mut args = vec!["--video", v.to_str().unwrap(), "--answer", "Nothing"];
    args.extend_from_slice(&QUESTION);
    let out = vidflow(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "A red square",
        "A blue circle",
        "Nothing",
        "<- ",
        "truth",
        "predicted ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn sample_lists_are_answered_in_order_with_bad_records_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_video(d, "a.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    make_video(d, "b.webm", &["-c:v", "libvpx-vp9", "-b:v", "200k"]);
    let list = d.join("samples.json");
    std::fs::write(
        &list,
        r#"[
          {"id": "s1", "video": "a.mp4", "question": "Q1?", "options": ["x", "y"], "answer": "y"},
          {"id": "s2", "video": "missing.mp4", "question": "Q2?", "options": ["x", "y"], "answer": 0},
          {"id": "s3", "video": "b.webm", "question": "Q3?", "options": ["x", "y", "z"], "answer": 2, "start": 0.5, "end": 2.5}
        ]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["answer", "--model"])
        .arg(tiny_dir())
        .arg("--samples")
        .arg(&list)
        .args(["--json", "--workers", "2", "--threads", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    assert_eq!(lines[0]["scores"]["truth"], 1);
    assert!(lines[1]["scores"].is_null());
    assert!(lines[1]["error"].as_str().unwrap().contains("missing.mp4"));
    assert_eq!(lines[2]["scores"]["labels"].as_array().unwrap().len(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped s2"));
}

fn expect_error(video: &Path, extra: &[&str], needles: &[&str]) {
    let mut args = vec!["--video", video.to_str().unwrap()];
    args.extend_from_slice(&QUESTION);
    args.extend_from_slice(extra);
    let out = vidflow(&args);
    assert!(!out.status.success(), "{} should fail", video.display());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = video.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "error does not name {name}: {err}");
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}: {err}");
    }
}

#[test]
fn every_video_error_has_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    expect_error(&d.join("nowhere.mp4"), &[], &["file not found"]);

    let text = d.join("notes.mp4");
    std::fs::write(
        &text,
        "this is not a video, just some text pretending to be one\n".repeat(20),
    )
    .unwrap();
    expect_error(&text, &[], &["not a readable video file"]);

    let audio = d.join("tone.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        audio.to_str().unwrap(),
    ]);
    expect_error(&audio, &[], &["no video stream", "audio"]);

    let good = make_video(d, "good.avi", &["-c:v", "mjpeg"]);
    let mut bytes = std::fs::read(&good).unwrap();
    // Keep the header, overwrite every picture with garbage.
    for b in bytes.iter_mut().skip(8 * 1024) {
        *b = 0x5a;
    }
    let corrupt = d.join("corrupt.avi");
    std::fs::write(&corrupt, bytes).unwrap();
    expect_error(&corrupt, &[], &["corrupt"]);

    let short = d.join("short.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x72:rate=12",
        "-frames:v",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        short.to_str().unwrap(),
    ]);
    expect_error(&short, &[], &["only 2 decodable frames", "4 frames asked"]);

    let clip = make_video(d, "clip.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    expect_error(
        &clip,
        &["--start", "10", "--end", "12"],
        &["outside the video"],
    );
}

#[test]
fn bad_answer_and_too_few_options_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_video(
        tmp.path(),
        "clip.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let mut args = vec!["--video", clip.to_str().unwrap(), "--answer", "Purple"];
    args.extend_from_slice(&QUESTION);
    let out = vidflow(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"Purple\""));

    let out = vidflow(&[
        "--video",
        clip.to_str().unwrap(),
        "--question",
        "Q?",
        "--option",
        "only one",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least two --option"));
}
