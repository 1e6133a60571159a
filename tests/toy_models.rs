//! The shipped toy models (`models/toy-video`, `models/toy-image`) under vidflow reproduce the
//! held-out accuracies PyTorch measured when training them (`models/toy-train.json`): the same
//! `vidflow synth` set is regenerated from its recorded seed and scored by `vidflow eval`, i.e. by
//! vidflow's own decoding, preprocessing and ONNX graphs.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::path::Path;

use common::{repo_path, run_vidflow};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn toy_models_reproduce_their_recorded_heldout_accuracy() {
    let record = read_json(&repo_path("models/toy-train.json"));
    let settings = &record["settings"];
    let seed = settings["seed"].as_u64().unwrap()
        + settings["data"]["heldout_seed_offset"].as_u64().unwrap();
    let per_task = settings["data"]["heldout_per_task"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("heldout");
    run_vidflow(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--per-task",
        &per_task.to_string(),
        "--suite",
        "temporal",
    ]);
    for name in ["toy-video", "toy-image"] {
        let out = dir.path().join(name);
        let model = repo_path(&format!("models/{name}"));
        run_vidflow(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            &format!("tvbench:{}", data.display()),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            "1",
            "--quiet",
        ]);
        let summary = read_json(&out.join("summary.json"));
        let expected = &record["accuracy"][name]["video_heldout"];
        let tasks = summary["tasks"].as_object().unwrap();
        assert_eq!(tasks.len(), 5, "{name}");
        for (task, got) in tasks {
            let want = &expected[task];
            assert_eq!(got["scored"], want["scored"], "{name} {task}");
            let (g, w) = (
                got["correct"].as_i64().unwrap(),
                want["correct"].as_i64().unwrap(),
            );
            // Float32 graphs vs PyTorch: an option pair within rounding of a tie may flip.
            assert!(
                (g - w).abs() <= 2,
                "{name} {task}: vidflow scores {g} correct, PyTorch recorded {w}"
            );
        }
    }
}
