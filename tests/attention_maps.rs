//! Attention maps on the tiny package (tests/fixtures/tiny): masses add up, a knockout of
//! video ↛ last empties the last row's video attention exactly in the blocked layers and nowhere
//! before them, and the heatmaps are written.

mod common;

use common::{open_tiny, repo_path, tiny_dir};
use vidflow::answer::{load_samples, prepare};
use vidflow::attention::{
    attention_sample, write_heatmaps, AttentionMap, AttentionSettings, Panel,
};
use vidflow::knockout::{Block, Flow};
use vidflow::prompt::PromptBuilder;

#[test]
fn maps_add_up_and_knockouts_empty_the_blocked_layers() {
    let pkg = open_tiny();
    let builder = PromptBuilder::new(&pkg.manifest, &tiny_dir()).unwrap();
    let samples = load_samples(&repo_path("tests/fixtures/knockout/samples.json"))
        .unwrap()
        .samples;
    let inputs = prepare(&builder, &pkg.manifest.video, &samples[0]).unwrap();
    let flow = Flow {
        name: "video ↛ last".into(),
        target: "custom".into(),
        blocks: vec![Block::new("video", "last")],
    };
    let settings = AttentionSettings {
        query: "last".into(),
        layers: vec![0, 1, 2, 3],
        knockout: Some((flow, vec![1, 2])),
        out_dir: "unused".into(),
        workers: 1,
        progress: false,
        inputs: Default::default(),
        shard: None,
    };
    let recs = attention_sample(&pkg, &samples[0], &inputs, &settings).unwrap();
    assert_eq!(recs.len(), 8);
    let (base, knock) = recs.split_at(4);
    for r in &recs {
        assert!(
            (r.video_mass + r.other_mass - 1.0).abs() < 1e-5,
            "{} L{}",
            r.variant,
            r.layer
        );
        assert!((r.frame_mass.iter().sum::<f64>() - r.video_mass).abs() < 1e-9);
        assert_eq!(r.frames.len(), 4);
        assert_eq!((r.frames[0].len(), r.frames[0][0].len()), (4, 4));
    }
    assert!(base
        .iter()
        .all(|r| r.variant == "baseline" && r.video_mass > 0.01));
    // Layer 0 runs before the block: identical; layers 1-2 blocked: no video attention at all.
    assert_eq!(knock[0].frames, base[0].frames);
    assert_eq!((knock[1].video_mass, knock[2].video_mass), (0.0, 0.0));
    assert!(knock[3].video_mass > 0.0 && knock[3].frames != base[3].frames);
    assert_eq!(knock[1].flow.as_deref(), Some("video ↛ last"));
    assert_eq!(knock[1].block_layers, vec![1, 2]);

    // Query rows are averaged: the question group differs from the last row.
    let q = AttentionSettings {
        query: "question".into(),
        knockout: None,
        ..settings
    };
    let qrecs = attention_sample(&pkg, &samples[0], &inputs, &q).unwrap();
    assert_eq!(qrecs.len(), 4);
    assert_ne!(qrecs[0].frames, base[0].frames);

    let dir = tempfile::tempdir().unwrap();
    let panel = |variant: &str| Panel {
        title: variant.into(),
        maps: recs
            .iter()
            .filter(|r| r.variant == variant)
            .map(|r| AttentionMap {
                layer: r.layer,
                frames: r.frames.clone(),
                video_mass: r.video_mass,
                other_mass: r.other_mass,
            })
            .collect(),
    };
    let (png, svg) = write_heatmaps(
        &dir.path().join("h"),
        "t",
        &[panel("baseline"), panel("knockout")],
    )
    .unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert!(img.width() > 500 && img.height() > 4 * 72);
    assert!(std::fs::read_to_string(svg).unwrap().contains("frame 4"));
}

#[test]
fn the_attention_command_draws_a_heatmap_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("att");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .current_dir(repo_path(""))
        .args([
            "attention",
            "--model",
            tiny_dir().to_str().unwrap(),
            "--data",
        ])
        .arg(repo_path("tests/fixtures/knockout/samples.json"))
        .args([
            "--targets",
            "vql-to-ql",
            "--flow",
            "video ↛ last",
            "--block-layers",
            "1-3",
        ])
        .args([
            "--layers",
            "0-3",
            "--quiet",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = std::fs::read_to_string(out.join("attention.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2 * 2 * 3);
    for id in ["clip0-order", "clip1-zoom"] {
        assert!(out.join(format!("heatmaps/{id}.png")).is_file());
        assert!(out.join(format!("heatmaps/{id}.svg")).is_file());
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .current_dir(repo_path(""))
        .args([
            "attention",
            "--model",
            tiny_dir().to_str().unwrap(),
            "--data",
        ])
        .arg(repo_path("tests/fixtures/knockout/samples.json"))
        .args([
            "--targets",
            "vql-to-ql",
            "--flow",
            "video ↛ lats",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("video ↛ lats"));
}
