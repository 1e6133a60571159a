//! `--shard K/N` and `vidflow merge` for lens and attention runs (eval: tests/eval_run.rs and
//! tests/run_folders.rs; knockout: tests/slurm.rs): the merged folder holds every record of a
//! single-process run exactly once, in its order, with the same summary CSV.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ffmpeg_clip, tiny_dir};
use serde_json::json;

fn samples(dir: &Path, n: usize) -> PathBuf {
    let patterns = ["testsrc2", "mandelbrot", "rgbtestsrc"];
    for (i, p) in patterns.iter().enumerate() {
        ffmpeg_clip(&dir.join(format!("v{i}.mp4")), p);
    }
    let recs: Vec<_> = (0..n)
        .map(|i| {
            json!({"id": format!("s{i}"), "video": format!("v{}.mp4", i % 3),
                   "question": format!("What happens in clip {i}?"),
                   "options": ["It turns.", "It stops.", "It grows."], "answer": i % 3})
        })
        .collect();
    let path = dir.join("samples.json");
    std::fs::write(&path, serde_json::to_string(&recs).unwrap()).unwrap();
    path
}

fn run(args: &[&str], extra: &[&std::ffi::OsStr]) {
    let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn os(v: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
    v.iter().map(|s| s.as_os_str()).collect()
}

/// Runs `cmd` once whole and as 3 shards, merges, and returns (single, merged) folders.
fn whole_and_merged(tmp: &Path, data: &Path, cmd: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let base = |out: &Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> =
            vec!["--model".into(), tiny_dir().into(), "--data".into()];
        v.push(data.into());
        v.extend(["--quiet", "--threads", "1", "--out"].map(Into::into));
        v.push(out.into());
        v
    };
    let single = tmp.join(format!("{cmd}-single"));
    let b = base(&single);
    run(&[&[cmd][..], args].concat(), &os(&b));
    let mut shards = Vec::new();
    for k in 1..=3 {
        let dir = tmp.join(format!("{cmd}-shard{k}"));
        let b = base(&dir);
        let shard = format!("{k}/3");
        run(&[&[cmd][..], args, &["--shard", &shard]].concat(), &os(&b));
        shards.push(dir.into_os_string());
    }
    let merged = tmp.join(format!("{cmd}-merged"));
    let mut m: Vec<std::ffi::OsString> = vec![merged.clone().into()];
    m.extend(shards);
    run(&["merge", "--out"], &os(&m));
    (single, merged)
}

#[test]
fn lens_shards_merge_into_the_single_process_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 7);
    let (single, merged) = whole_and_merged(tmp.path(), &data, "lens", &["--all-samples"]);
    assert_eq!(
        text(merged.join("lens.jsonl")),
        text(single.join("lens.jsonl"))
    );
    assert_eq!(
        text(merged.join("lens_samples.jsonl")),
        text(single.join("lens_samples.jsonl"))
    );
    assert_eq!(
        text(merged.join("lens_summary.csv")),
        text(single.join("lens_summary.csv"))
    );
    assert!(merged.join("plots/lens_option_prob.png").is_file());
    assert_eq!(text(single.join("lens.jsonl")).lines().count(), 7 * 4);
}

#[test]
fn attention_shards_merge_into_the_single_process_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = samples(tmp.path(), 5);
    let (single, merged) = whole_and_merged(tmp.path(), &data, "attention", &["--layers", "1-2"]);
    assert_eq!(
        text(merged.join("attention.jsonl")),
        text(single.join("attention.jsonl"))
    );
    for i in 0..5 {
        assert!(merged.join(format!("heatmaps/s{i}.png")).is_file());
    }
    // Shards of different settings are refused.
    let odd = tmp.path().join("odd");
    run(
        &[
            "attention",
            "--layers",
            "1-3",
            "--shard",
            "1/3",
            "--quiet",
            "--model",
        ],
        &[
            tiny_dir().as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--out".as_ref(),
            odd.as_os_str(),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["merge", "--out"])
        .arg(tmp.path().join("m2"))
        .arg(&odd)
        .arg(tmp.path().join("attention-shard2"))
        .arg(tmp.path().join("attention-shard3"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a shard of the same run"),
        "{err}"
    );
}
