//! Run folders keep what they hold: one writer at a time, resume only with the same inputs (by
//! content), merges that refuse what would lose or mix records, failed samples retried, runs that
//! score nothing failing with exit status 2, and sizes refused before they are allocated.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ffmpeg_clip, tiny_dir};
use serde_json::{json, Value};
use vidflow::report::FolderLock;

fn vidflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
}

/// A JSON sample list of `n` questions about two clips.
fn samples(dir: &Path, n: usize) -> PathBuf {
    ffmpeg_clip(&dir.join("a.mp4"), "testsrc2");
    ffmpeg_clip(&dir.join("b.mp4"), "mandelbrot");
    let recs: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("s{i}"), "video": if i % 2 == 0 { "a.mp4" } else { "b.mp4" },
                   "question": format!("What happens first in clip {i}?"),
                   "options": ["The light turns on.", "The door opens.", "Nothing"], "answer": 1})
        })
        .collect();
    let path = dir.join("samples.json");
    std::fs::write(&path, serde_json::to_string(&recs).unwrap()).unwrap();
    path
}

fn eval(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = vidflow();
    c.args(["eval", "--quiet", "--threads", "1", "--model"])
        .arg(model)
        .arg("--data")
        .arg(format!("json:{}", data.display()))
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail; returns (exit code, stderr).
fn fails(mut c: Command) -> (i32, String) {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    (out.status.code().unwrap_or(-1), err)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = lines(path)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_folder_being_written_refuses_every_other_writer_and_names_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 2);
    let held = tmp.path().join("held");
    let lock = FolderLock::acquire(&held).unwrap();
    let model = tiny_dir();
    let spec = format!("json:{}", data.display());
    let common = |c: &mut Command| {
        c.arg("--model")
            .arg(&model)
            .args(["--data", &spec, "--quiet"]);
    };
    let mut cmds: Vec<(&str, Command)> = Vec::new();
    for name in ["eval", "knockout", "lens", "attention"] {
        let mut c = vidflow();
        c.arg(name);
        common(&mut c);
        if name == "knockout" {
            c.args(["--targets", "cross-frame"]);
        }
        c.arg("--out").arg(&held);
        cmds.push((name, c));
    }
    // A folder that looks like an eval shard: the output's lock is checked before the shard.
    let shard = tmp.path().join("shard");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join("settings.json"), "{}").unwrap();
    let mut merge = vidflow();
    merge.args(["merge", "--out"]).arg(&held).arg(&shard);
    cmds.push(("merge", merge));
    let mut demo = vidflow();
    demo.args(["demo", "--quiet", "--out"]).arg(&held);
    cmds.push(("demo", demo));
    for (name, c) in cmds {
        let (_, err) = fails(c);
        assert!(
            err.contains("being written by another vidflow run")
                && err.contains(&format!("pid {}", std::process::id()))
                && err.contains("held"),
            "{name}: {err}"
        );
    }
    drop(lock);
    assert!(
        std::fs::read_dir(&held).unwrap().count() <= 1,
        "refused writers wrote nothing but the lock file"
    );
}

#[test]
fn two_evaluations_into_one_folder_record_each_sample_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 12);
    let out = tmp.path().join("run");
    let mut first = eval(&tiny_dir(), &data, &out, &[]).spawn().unwrap();
    // Start the second writer once the first holds the folder.
    let lock = out.join(vidflow::report::LOCK_FILE);
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |s| s.is_empty())
        && t0.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let second = eval(&tiny_dir(), &data, &out, &[]).output().unwrap();
    assert!(first.wait().unwrap().success());
    let err = String::from_utf8_lossy(&second.stderr);
    if second.status.success() {
        // Only possible if the first had already finished: then the second resumed a done run.
        assert!(err.is_empty(), "{err}");
    } else {
        assert!(
            err.contains("being written by another vidflow run"),
            "{err}"
        );
    }
    assert_eq!(ids(&out.join("records.jsonl")).len(), 12);
    // The lock of a finished (or killed) run never blocks the next one.
    ok(eval(&tiny_dir(), &data, &out, &[]));
    assert_eq!(ids(&out.join("records.jsonl")).len(), 12);
}

#[test]
fn resuming_with_a_changed_input_is_refused_and_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 4);
    let pkg = tmp.path().join("pkg");
    copy_dir(&tiny_dir(), &pkg);
    let cfg = tmp.path().join("paths.yaml");
    let config =
        "name: p\nnum_layers: 4\nrules:\n  - {source: video, target: last, blocked: \"1-2\"}\n";
    std::fs::write(&cfg, config).unwrap();
    let mode = format!("pathways:{}", cfg.display());
    let out = tmp.path().join("run");
    ok(eval(&pkg, &data, &out, &["--mode", &mode, "--limit", "2"]));

    // The same files moved elsewhere are the same inputs: the run resumes.
    let moved = tmp.path().join("pkg-moved");
    copy_dir(&pkg, &moved);
    ok(eval(
        &moved,
        &data,
        &out,
        &["--mode", &mode, "--limit", "2"],
    ));

    std::fs::write(&cfg, config.replace("1-2", "1-3")).unwrap();
    let (_, err) = fails(eval(&pkg, &data, &out, &["--mode", &mode, "--limit", "2"]));
    assert!(
        err.contains("paths.yaml") && err.contains("changed"),
        "{err}"
    );
    std::fs::write(&cfg, config).unwrap();

    let yaml = pkg.join("model.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, format!("{text}# edited\n")).unwrap();
    let (_, err) = fails(eval(&pkg, &data, &out, &["--mode", &mode, "--limit", "2"]));
    assert!(
        err.contains("model.yaml") && err.contains("changed"),
        "{err}"
    );
    std::fs::write(&yaml, text).unwrap();

    let list = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, list.replace("clip 0", "clip zero")).unwrap();
    let (_, err) = fails(eval(&pkg, &data, &out, &["--mode", &mode, "--limit", "2"]));
    assert!(
        err.contains("samples.json") && err.contains("changed"),
        "{err}"
    );
    std::fs::write(&data, list).unwrap();
    ok(eval(&pkg, &data, &out, &["--mode", &mode, "--limit", "2"]));
    assert_eq!(ids(&out.join("records.jsonl")), ["s0", "s1"]);
}

#[test]
fn merge_refuses_its_own_input_missing_shards_unfinished_shards_and_torn_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 6);
    let shards: Vec<PathBuf> = (1..=3).map(|k| tmp.path().join(format!("s{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        ok(eval(
            &tiny_dir(),
            &data,
            dir,
            &["--shard", &format!("{}/3", k + 1)],
        ));
    }
    let merge = |out: &Path, dirs: &[&PathBuf], extra: &[&str]| {
        let mut c = vidflow();
        c.args(["merge", "--out"]).arg(out).args(dirs).args(extra);
        c
    };
    let before = std::fs::read(shards[0].join("records.jsonl")).unwrap();
    let (_, err) = fails(merge(
        &shards[0],
        &[&shards[0], &shards[1], &shards[2]],
        &[],
    ));
    assert!(err.contains("also one of its input shards"), "{err}");
    assert_eq!(
        std::fs::read(shards[0].join("records.jsonl")).unwrap(),
        before
    );

    let m = tmp.path().join("m");
    let (_, err) = fails(merge(&m, &[&shards[0], &shards[2]], &[]));
    assert!(
        err.contains("shard 2/3") && err.contains("missing") && err.contains("--partial"),
        "{err}"
    );
    ok(merge(&m, &[&shards[0], &shards[2]], &["--partial"]));
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["missing_shards"], json!([2]));
    assert_eq!(ids(&m.join("records.jsonl")).len(), 4);

    // Merging again into the same folder rewrites it; nothing doubles.
    let full = tmp.path().join("full");
    let all = [&shards[0], &shards[1], &shards[2]];
    ok(merge(&full, &all, &[]));
    ok(merge(&full, &all, &[]));
    assert_eq!(
        ids(&full.join("records.jsonl")),
        ["s0", "s1", "s2", "s3", "s4", "s5"]
    );

    // A shard whose last line was cut off is an error naming the file and the line.
    let rec = shards[1].join("records.jsonl");
    let text = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, &text[..text.len() - 5]).unwrap();
    let (_, err) = fails(merge(&tmp.path().join("t"), &all, &[]));
    assert!(
        err.contains("records.jsonl") && err.contains("line 2") && err.contains("cut off"),
        "{err}"
    );
    std::fs::write(&rec, &text).unwrap();

    // An unfinished shard (no summary yet) and a shard being written are refused.
    std::fs::remove_file(shards[2].join("summary.json")).unwrap();
    let (_, err) = fails(merge(&tmp.path().join("u"), &all, &[]));
    assert!(err.contains("shard 3/3 is unfinished"), "{err}");
    ok(eval(&tiny_dir(), &data, &shards[2], &["--shard", "3/3"]));
    let lock = FolderLock::acquire(&shards[1]).unwrap();
    let (_, err) = fails(merge(&tmp.path().join("w"), &all, &[]));
    assert!(err.contains("being written"), "{err}");
    drop(lock);
    ok(merge(&tmp.path().join("w"), &all, &[]));
}

#[test]
fn failed_samples_are_retried_and_a_run_that_scores_nothing_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 2);
    // Sample s1 reads b.mp4: make it a broken file.
    let good_b = std::fs::read(tmp.path().join("b.mp4")).unwrap();
    std::fs::write(tmp.path().join("b.mp4"), b"not a video").unwrap();
    let out = tmp.path().join("run");
    ok(eval(&tiny_dir(), &data, &out, &[]));
    let recs = lines(&out.join("records.jsonl"));
    assert_eq!(
        recs.iter().filter(|r| r["scored"] == json!(true)).count(),
        1
    );
    std::fs::write(tmp.path().join("b.mp4"), good_b).unwrap();
    let o = ok(eval(&tiny_dir(), &data, &out, &[]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("retried 1 samples"));
    let recs = lines(&out.join("records.jsonl"));
    assert_eq!(
        recs.len(),
        2,
        "the failed record is replaced, not kept beside the new one"
    );
    assert!(recs.iter().all(|r| r["scored"] == json!(true)));

    // Every video broken: nothing scored, exit status 2 with the reason.
    std::fs::write(tmp.path().join("a.mp4"), b"x").unwrap();
    std::fs::write(tmp.path().join("b.mp4"), b"x").unwrap();
    let (code, err) = fails(eval(&tiny_dir(), &data, &tmp.path().join("none"), &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nothing could be scored") && err.contains("s0"),
        "{err}"
    );
    let mut k = vidflow();
    k.args([
        "knockout",
        "--quiet",
        "--all-samples",
        "--targets",
        "cross-frame",
        "--model",
    ])
    .arg(tiny_dir())
    .arg("--data")
    .arg(&data)
    .arg("--out")
    .arg(tmp.path().join("k"));
    let (code, err) = fails(k);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2 of 2 samples failed"), "{err}");
}

#[test]
fn sizes_nobody_could_run_are_refused_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 1);
    let huge = "x".repeat(100_000);
    let mut a = vidflow();
    a.args(["answer", "--model"])
        .arg(tiny_dir())
        .arg("--video")
        .arg(tmp.path().join("a.mp4"))
        .args(["--question", "Which?", "--option", &huge, "--option", "b"]);
    let (_, err) = fails(a);
    assert!(
        err.contains("bytes") && err.contains("512 positions"),
        "{err}"
    );
    // A prompt just over the model's positions, in tokens.
    let long = "word ".repeat(600);
    let list = serde_json::to_string(&json!([{"id": "long", "video": "a.mp4", "question": long,
        "options": ["a", "b"], "answer": 0}]))
    .unwrap();
    let file = tmp.path().join("long.json");
    std::fs::write(&file, list).unwrap();
    let (code, err) = fails(eval(&tiny_dir(), &file, &tmp.path().join("long"), &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_positions"), "{err}");
    let _ = data;

    let mut p = vidflow();
    p.args(["plan", "--shape"])
        .arg(common::repo_path("configs/models/llava-next-7b.yaml"))
        .args(["--config", "random:0.5", "--layout"])
        .arg("system=35,frames=100000x12x12,question=60,template=20");
    let (_, err) = fails(p);
    assert!(err.contains("14400115 positions"), "{err}");
    let mut p = vidflow();
    p.args(["plan", "--shape"])
        .arg(common::repo_path("configs/models/llava-next-7b.yaml"))
        .args(["--config", "random:0.5", "--layout"])
        .arg("system=35,frames=40x12x12,question=60,template=20");
    let (_, err) = fails(p);
    assert!(
        err.contains("5875 positions") && err.contains("at most 4096"),
        "{err}"
    );
    let mut s = vidflow();
    s.args(["synth", "--size", "100000", "--out"])
        .arg(tmp.path().join("syn"));
    let (_, err) = fails(s);
    assert!(err.contains("frame size 100000"), "{err}");
    let mut s = vidflow();
    s.args(["synth", "--size", "1024", "--frames", "4000", "--out"])
        .arg(tmp.path().join("syn"));
    let (_, err) = fails(s);
    assert!(
        err.contains("MB of frames would be held in memory"),
        "{err}"
    );
}

#[test]
fn values_that_mean_nothing_are_refused() {
    let mut d = vidflow();
    d.args(["discover", "--from", "anywhere", "--threshold", "NaN"]);
    let (_, err) = fails(d);
    assert!(err.contains("--threshold NaN"), "{err}");
    for cmd in ["plan", "bench"] {
        let mut c = vidflow();
        c.args([cmd, "--model"]).arg(tiny_dir());
        if cmd == "plan" {
            c.args(["--config", "random:0.5"]);
        } else {
            c.args(["--mode", "full"]);
        }
        c.args(["--option", "red", "--option", "blue"]);
        let (_, err) = fails(c);
        assert!(err.contains("--option needs --question"), "{cmd}: {err}");
    }
    let mut e = vidflow();
    e.args(["eval", "--model"]).arg(tiny_dir()).args([
        "--data",
        "json:x.json",
        "--mode",
        "pathways:",
        "--out",
        "/nonexistent/x",
    ]);
    let (_, err) = fails(e);
    assert!(err.contains("no pathway config named"), "{err}");
}
