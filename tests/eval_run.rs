//! `vidflow eval` / `vidflow merge` on TVBench- and TOMATO-layout folders generated here.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ffmpeg_clip, tiny_dir};
use serde_json::{json, Value};

const PATTERNS: [&str; 3] = ["testsrc2", "mandelbrot", "rgbtestsrc"];

/// A TVBench folder: two tasks, `per_task` good records each, plus three bad ones.
fn tvbench(dir: &Path, per_task: usize) -> usize {
    let tasks = ["action_sequence", "scene_transition"];
    for task in tasks {
        for (i, p) in PATTERNS.iter().enumerate() {
            ffmpeg_clip(&dir.join(format!("video/{task}/v{i}.mp4")), p);
        }
        let mut recs: Vec<Value> = (0..per_task)
            .map(|i| {
                json!({"video": format!("v{}.mp4", i % 3), "question": format!("What happened first in clip {i}?"),
                       "candidates": ["The light turned on.", "The door opened.", "Nothing"],
                       "answer": "The door opened.", "question_id": format!("q{i}")})
            })
            .collect();
        if task == "action_sequence" {
            recs.push(json!({"video": "gone.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a", "question_id": "missing"}));
            recs.push(json!({"video": "v0.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "c", "question_id": "wrong_answer"}));
            recs.push(json!({"video": "v0.mp4", "question": "Q?", "candidates": ["a"], "answer": "a", "question_id": "one_option"}));
        }
        std::fs::create_dir_all(dir.join("json")).unwrap();
        std::fs::write(
            dir.join(format!("json/{task}.json")),
            serde_json::to_string(&recs).unwrap(),
        )
        .unwrap();
    }
    2 * per_task
}

/// A TOMATO folder: one reasoning type, three good records (3 to 5 options), two bad ones.
fn tomato(dir: &Path) -> usize {
    for (i, p) in PATTERNS.iter().enumerate() {
        ffmpeg_clip(&dir.join(format!("videos/human/k{i}.mp4")), p);
    }
    let mut recs = serde_json::Map::new();
    for i in 0..3 {
        let options: Vec<String> = (0..3 + i).map(|j| format!("{} times", j + 1)).collect();
        recs.insert(
            format!("id{i}"),
            json!({"question": "How many times does it turn?", "options": options, "answer": i,
                   "key": format!("k{i}"), "demonstration_type": "human", "motion_type": "rotation", "variation": "none"}),
        );
    }
    recs.insert("bad_answer".into(), json!({"question": "Q?", "options": ["a", "b", "c"], "answer": 7, "key": "k0", "demonstration_type": "human"}));
    recs.insert("no_video".into(), json!({"question": "Q?", "options": ["a", "b", "c"], "answer": 0, "key": "zz", "demonstration_type": "human"}));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/count.json"),
        serde_json::to_string(&Value::Object(recs)).unwrap(),
    )
    .unwrap();
    3
}

fn eval_cmd(data: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidflow"));
    c.args(["eval", "--model"])
        .arg(tiny_dir())
        .args(["--data", data, "--quiet", "--threads", "1", "--out"])
        .arg(out)
        .args(extra);
    c
}

fn run_ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_id(recs: &[Value]) -> BTreeMap<String, Value> {
    recs.iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn tvbench_accuracy_is_counted_from_the_records_and_bad_records_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tvbench");
    let good = tvbench(&data, 4);
    let out = tmp.path().join("run");
    run_ok(eval_cmd(&format!("tvbench:{}", data.display()), &out, &[]));

    let recs = records(&out);
    assert_eq!(
        recs.len(),
        good,
        "one record per good sample, bad ones never scored"
    );
    let mut correct = 0;
    for r in &recs {
        let probs: Vec<f64> = r["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let argmax = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        assert_eq!(r["predicted"].as_u64().unwrap() as usize, argmax);
        assert_eq!(r["truth"], 1);
        assert_eq!(r["correct"].as_bool().unwrap(), argmax == 1);
        assert_eq!(
            r["edges_open"], r["edges_total"],
            "full mode keeps every edge"
        );
        correct += usize::from(argmax == 1);
    }
    let s = summary(&out);
    assert_eq!(s["overall"]["scored"], good);
    assert_eq!(s["overall"]["correct"], correct);
    assert!(
        (s["overall"]["accuracy"].as_f64().unwrap() - correct as f64 / good as f64).abs() < 1e-12
    );
    assert_eq!(s["tasks"].as_object().unwrap().len(), 2);
    let reasons: BTreeMap<String, String> = s["not_scored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons["action_sequence/missing"].contains("gone.mp4"));
    assert!(reasons["action_sequence/wrong_answer"].contains("not among the candidates"));
    assert!(reasons["action_sequence/one_option"].contains("1 options"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.starts_with("task,scored,correct,accuracy") && csv.contains("\noverall,"));

    // --tasks keeps one task; an unknown task is an error naming it.
    let one = tmp.path().join("one");
    run_ok(eval_cmd(
        &format!("tvbench:{}", data.display()),
        &one,
        &["--tasks", "scene_transition"],
    ));
    assert_eq!(records(&one).len(), good / 2);
    let bad = eval_cmd(
        &format!("tvbench:{}", data.display()),
        &tmp.path().join("x"),
        &["--tasks", "nope"],
    )
    .output()
    .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("task `nope`"));
}

#[test]
fn tomato_layout_with_three_to_five_options() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tomato");
    let good = tomato(&data);
    let out = tmp.path().join("run");
    run_ok(eval_cmd(&format!("tomato:{}", data.display()), &out, &[]));
    let recs = by_id(&records(&out));
    assert_eq!(recs.len(), good);
    for i in 0..3 {
        let r = &recs[&format!("count/id{i}")];
        assert_eq!(r["probs"].as_array().unwrap().len(), 3 + i);
        assert_eq!(r["truth"], i);
    }
    let s = summary(&out);
    let ids: Vec<&str> = s["not_scored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["count/bad_answer", "count/no_video"]);
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tvbench");
    let good = tvbench(&data, 30);
    let spec = format!("tvbench:{}", data.display());

    let clean = tmp.path().join("clean");
    run_ok(eval_cmd(&spec, &clean, &[]));
    let reference = by_id(&records(&clean));
    assert_eq!(reference.len(), good);

    // Kill a real run as soon as it has written its first records.
    let killed = tmp.path().join("killed");
    let mut child = eval_cmd(&spec, &killed, &[]).spawn().unwrap();
    let path = killed.join("records.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 2
        && t0.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read_to_string(&path).unwrap().lines().count();
    run_ok(eval_cmd(&spec, &killed, &[]));
    let after = records(&killed);
    assert_eq!(
        after.len(),
        good,
        "killed after {before} records; resumed run must hold each sample once"
    );
    assert_eq!(by_id(&after), reference);

    // A torn last line (killed mid-write) is discarded and its sample redone.
    let torn = tmp.path().join("torn");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::copy(clean.join("settings.json"), torn.join("settings.json")).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(clean.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut partial = lines[..7].join("\n") + "\n";
    partial.push_str(&lines[7][..lines[7].len() / 2]);
    std::fs::write(torn.join("records.jsonl"), partial).unwrap();
    run_ok(eval_cmd(&spec, &torn, &[]));
    let resumed = records(&torn);
    assert_eq!(resumed.len(), good);
    assert_eq!(by_id(&resumed), reference);

    // Resuming with other settings is refused.
    let other = eval_cmd(&spec, &torn, &["--limit", "3"]).output().unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("limit"));
}

#[test]
fn shards_merge_into_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tvbench");
    let good = tvbench(&data, 5);
    let spec = format!("tvbench:{}", data.display());
    let whole = tmp.path().join("whole");
    run_ok(eval_cmd(&spec, &whole, &[]));
    let shards: Vec<PathBuf> = (1..=3).map(|k| tmp.path().join(format!("s{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        run_ok(eval_cmd(&spec, dir, &["--shard", &format!("{}/3", k + 1)]));
    }
    let sizes: Vec<usize> = shards.iter().map(|d| records(d).len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), good);
    assert!(sizes.iter().all(|&n| n > 0));

    let merged = tmp.path().join("merged");
    let mut m = Command::new(env!("CARGO_BIN_EXE_vidflow"));
    m.args(["merge", "--out"]).arg(&merged).args(&shards);
    run_ok(m);
    assert_eq!(by_id(&records(&merged)), by_id(&records(&whole)));
    let (a, b) = (summary(&merged), summary(&whole));
    assert_eq!(a["overall"], b["overall"]);
    assert_eq!(
        a["not_scored"].as_array().unwrap().len(),
        b["not_scored"].as_array().unwrap().len()
    );

    // Shards of different settings, or the same shard twice, are refused.
    let odd = tmp.path().join("odd");
    run_ok(eval_cmd(&spec, &odd, &["--shard", "2/3", "--frames", "2"]));
    for bad in [vec![&shards[0], &odd], vec![&shards[0], &shards[0]]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
            .args(["merge", "--out"])
            .arg(tmp.path().join("m2"))
            .args(bad)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("frames") || err.contains("twice"), "{err}");
    }
}

#[test]
fn pathway_and_random_modes_on_both_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let tv = tmp.path().join("tvbench");
    let to = tmp.path().join("tomato");
    tvbench(&tv, 2);
    tomato(&to);
    let config = common::repo_path("configs/pathways/tiny.yaml");
    let pathways = format!("pathways:{}", config.display());
    for data in [
        format!("tvbench:{}", tv.display()),
        format!("tomato:{}", to.display()),
    ] {
        let full_dir = tmp.path().join("full");
        let _ = std::fs::remove_dir_all(&full_dir);
        run_ok(eval_cmd(&data, &full_dir, &[]));
        let full = by_id(&records(&full_dir));
        for (mode, dir) in [(pathways.as_str(), "pw"), ("random:0.5", "rnd")] {
            let out = tmp.path().join(dir);
            let _ = std::fs::remove_dir_all(&out);
            run_ok(eval_cmd(&data, &out, &["--mode", mode, "--seed", "3"]));
            let recs = by_id(&records(&out));
            assert_eq!(recs.len(), full.len(), "{mode} on {data}");
            let mut changed = 0;
            for (id, r) in &recs {
                let (open, total) = (
                    r["edges_open"].as_u64().unwrap(),
                    r["edges_total"].as_u64().unwrap(),
                );
                assert_eq!(total, full[id]["edges_total"].as_u64().unwrap());
                assert!(open < total, "{mode}: {id} keeps every edge");
                changed += usize::from(r["probs"] != full[id]["probs"]);
            }
            assert!(changed > 0, "{mode} changed no probability on {data}");
            let share = summary(&out)["overall"]["mean_edge_share"]
                .as_f64()
                .unwrap();
            assert!(share > 0.0 && share < 1.0, "{mode}: share {share}");
        }
    }
}
