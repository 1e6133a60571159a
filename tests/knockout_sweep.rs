//! Knockout sweeps on the shipped tiny package (tests/fixtures/tiny, 4 layers).
//!
//! - The optimised sweep (cached prefix, suffix-only recomputation, batches) equals the naive one
//!   (a full forward per knockout) record for record, for all four targets and window styles, on
//!   videos generated here with the `ffmpeg` CLI.
//! - Windows and flows expand to hand-written layer lists and positions.
//! - vidflow agrees with the committed records of the PyTorch reference of the published method
//!   (tests/fixtures/knockout/reference_records.jsonl, see make_reference.sh there).
//! - The command resumes an interrupted run without losing or repeating records, and writes the
//!   summary and plots.

mod common;

use std::collections::HashMap;
use std::path::Path;
#[cfg(feature = "video")]
use std::path::PathBuf;
use std::process::Command;

use common::{open_tiny, repo_path, tiny_dir};
use serde::Deserialize;
use vidflow::answer::{load_samples, prepare, Sample, SampleInputs};
use vidflow::knockout::{
    collect_flows, plan_knockouts, sweep_sample, Block, Execution, Flow, KnockoutRecord,
    NamedTarget, ResolvedFlow, SampleStatus, SweepSettings, WindowStyle,
};
use vidflow::mask::MaskedRows;
use vidflow::package::Package;
use vidflow::prompt::PromptBuilder;

const LAYERS: usize = 4;
const WINDOW: usize = 3;

fn builder(pkg: &Package) -> PromptBuilder {
    PromptBuilder::new(&pkg.manifest, &tiny_dir()).unwrap()
}

fn prepared(pkg: &Package, samples: &[Sample]) -> Vec<SampleInputs> {
    let b = builder(pkg);
    samples
        .iter()
        .map(|s| prepare(&b, &pkg.manifest.video, s).unwrap())
        .collect()
}

fn all_flows() -> Vec<Flow> {
    collect_flows(&NamedTarget::ALL, &[], 4).unwrap()
}

fn settings(style: WindowStyle, execution: Execution, all_samples: bool) -> SweepSettings {
    SweepSettings {
        window: WINDOW,
        style,
        layers: (0..LAYERS).collect(),
        all_samples,
        execution,
        masked_rows: MaskedRows::Uniform,
    }
}

fn sweep(
    pkg: &Package,
    sample: &Sample,
    inputs: &SampleInputs,
    flows: &[Flow],
    s: &SweepSettings,
) -> vidflow::knockout::SampleOutcome {
    let b = builder(pkg);
    sweep_sample(pkg, b.tokenizer(), sample, inputs, flows, s, &mut |_| {}).unwrap()
}

/// `ffmpeg -v error -y <args> <dir/name>`.
#[cfg(feature = "video")]
fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("these tests need the ffmpeg CLI on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Two generated videos and their sample list (decoding them needs the `video` feature).
#[cfg(feature = "video")]
fn generated_samples(dir: &Path) -> Vec<Sample> {
    ffmpeg(
        dir,
        "a.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x64:rate=8:duration=2",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    ffmpeg(
        dir,
        "b.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "mandelbrot=size=80x80:rate=6,trim=duration=2",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let json = r#"[
      {"id": "a", "task": "motion", "video": "a.mp4", "question": "Where does the bar move?",
       "options": ["Left", "Right", "Nowhere"], "answer": 2},
      {"id": "b", "task": "zoom", "video": "b.mp4", "question": "Does the picture zoom?",
       "options": ["Yes, in", "No"], "answer": 0}
    ]"#;
    let path = dir.join("samples.json");
    std::fs::write(&path, json).unwrap();
    load_samples(&path).unwrap().samples
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()) + 1e-300
}

#[cfg(feature = "video")]
#[test]
fn optimised_sweep_equals_naive_sweep_for_every_target_and_style() {
    let pkg = open_tiny();
    let dir = tempfile::tempdir().unwrap();
    let samples = generated_samples(dir.path());
    let inputs = prepared(&pkg, &samples);
    let flows = all_flows();
    assert_eq!(flows.len(), 11);
    let mut checked = 0;
    for style in WindowStyle::ALL {
        for (sample, inp) in samples.iter().zip(&inputs) {
            let fast = sweep(
                &pkg,
                sample,
                inp,
                &flows,
                &settings(style, Execution::Optimised { max_batch: 3 }, true),
            );
            let slow = sweep(
                &pkg,
                sample,
                inp,
                &flows,
                &settings(style, Execution::Naive, true),
            );
            assert_eq!(fast.sample, slow.sample);
            assert_eq!(fast.knockouts.len(), flows.len() * LAYERS);
            assert_eq!(fast.knockouts.len(), slow.knockouts.len());
            for (f, n) in fast.knockouts.iter().zip(&slow.knockouts) {
                let what = format!("{} {style} {} layer {}", sample.id, f.flow, f.layer);
                assert_eq!(
                    (
                        &f.flow,
                        f.layer,
                        &f.window_layers,
                        f.edges_blocked,
                        f.rows_without_open_key
                    ),
                    (
                        &n.flow,
                        n.layer,
                        &n.window_layers,
                        n.edges_blocked,
                        n.rows_without_open_key
                    ),
                    "{what}"
                );
                assert_eq!(f.p_base, n.p_base, "{what}");
                assert!(
                    rel_close(f.p_knock, n.p_knock, 1e-5),
                    "{what}: p_knock {} vs {}",
                    f.p_knock,
                    n.p_knock
                );
                assert!(
                    rel_close(f.p_true_knock, n.p_true_knock, 1e-5),
                    "{what}: p_true_knock {} vs {}",
                    f.p_true_knock,
                    n.p_true_knock
                );
                assert_eq!(f.new_token, n.new_token, "{what}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 2 * 11 * LAYERS);
}

#[test]
fn optimised_sweep_recomputes_only_the_changed_suffix_in_shared_batches() {
    let pkg = open_tiny();
    let samples = load_samples(&repo_path("tests/fixtures/knockout/samples.json"))
        .unwrap()
        .samples;
    let inp = &prepared(&pkg, &samples[..1])[0];
    let s = inp.layout.seq_len;
    let q0 = inp.layout.group("question").unwrap()[0];
    let flows = collect_flows(&[NamedTarget::VqlToQl], &[], 4).unwrap();
    let run = |execution| {
        sweep(
            &pkg,
            &samples[0],
            inp,
            &flows,
            &settings(WindowStyle::Center, execution, true),
        )
    };
    // Center, k = 3: windows start at layers 0, 0, 1, 2. The three "→ last" flows recompute only
    // the last row and share batches by window start; video ↛ question recomputes rows q0..S.
    let fast = run(Execution::Optimised { max_batch: 8 });
    assert_eq!(fast.cost.forwards, 3 + 3);
    let last_rows = 6 * 4 + 3 * 3 + 3 * 2;
    let question_rows = (2 * 4 + 3 + 2) * (s - q0);
    assert_eq!(fast.cost.row_layers, last_rows + question_rows);
    let slow = run(Execution::Naive);
    assert_eq!(slow.cost.forwards, 16);
    assert_eq!(slow.cost.row_layers, 16 * s * LAYERS);
    // Batches of two: groups of 6, 3, 3 ("→ last") and 2, 1, 1 (video ↛ question) knockouts.
    let small = run(Execution::Optimised { max_batch: 2 });
    assert_eq!(small.cost.forwards, (3 + 2 + 2) + (1 + 1 + 1));
    assert_eq!(small.cost.row_layers, fast.cost.row_layers);
}

#[test]
fn windows_expand_to_hand_written_layer_lists() {
    let windows = |style, window| -> Vec<Vec<usize>> {
        plan_knockouts(1, &[0, 1, 2, 3], window, style, LAYERS)
            .into_iter()
            .map(|k| k.window)
            .collect()
    };
    let v = |x: &[&[usize]]| -> Vec<Vec<usize>> { x.iter().map(|l| l.to_vec()).collect() };
    assert_eq!(
        windows(WindowStyle::Center, 3),
        v(&[&[0, 1], &[0, 1, 2], &[1, 2, 3], &[2, 3]])
    );
    assert_eq!(
        windows(WindowStyle::Inverse, 3),
        v(&[&[2, 3], &[3], &[0], &[0, 1]])
    );
    assert_eq!(
        windows(WindowStyle::TopDown, 3),
        v(&[&[0, 1, 2, 3], &[1, 2, 3], &[2, 3], &[3]])
    );
    assert_eq!(
        windows(WindowStyle::BottomUp, 3),
        v(&[&[0], &[0, 1], &[0, 1, 2], &[0, 1, 2, 3]])
    );
    assert_eq!(
        windows(WindowStyle::Center, 2),
        v(&[&[0], &[0, 1], &[1, 2], &[2, 3]])
    );
    assert_eq!(windows(WindowStyle::Center, 9), vec![vec![0, 1, 2, 3]; 4]);
    assert_eq!(
        windows(WindowStyle::Inverse, 9),
        vec![Vec::<usize>::new(); 4]
    );
    // Flow-major, then layer: the order records are written in.
    let plan = plan_knockouts(2, &[1, 2], 3, WindowStyle::Center, LAYERS);
    let order: Vec<(usize, usize)> = plan.iter().map(|k| (k.flow, k.layer)).collect();
    assert_eq!(order, vec![(0, 1), (0, 2), (1, 1), (1, 2)]);
}

fn range(a: usize, b: usize) -> Vec<usize> {
    (a..b).collect()
}

#[test]
fn targets_expand_to_hand_written_positions() {
    let pkg = open_tiny();
    let samples = load_samples(&repo_path("tests/fixtures/knockout/samples.json"))
        .unwrap()
        .samples;
    let inp = &prepared(&pkg, &samples[..1])[0];
    let layout = &inp.layout;
    // The fixture prompt: 4 frames of 4x4 tokens from position 32; answer "(B) ..." is option 1.
    let (v0, s) = (layout.placeholder_index, layout.seq_len);
    assert_eq!(
        (v0, layout.num_video_tokens(), layout.answer),
        (32, 64, Some(1))
    );
    let last = s - 1;
    let g = |n: &str| layout.group(n).unwrap().to_vec();
    let resolve = |f: &Flow| ResolvedFlow::new(f, layout).unwrap();
    let flows = all_flows();
    let by_name: HashMap<&str, &Flow> = flows.iter().map(|f| (f.name.as_str(), f)).collect();

    let cf = resolve(by_name["cross-frame"]);
    assert_eq!(
        cf.pairs,
        vec![
            (range(32, 48), range(48, 64)),
            (range(32, 64), range(64, 80)),
            (range(32, 80), range(80, 96)),
        ]
    );
    assert_eq!(cf.first_row, Some(48));
    assert_eq!(cf.edges_blocked_per_layer, 16 * 16 + 16 * 32 + 16 * 48);

    let question = g("question");
    let vq = resolve(by_name["video ↛ question"]);
    assert_eq!(vq.pairs, vec![(range(32, 96), question.clone())]);
    assert_eq!(vq.first_row, Some(question[0]));
    assert_eq!(vq.edges_blocked_per_layer, 64 * question.len());
    for (name, keys, edges) in [
        ("video ↛ last", range(32, 96), 64),
        ("question ↛ last", question.clone(), question.len()),
        ("last ↛ last", vec![last], 1),
    ] {
        let r = resolve(by_name[name]);
        assert_eq!(r.pairs, vec![(keys, vec![last])], "{name}");
        assert_eq!(
            (r.first_row, r.edges_blocked_per_layer),
            (Some(last), edges),
            "{name}"
        );
        assert_eq!(r.rows_without_open_key_per_layer, 0, "{name}");
    }
    let text = g("question.text");
    let truth = g("option[1]");
    let falses: Vec<usize> = [g("option[0]"), g("option[2]")].concat();
    assert_eq!(
        resolve(by_name["option.false ↛ last"]).pairs,
        vec![(falses, vec![last])]
    );
    let qt = resolve(by_name["question.text ↛ option.true"]);
    assert_eq!(qt.pairs, vec![(text.clone(), truth.clone())]);
    assert_eq!(
        (qt.first_row, qt.edges_blocked_per_layer),
        (Some(truth[0]), text.len() * truth.len())
    );
    let vt = resolve(by_name["video ↛ question.text"]);
    assert_eq!(vt.first_row, Some(text[0]));

    // A block that only names future keys changes nothing; one that takes every key of the last
    // row leaves it without an open key.
    let future = Flow {
        name: "last ↛ video".into(),
        target: "custom".into(),
        blocks: vec![Block::new("last", "video")],
    };
    let r = resolve(&future);
    assert_eq!((r.first_row, r.edges_blocked_per_layer), (None, 0));
    let everything = Flow {
        name: "all ↛ last".into(),
        target: "custom".into(),
        blocks: vec![Block {
            sources: ["system", "video", "question", "template", "last"]
                .map(String::from)
                .to_vec(),
            targets: vec!["last".into()],
        }],
    };
    let r = resolve(&everything);
    assert_eq!(
        (r.edges_blocked_per_layer, r.rows_without_open_key_per_layer),
        (s, 1)
    );
    // A group this prompt lacks is an error naming the flow and the group.
    let missing = Flow {
        name: "far option".into(),
        target: "custom".into(),
        blocks: vec![Block::new("option[6]", "last")],
    };
    let e = ResolvedFlow::new(&missing, layout).unwrap_err().to_string();
    assert!(e.contains("far option") && e.contains("option[6]"), "{e}");
}

/// The committed reference record fields (export/vidflow_export/reference_knockout.py).
#[derive(Deserialize)]
struct ReferenceRecord {
    sample_id: String,
    flow: String,
    layer: usize,
    window_style: WindowStyle,
    window_layers: Vec<usize>,
    p_base: f64,
    pct_change_pred: f64,
    pct_change_true: f64,
    base_token: i64,
    true_token: i64,
    new_token: i64,
    edges_blocked: usize,
}

#[test]
fn vidflow_matches_the_committed_pytorch_reference_records() {
    let pkg = open_tiny();
    let fixture = repo_path("tests/fixtures/knockout");
    let samples = load_samples(&fixture.join("samples.json")).unwrap().samples;
    let inputs = prepared(&pkg, &samples);
    let text = std::fs::read_to_string(fixture.join("reference_records.jsonl")).unwrap();
    let reference: Vec<ReferenceRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reference.len(), 2 * 11 * LAYERS * 4);
    let flows = all_flows();
    let mut ours: HashMap<(String, WindowStyle, String, usize), KnockoutRecord> = HashMap::new();
    for style in WindowStyle::ALL {
        for (sample, inp) in samples.iter().zip(&inputs) {
            let out = sweep(
                &pkg,
                sample,
                inp,
                &flows,
                &settings(style, Execution::Optimised { max_batch: 8 }, true),
            );
            for r in out.knockouts {
                ours.insert((r.sample_id.clone(), style, r.flow.clone(), r.layer), r);
            }
        }
    }
    for r in &reference {
        let what = format!(
            "{} {} {} layer {}",
            r.sample_id, r.window_style, r.flow, r.layer
        );
        let v = &ours[&(r.sample_id.clone(), r.window_style, r.flow.clone(), r.layer)];
        assert_eq!(v.window_layers, r.window_layers, "{what}");
        assert_eq!(v.edges_blocked, r.edges_blocked, "{what}");
        assert_eq!(
            (v.base_token, v.true_token, v.new_token),
            (r.base_token, r.true_token, r.new_token),
            "{what}"
        );
        assert!(
            rel_close(v.p_base, r.p_base, 1e-4),
            "{what}: p_base {} vs {}",
            v.p_base,
            r.p_base
        );
        assert!(
            (v.pct_change_pred - r.pct_change_pred).abs() <= 0.01,
            "{what}: {} vs {}",
            v.pct_change_pred,
            r.pct_change_pred
        );
        assert!(
            (v.pct_change_true - r.pct_change_true).abs() <= 0.01,
            "{what}: {} vs {}",
            v.pct_change_true,
            r.pct_change_true
        );
    }
}

#[test]
fn wrongly_answered_samples_are_skipped_unless_asked() {
    let pkg = open_tiny();
    let samples = load_samples(&repo_path("tests/fixtures/knockout/samples.json"))
        .unwrap()
        .samples;
    let inp = &prepared(&pkg, &samples[..1])[0];
    let flows = all_flows();
    let out = sweep(
        &pkg,
        &samples[0],
        inp,
        &flows,
        &settings(
            WindowStyle::Center,
            Execution::Optimised { max_batch: 8 },
            false,
        ),
    );
    // The random-weight model does not answer with an option letter.
    assert_eq!(out.sample.base_correct, Some(false));
    assert_eq!(out.sample.status, SampleStatus::SkippedWrong);
    assert!(out.knockouts.is_empty());
}

// ---- the command -------------------------------------------------------------------------------

fn vidflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .current_dir(repo_path(""))
        .args(args)
        .output()
        .unwrap()
}

fn run_cli(out: &Path, extra: &[&str]) -> std::process::Output {
    let data = repo_path("tests/fixtures/knockout/samples.json");
    let model = tiny_dir();
    let mut args = vec![
        "knockout",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    vidflow(&args)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_command_resumes_without_loss_or_repetition_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let flows_yaml = dir.path().join("flows.yaml");
    std::fs::write(
        &flows_yaml,
        "targets: [vql-to-ql]\nflows:\n  - {source: \"frame[0]\", target: last}\n",
    )
    .unwrap();
    let args = [
        "--flows",
        flows_yaml.to_str().unwrap(),
        "--window",
        "3",
        "--all-samples",
    ];
    let o = run_cli(&full, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = lines(&full.join("knockouts.jsonl"));
    assert_eq!(records.len(), 2 * 5 * LAYERS);
    let parsed: Vec<KnockoutRecord> = records
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed[0].flow, "video ↛ question");
    assert_eq!(parsed[4 * LAYERS].flow, "frame[0] ↛ last");
    assert_eq!(parsed[4 * LAYERS].target, "custom");

    // Interrupt after the first sample's status line, in the middle of the second sample's
    // records, with a cut-off line at the end.
    let cut = dir.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::copy(full.join("run.json"), cut.join("run.json")).unwrap();
    let samples_lines = lines(&full.join("samples.jsonl"));
    assert_eq!(samples_lines.len(), 2);
    std::fs::write(cut.join("samples.jsonl"), format!("{}\n", samples_lines[0])).unwrap();
    let partial = &records[..records.len() / 2 + 3];
    let mut text = partial.join("\n");
    text.push('\n');
    text.push_str(&records[records.len() / 2 + 3][..40]);
    std::fs::write(cut.join("knockouts.jsonl"), text).unwrap();
    let o = run_cli(&cut, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 resumed"));
    assert_eq!(lines(&cut.join("knockouts.jsonl")), records);
    assert_eq!(lines(&cut.join("samples.jsonl")), samples_lines);
    assert_eq!(
        std::fs::read_to_string(cut.join("summary.csv")).unwrap(),
        std::fs::read_to_string(full.join("summary.csv")).unwrap()
    );
    // A finished run is left as it is.
    let o = run_cli(&cut, &args);
    assert!(o.status.success());
    assert_eq!(lines(&cut.join("knockouts.jsonl")), records);

    // Reports: one summary row per flow and layer (plus per task: the samples have two tasks),
    // and a PNG and an SVG per target and metric.
    let summary = lines(&full.join("summary.csv"));
    assert!(summary[0].starts_with("task,target,flow,layer,layer_1,n,mean_pct_change_pred"));
    assert_eq!(summary.len(), 1 + 3 * 5 * LAYERS);
    let row: Vec<&str> = summary[1].split(',').collect();
    assert_eq!(
        &row[..6],
        ["all", "vql-to-ql", "video ↛ question", "0", "1", "2"]
    );
    let mean: f64 = row[6].parse().unwrap();
    let want = (parsed[0].pct_change_pred + parsed[5 * LAYERS].pct_change_pred) / 2.0;
    assert!((mean - want).abs() < 1e-5, "{mean} vs {want}");
    for target in ["vql-to-ql", "custom"] {
        for metric in ["pct_change_pred", "pct_change_true"] {
            for ext in ["png", "svg"] {
                let p = full.join(format!("plots/{target}_{metric}.{ext}"));
                assert!(p.is_file(), "{} missing", p.display());
            }
        }
    }

    // Resuming with other settings is refused, naming the setting.
    let o = run_cli(
        &cut,
        &[
            "--flows",
            flows_yaml.to_str().unwrap(),
            "--window",
            "5",
            "--all-samples",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`window`"), "{err}");
    let mut zero = args.to_vec();
    zero.extend(["--masked-rows", "zero"]);
    let o = run_cli(&cut, &zero);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`masked_rows`"), "{err}");
}

#[cfg(feature = "video")]
#[test]
fn zero_policy_runs_the_same_optimised_and_naive_and_changes_only_empty_rows() {
    // A flow that leaves the last row no key at all, and one that leaves it some.
    let pkg = open_tiny();
    let dir = tempfile::tempdir().unwrap();
    let samples = generated_samples(dir.path());
    let inputs = prepared(&pkg, &samples);
    let everything: Vec<String> = ["system", "video", "question", "template", "last"]
        .map(String::from)
        .to_vec();
    let flows = vec![
        Flow {
            name: "all ↛ last".into(),
            target: "custom".into(),
            blocks: vec![Block {
                sources: everything,
                targets: vec!["last".into()],
            }],
        },
        Flow {
            name: "video ↛ last".into(),
            target: "custom".into(),
            blocks: vec![Block::new("video", "last")],
        },
    ];
    let run = |execution, masked_rows| {
        let mut s = settings(WindowStyle::Center, execution, true);
        s.masked_rows = masked_rows;
        sweep(&pkg, &samples[0], &inputs[0], &flows, &s).knockouts
    };
    let fast = run(Execution::Optimised { max_batch: 4 }, MaskedRows::Zero);
    let slow = run(Execution::Naive, MaskedRows::Zero);
    let uniform = run(Execution::Optimised { max_batch: 4 }, MaskedRows::Uniform);
    assert_eq!(fast.len(), 2 * LAYERS);
    for ((f, n), u) in fast.iter().zip(&slow).zip(&uniform) {
        let what = format!("{} layer {}", f.flow, f.layer);
        assert!(
            rel_close(f.p_knock, n.p_knock, 1e-5),
            "{what}: {} vs {}",
            f.p_knock,
            n.p_knock
        );
        let empty = f.flow == "all ↛ last";
        // One empty row (the last) in each blocked layer.
        let want_rows = if empty { f.window_layers.len() } else { 0 };
        assert_eq!(f.rows_without_open_key, want_rows, "{what}");
        let same = rel_close(f.p_knock, u.p_knock, 1e-5);
        assert_eq!(
            same, !empty,
            "{what}: zero {} uniform {}",
            f.p_knock, u.p_knock
        );
    }
}

#[test]
fn shipped_presets_parse() {
    let dir = repo_path("configs/knockout");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let f = vidflow::knockout::load_flows_file(&path).unwrap();
            assert!(
                !f.targets.is_empty() || !f.flows.is_empty(),
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n > 0, "no presets in {}", dir.display());
}
