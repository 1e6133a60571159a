//! `vidflow discover` recovers the pathways of a model whose pathways are known: knockout records
//! are synthesised for a 20-layer model where blocking a flow hurts exactly in its pathway layers.

use std::path::Path;
use std::process::Command;

use vidflow::knockout::{Flow, KnockoutRecord, NamedTarget, RunManifest, WindowStyle};
use vidflow::pathway::PathwayConfig;

const LAYERS: usize = 20;

/// The known pathways (1-based inclusive layers where the flow matters); None = never matters.
fn truth(flow: &str) -> Option<(usize, usize)> {
    match flow {
        "cross-frame" => Some((6, 10)),
        "video ↛ question" => Some((6, 15)),
        "question ↛ last" => Some((11, 20)),
        _ => None,
    }
}

fn record(sample: usize, flow: &Flow, layer: usize, pct: f64) -> KnockoutRecord {
    KnockoutRecord {
        sample_id: format!("s{sample}"),
        task: None,
        flow: flow.name.clone(),
        target: flow.target.clone(),
        layer,
        layer_1: layer + 1,
        window: 1,
        window_style: WindowStyle::Center,
        window_layers: vec![layer],
        p_base: 0.5,
        p_knock: 0.5 * (1.0 + pct / 100.0),
        pct_change_pred: pct,
        p_true_base: 0.5,
        p_true_knock: 0.5 * (1.0 + pct / 100.0),
        pct_change_true: pct,
        base_token: 1,
        base_answer: "A".into(),
        true_token: 1,
        true_answer: "A".into(),
        new_token: 1,
        new_answer: "A".into(),
        new_prob: 0.5,
        base_correct: true,
        new_correct: true,
        edges_blocked: 10,
        rows_without_open_key: 0,
    }
}

fn write_run(dir: &Path) {
    let flows: Vec<Flow> = [NamedTarget::CrossFrame, NamedTarget::VqlToQl]
        .iter()
        .flat_map(|t| t.flows(4))
        .collect();
    let run = RunManifest {
        model: "known".into(),
        num_layers: LAYERS,
        window: 1,
        window_style: WindowStyle::Center,
        layers: (0..LAYERS).collect(),
        all_samples: false,
        masked_rows: Default::default(),
        flows: flows.clone(),
        inputs: Default::default(),
        shard: None,
        missing_shards: Vec::new(),
    };
    std::fs::write(dir.join("run.json"), serde_json::to_string(&run).unwrap()).unwrap();
    let mut lines = String::new();
    for sample in 0..6 {
        for flow in &flows {
            for layer in 0..LAYERS {
                // Deterministic per-sample noise of a few points around the flow's effect.
                let noise = (((sample * 7 + layer * 3) % 5) as f64 - 2.0) * 1.5;
                let inside = truth(&flow.name).is_some_and(|(a, b)| (a..=b).contains(&(layer + 1)));
                let pct = if inside { -30.0 + noise } else { noise };
                lines.push_str(&serde_json::to_string(&record(sample, flow, layer, pct)).unwrap());
                lines.push('\n');
            }
        }
    }
    std::fs::write(dir.join("knockouts.jsonl"), lines).unwrap();
}

fn blocked(cfg: &PathwayConfig, source: &str, target: &str) -> Vec<usize> {
    let rule = cfg
        .rules
        .iter()
        .find(|r| r.source == source && r.target == target)
        .unwrap_or_else(|| panic!("no rule {source} -> {target}"));
    (1..=LAYERS).filter(|&l| rule.blocked[l - 1]).collect()
}

#[test]
fn discovery_gives_the_known_pathways_back() {
    let tmp = tempfile::tempdir().unwrap();
    write_run(tmp.path());
    let out = tmp.path().join("found.yaml");
    let run = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["discover", "--from"])
        .arg(tmp.path())
        .args(["--interval", "5", "--threshold", "-5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let cfg = PathwayConfig::from_file(&out).expect("the written config parses");
    assert_eq!(cfg.num_layers, LAYERS);
    let outside = |a: usize, b: usize| -> Vec<usize> {
        (1..=LAYERS).filter(|l| !(a..=b).contains(l)).collect()
    };
    assert_eq!(blocked(&cfg, "cross-frame", "cross-frame"), outside(6, 10));
    assert_eq!(blocked(&cfg, "video", "question"), outside(6, 15));
    assert_eq!(blocked(&cfg, "question", "last"), outside(11, 20));
    let all: Vec<usize> = (1..=LAYERS).collect();
    assert_eq!(blocked(&cfg, "video", "last"), all);
    assert_eq!(blocked(&cfg, "last", "last"), all);
    // As in the published configs: video tokens stop reading each other after video → question.
    assert_eq!(
        blocked(&cfg, "video", "video"),
        (16..=LAYERS).collect::<Vec<_>>()
    );
    assert!(cfg
        .rules
        .iter()
        .all(|r| !(r.source == "question" && r.target == "question")));
}

#[test]
fn a_stricter_threshold_keeps_fewer_layers_open() {
    let tmp = tempfile::tempdir().unwrap();
    write_run(tmp.path());
    let out = tmp.path().join("strict.yaml");
    let run = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["discover", "--from"])
        .arg(tmp.path())
        .args(["--threshold", "-50", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cfg = PathwayConfig::from_file(&out).unwrap();
    let all: Vec<usize> = (1..=LAYERS).collect();
    assert_eq!(
        blocked(&cfg, "video", "question"),
        all,
        "no interval reaches -50%"
    );
}

#[test]
fn a_folder_without_records_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(["discover", "--from"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("run.json"));
}
