//! `vidflow demo`, shortened to a few samples: every step runs and writes what the report claims,
//! the counts agree with the settings (known edge and record counts), a rerun resumes, and a
//! folder made with other settings is refused.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{repo_path, tiny_dir};
use serde_json::Value;

/// The packages a demo runs on: video model, image-stage model, decoder layers.
struct Models {
    video: PathBuf,
    image: PathBuf,
    layers: usize,
}

fn demo(models: &Models, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .arg("demo")
        .arg("--model")
        .arg(&models.video)
        .arg("--image-model")
        .arg(&models.image)
        .arg("--out")
        .arg(out)
        .args([
            "--knockout-per-task",
            "2",
            "--knockout-all-samples",
            "--bench-runs",
            "2",
        ])
        .args(["--threads", "1", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shortened_demo_on_the_toy_models() {
    check_shortened_demo(&Models {
        video: repo_path("models/toy-video"),
        image: repo_path("models/toy-image"),
        layers: 8,
    });
}

#[test]
fn shortened_demo_on_the_random_weight_test_package() {
    check_shortened_demo(&Models {
        video: tiny_dir(),
        image: tiny_dir(),
        layers: 4,
    });
}

fn check_shortened_demo(models: &Models) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let l = models.layers;
    let stdout = ok(&demo(models, &out, &["--per-task", "3"]));
    assert!(stdout.contains("report written to"), "{stdout}");

    // The held-out set: 5 tasks x 3 samples, each evaluated once per mode.
    let tasks: Vec<_> = std::fs::read_dir(out.join("data/json")).unwrap().collect();
    assert_eq!(tasks.len(), 5);
    for run in ["video-full", "image-full", "video-pathways", "video-random"] {
        let records = lines(&out.join("eval").join(run).join("records.jsonl"));
        assert_eq!(records.len(), 15, "{run}");
        assert!(records.iter().all(|r| r["scored"] == true), "{run}");
    }

    // Knockout: the four reference targets are 11 flows (1 cross-frame curve, 4 + 3 + 3 group
    // flows), one record per flow and sweep layer for each of the 10 samples (every sample is
    // knocked out here). The image model's run keeps every sample too, one flow.
    let samples = lines(&out.join("knockout/video/samples.jsonl"));
    assert_eq!(samples.len(), 10, "2 samples of each of the 5 tasks");
    assert!(samples.iter().all(|s| s["status"] == "used"));
    let records = lines(&out.join("knockout/video/knockouts.jsonl"));
    assert_eq!(records.len(), 10 * 11 * l);
    let image_records = lines(&out.join("knockout/image-cross-frame/knockouts.jsonl"));
    assert_eq!(image_records.len(), 10 * l);
    assert!(image_records.iter().all(|r| r["flow"] == "cross-frame"));

    // The pathway config is a valid one, and random blocking closed as many edges: the two edge
    // shares come from independent edge counts (pruned plan vs drawn random masks).
    let cfg = out.join("pathways.yaml");
    vidflow::pathway::Pathways::parse(cfg.to_str().unwrap()).expect("a valid pathway config");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let kept = summary["pathways_edge_share"].as_f64().unwrap();
    let random = summary["random_edge_share"].as_f64().unwrap();
    assert!(kept < 1.0, "the discovered pathways block some edges");
    assert!(
        (kept - random).abs() < 0.01,
        "pathways {kept} vs random {random}"
    );
    // Compute-aware discovery: every (video cutoff c < last-only d < exit K) triple of the
    // layers, each of c and d optional, was judged on the 10 validation samples: per K,
    // K + K(K-1)/2 triples.
    let compute = &summary["compute"];
    let triples: usize = (1..=l).map(|k| k + k * (k - 1) / 2).sum();
    assert_eq!(compute["candidates"].as_array().unwrap().len(), triples);
    assert_eq!(compute["samples"], 10);
    let chosen = &compute["candidates"][compute["chosen"].as_u64().unwrap() as usize];
    assert!(
        chosen["worst_drop_points"].as_f64().unwrap() <= 2.0 + 1e-9,
        "{chosen}"
    );
    let ccfg = out.join("compute.yaml");
    vidflow::pathway::Pathways::parse(ccfg.to_str().unwrap()).expect("a valid compute config");
    let compute_records = lines(&out.join("eval/video-compute/records.jsonl"));
    assert_eq!(compute_records.len(), 15);
    // The frontier table: one row per benchmarked mode, its accuracies those of the evaluations.
    let modes = summary["bench"]["modes"].as_array().unwrap();
    let exit = !summary["exit_layer"].is_null();
    assert_eq!(modes.len(), if exit { 6 } else { 5 });
    let frontier = summary["frontier"].as_array().unwrap();
    assert_eq!(frontier.len(), modes.len());
    assert_eq!(
        frontier[2]["accuracy"],
        summary["eval_compute"]["overall"]["accuracy"]
    );
    assert!(
        frontier[modes.len() - 2]["accuracy"].is_null(),
        "prefix reuse is exact"
    );
    // Verification ran: the final config costs the worst task no more than the threshold (-5%),
    // and what it reopened is open.
    let verified = summary["discovery_verified_pct_change"]
        .as_f64()
        .expect("the demo verifies its discovery");
    assert!(verified >= -5.0, "verified config costs {verified}%");
    for f in summary["discovery"].as_array().unwrap() {
        for i in f["intervals"].as_array().unwrap() {
            if i["reopened"] == true {
                assert_eq!(i["open"], true, "{f}");
            }
        }
    }

    // The report shows the table with the measured accuracy, and every embedded plot exists.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let acc = summary["eval_full"]["overall"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(report.contains(&format!("| full attention | {:.1}% |", 100.0 * acc)));
    let plots: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("![").and_then(|l| l.split("](").nth(1)))
        .map(|l| l.trim_end_matches(')'))
        .collect();
    assert!(
        plots.len() >= 9,
        "knockout, image contrast and lens plots: {plots:?}"
    );
    for p in &plots {
        assert!(out.join(p).is_file(), "{p}");
    }

    // A rerun resumes from the folders: same numbers, nothing recomputed twice.
    ok(&demo(models, &out, &["--per-task", "3"]));
    assert_eq!(
        lines(&out.join("knockout/video/knockouts.jsonl")).len(),
        records.len()
    );
    assert_eq!(lines(&out.join("eval/video-full/records.jsonl")).len(), 15);
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(again["eval_pathways"], summary["eval_pathways"]);
    // The compute search is read back, not run again: the measured speedups, which a new
    // benchmark would change, are the same.
    assert_eq!(again["compute"], summary["compute"]);

    // Other settings on the same folder: refused, naming the file.
    let other = demo(models, &out, &["--per-task", "4"]);
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("synth.json") && err.contains("4 per task"),
        "{err}"
    );
}
