//! `discover --objective compute` on the shipped toy video model and a small generated set: each
//! candidate's accuracy equals an independent dense masked run of its config (every row, no plan,
//! no prefix reuse), its predicted speedup and rows equal FLOP counts written out here from the
//! model's sizes, and the chosen config is the fastest one inside the accuracy constraint.
// Generates and decodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{options, repo_path};
use vidflow::answer::{self, SampleInputs};
use vidflow::data::{self, DataSpec};
use vidflow::discover::{discover_compute, ComputeSettings};
use vidflow::engine::run_dense;
use vidflow::package::Package;
use vidflow::pathway::{PathwayConfig, SequenceGroups};
use vidflow::prompt::PromptBuilder;
use vidflow::synth::{self, Suite, SynthConfig};

fn validation(pkg: &Package, dir: &Path) -> Vec<(String, SampleInputs)> {
    let cfg = SynthConfig {
        seed: 7,
        per_task: 2,
        suite: Suite::Temporal,
        ..SynthConfig::default()
    };
    synth::generate(dir, &cfg, |_, _| {}).unwrap();
    let ds = data::load(&DataSpec::Tvbench(dir.to_path_buf()), None).unwrap();
    assert!(ds.bad.is_empty());
    let builder = Arc::new(PromptBuilder::new(&pkg.manifest, pkg.dir()).unwrap());
    ds.samples
        .iter()
        .map(|s| {
            let inp = answer::prepare(&builder, &pkg.manifest.video, s).unwrap();
            (data::task_of(s), inp)
        })
        .collect()
}

/// FLOPs of one layer computing `q` rows against `q` keys, from the model's sizes: q, k, v, o
/// projections, scores and weighted values over every pair of the call, the gated MLP.
fn layer_flops(pkg: &Package, q: u64) -> u64 {
    let m = &pkg.manifest;
    let (d, h, hkv, dh, i) = (
        m.hidden_size as u64,
        m.num_heads as u64,
        m.num_kv_heads as u64,
        m.head_dim as u64,
        m.intermediate_size as u64,
    );
    let qkv = 2 * q * d * (h * dh + 2 * hkv * dh);
    let o = 2 * q * h * dh * d;
    let attention = 2 * (2 * h * q * q * dh);
    let mlp = 3 * (2 * q * d * i);
    qkv + o + attention + mlp
}

#[test]
fn compute_candidates_match_dense_runs_and_hand_counted_flops() {
    let pkg = Package::open(&repo_path("models/toy-video"), &options()).unwrap();
    let l = pkg.num_layers();
    assert_eq!(l, 8, "the test's grid assumes the toy's 8 layers");
    let dir = tempfile::tempdir().unwrap();
    let inputs = validation(&pkg, dir.path());
    let settings = ComputeSettings {
        max_drop: 10.0,
        step: 4,
    };
    let d = discover_compute(&pkg, &inputs, None, settings, |_, _| {}).unwrap();

    // Grid {4, 8}: K=4 (base, exit); K=8: base, video cut after 4, last-only after 4.
    let mut names: Vec<&str> = d.candidates.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["base", "exit4", "last-only4", "video-cut4"]);

    // Accuracy per task: each sample run densely (every row, every layer the config runs)
    // under the candidate's masks, scored here.
    for c in &d.candidates {
        let config = PathwayConfig::from_yaml(&c.yaml, Path::new("candidate.yaml")).unwrap();
        let mut per_task: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (task, inp) in &inputs {
            let schedule = config
                .resolve(&SequenceGroups::from_prompt(&inp.layout), l)
                .unwrap();
            let (embeds, rotary) = answer::embed(&pkg, inp).unwrap();
            let out = run_dense(&pkg, &schedule, &embeds, &rotary).unwrap();
            let logits = out.last_logits();
            let ids = &inp.layout.option_token_ids;
            let best = (0..ids.len())
                .max_by(|&a, &b| logits[ids[a] as usize].total_cmp(&logits[ids[b] as usize]))
                .unwrap();
            let e = per_task.entry(task.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(Some(best) == inp.layout.answer);
        }
        for (task, (n, ok)) in &per_task {
            let got = &c.tasks[task];
            assert_eq!((got.samples, got.correct), (*n, *ok), "{} {task}", c.name);
            let full = &d.full[task];
            let drop = 100.0 * (full.accuracy - *ok as f64 / *n as f64);
            assert!((got.drop_points - drop).abs() < 1e-9, "{} {task}", c.name);
        }
        assert!(c.passes == (c.worst_drop_points <= settings.max_drop + 1e-9));
    }
    let by_name = |n: &str| d.candidates.iter().find(|c| c.name == n).unwrap();
    let base = by_name("base");
    assert!(base.tasks.values().all(|t| t.drop_points == 0.0) && base.passes);
    assert_eq!(base.predicted_speedup, 1.0);

    // Predicted speedup and rows of the video cutoff: layers 1-4 run every row, layers 5-8
    // every row but the video's; the head projects one row in both.
    let layout = &inputs[0].1.layout;
    let s = layout.seq_len as u64;
    let v = layout.groups.video.len() as u64;
    let m = &pkg.manifest;
    let head = 2 * m.hidden_size as u64 * m.vocab_size as u64;
    let full = 8 * layer_flops(&pkg, s) + head;
    let cut = 4 * layer_flops(&pkg, s) + 4 * layer_flops(&pkg, s - v) + head;
    let c = by_name("video-cut4");
    assert!((c.predicted_speedup - full as f64 / cut as f64).abs() < 1e-9);
    assert!((c.row_share - (8 * s - 4 * v) as f64 / (8 * s) as f64).abs() < 1e-12);
    // Early exit after 4 layers: half the layers.
    let e = by_name("exit4");
    let exit = 4 * layer_flops(&pkg, s) + head;
    assert!((e.predicted_speedup - full as f64 / exit as f64).abs() < 1e-9);
    // Last-only after 4: one row in layers 5-8.
    let lo = by_name("last-only4");
    let last = 4 * layer_flops(&pkg, s) + 4 * layer_flops(&pkg, 1) + head;
    assert!((lo.predicted_speedup - full as f64 / last as f64).abs() < 1e-9);

    // Chosen: the fastest passing candidate; the frontier: nothing faster drops less.
    let fastest_passing = d
        .candidates
        .iter()
        .filter(|c| c.passes)
        .map(|c| c.predicted_speedup)
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = &d.candidates[d.chosen.expect("base always passes")];
    assert_eq!(chosen.predicted_speedup, fastest_passing);
    for &i in &d.frontier() {
        let f = &d.candidates[i];
        assert!(!d
            .candidates
            .iter()
            .any(|o| o.predicted_speedup >= f.predicted_speedup
                && o.worst_drop_points < f.worst_drop_points - 1e-9));
    }
}
