//! Video-prefix reuse and early exits are exact (issue: pruning that pays):
//!
//! - a second question about a cached video gives the logits, knockout baseline and lens records
//!   of a whole recomputation, within 1e-5, under full attention, a pathway config (pruned plan)
//!   and an early exit;
//! - a prefix is not reused across different pixels, or when a prefix row has no open key;
//! - an early exit at layer K gives the logit lens of layer K.

mod common;

use std::path::Path;

use common::{options, repo_path, tiny_dir};
use vidflow::answer::{self, SampleInputs};
use vidflow::bench::random_pixels;
use vidflow::engine::{self, PrefixMasks};
use vidflow::knockout::run_baseline;
use vidflow::lens::{lens_sample, LensSettings};
use vidflow::package::{Package, Projection};
use vidflow::pathway::{PathwayConfig, SequenceGroups};
use vidflow::plan::Plan;
use vidflow::prompt::PromptBuilder;
use vidflow::report::InputDigests;
use vidflow::runtime::RuntimeOptions;

const TOL: f32 = 1e-5;

fn open(budget: u64) -> Package {
    Package::open(
        &tiny_dir(),
        &RuntimeOptions {
            prefix_cache_bytes: budget,
            ..options()
        },
    )
    .unwrap()
}

const QUESTIONS: [(&str, [&str; 3]); 2] = [
    (
        "What does the man do after the dog opens the door?",
        ["It moves left", "Nothing happens", "It jumps"],
    ),
    (
        "Which colour appears first?",
        ["Red", "A long green stripe that fades", "Blue"],
    ),
];

fn sample(pkg: &Package, question: usize, seed: u64) -> SampleInputs {
    let (q, opts) = QUESTIONS[question];
    let layout = PromptBuilder::new(&pkg.manifest, pkg.dir())
        .unwrap()
        .layout(q, &opts, Some(1))
        .unwrap();
    let v = &pkg.manifest.video;
    SampleInputs {
        pixels: random_pixels((v.input_frames(), 3, v.frame_height, v.frame_width), seed),
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn a_second_question_on_a_cached_video_equals_a_recomputation_under_full_attention() {
    let (cold, warm) = (open(0), open(1 << 30));
    // The questions differ in length, so the suffixes differ in length too.
    let (a, b) = (sample(&warm, 0, 3), sample(&warm, 1, 3));
    assert_ne!(a.layout.seq_len, b.layout.seq_len);
    let first = answer::causal_logits(&warm, &a, warm.num_layers()).unwrap();
    let second = answer::causal_logits(&warm, &b, warm.num_layers()).unwrap();
    let stats = warm.prefixes().stats();
    assert_eq!((stats.misses, stats.hits), (1, 1), "{stats:?}");
    for (inputs, got) in [(&a, &first), (&b, &second)] {
        let want = answer::causal_logits(&cold, inputs, cold.num_layers()).unwrap();
        let d = max_diff(got.as_slice().unwrap(), want.as_slice().unwrap());
        assert!(d < TOL, "reused vs recomputed logits differ by {d}");
    }
    assert_eq!(cold.prefixes().stats().hits, 0);

    // Early exits reuse too (a prefix computed through K layers).
    let k = 2;
    let early = answer::causal_logits(&warm, &b, k).unwrap();
    let early_cold = answer::causal_logits(&cold, &b, k).unwrap();
    assert!(max_diff(early.as_slice().unwrap(), early_cold.as_slice().unwrap()) < TOL);
    // ... and differ from the full model's answer (the check can fail).
    assert!(max_diff(early.as_slice().unwrap(), second.as_slice().unwrap()) > 1e-3);
}

#[test]
fn other_pixels_are_another_prefix() {
    let warm = open(1 << 30);
    answer::causal_logits(&warm, &sample(&warm, 0, 3), warm.num_layers()).unwrap();
    answer::causal_logits(&warm, &sample(&warm, 0, 4), warm.num_layers()).unwrap();
    let stats = warm.prefixes().stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (2, 0, 2));
    // A budget below one prefix keeps nothing.
    warm.prefixes().set_budget(1);
    assert_eq!(warm.prefixes().stats().entries, 0);
}

fn config(text: &str) -> PathwayConfig {
    PathwayConfig::from_yaml(text, Path::new("<test>")).unwrap()
}

/// The pruned plan of `config` on `inputs`: with the package's prefix cache, and recomputed.
fn plan_logits(warm: &Package, cold: &Package, inputs: &SampleInputs, c: &PathwayConfig) {
    let groups = SequenceGroups::from_prompt(&inputs.layout);
    let schedule = c.resolve(&groups, warm.num_layers()).unwrap();
    let plan = Plan::compile(&schedule);
    let sp = answer::split(
        warm,
        inputs,
        PrefixMasks::Schedule(&schedule),
        schedule.num_layers(),
        false,
    )
    .unwrap()
    .expect("the config's masks over the prefix do not depend on the question");
    let reused =
        engine::run_plan_after(warm, &schedule, &plan, &sp.prefix, &sp.embeds, &sp.rotary).unwrap();
    let (embeds, rotary) = answer::embed(cold, inputs).unwrap();
    let dense = engine::run_dense(cold, &schedule, &embeds, &rotary).unwrap();
    let d = max_diff(
        reused.last_logits().as_slice().unwrap(),
        dense.last_logits().as_slice().unwrap(),
    );
    assert!(d < TOL, "{}: reused plan vs dense differ by {d}", c.name);
}

#[test]
fn a_pruned_plan_after_a_cached_prefix_equals_the_dense_masked_model() {
    let (cold, warm) = (open(0), open(1 << 30));
    let text = std::fs::read_to_string(repo_path("configs/pathways/tiny.yaml")).unwrap();
    let tiny = config(&text);
    // Rules acting on prefix rows (cross-frame, video -> video) make the prefix depend on the
    // config: a prefix computed under full attention must not serve it.
    answer::causal_logits(&warm, &sample(&warm, 0, 5), warm.num_layers()).unwrap();
    for q in 0..2 {
        plan_logits(&warm, &cold, &sample(&warm, q, 5), &tiny);
    }
    let stats = warm.prefixes().stats();
    assert_eq!((stats.misses, stats.hits), (2, 1), "{stats:?}");

    // With an early exit after layer 3 of 4.
    let exit = config(&format!("{text}\nexit_layer: 3\n"));
    for q in 0..2 {
        plan_logits(&warm, &cold, &sample(&warm, q, 5), &exit);
    }
    assert_eq!(warm.prefixes().stats().hits, 2);
}

#[test]
fn a_prefix_row_without_an_open_key_is_never_reused() {
    let warm = open(1 << 30);
    // Every system row reads no key in layer 1: the reference gives such a row uniform attention
    // over the whole sequence, question included.
    let c = config("num_layers: 4\nrules:\n  - {source: system, target: system, blocked: \"1\"}\n");
    let inputs = sample(&warm, 0, 5);
    let schedule = c
        .resolve(&SequenceGroups::from_prompt(&inputs.layout), 4)
        .unwrap();
    let sp = answer::split(&warm, &inputs, PrefixMasks::Schedule(&schedule), 4, false).unwrap();
    assert!(sp.is_none());
    assert_eq!(warm.prefixes().stats().not_reusable, 1);
}

#[test]
fn a_knockout_baseline_and_the_lens_after_a_cached_prefix_equal_a_recomputation() {
    let (cold, warm) = (open(0), open(1 << 30));
    let builder = PromptBuilder::new(&warm.manifest, warm.dir()).unwrap();
    let settings = LensSettings {
        projection: Projection::NormHead,
        keywords: None,
        all_samples: true,
        out_dir: std::env::temp_dir(),
        workers: 1,
        progress: false,
        inputs: InputDigests::default(),
        shard: None,
    };
    let smp = vidflow::answer::Sample {
        id: "s".into(),
        task: None,
        video: "unused".into(),
        question: QUESTIONS[1].0.into(),
        options: QUESTIONS[1].1.iter().map(|s| s.to_string()).collect(),
        answer: Some(1),
        window: None,
    };
    // Warm the cache with the other question (a whole baseline keeps hidden states too).
    run_baseline(&warm, &sample(&warm, 0, 9)).unwrap();
    let inputs = sample(&warm, 1, 9);
    let reused = run_baseline(&warm, &inputs).unwrap();
    assert_eq!(warm.prefixes().stats().hits, 1);
    let fresh = run_baseline(&cold, &inputs).unwrap();
    assert_eq!(reused.answer_token, fresh.answer_token);
    assert!((reused.readout.p_answer - fresh.readout.p_answer).abs() < 1e-5);
    let host = |t: &vidflow::runtime::Tensor, pkg: &Package| pkg.data().download(t).unwrap();
    for (l, (a, b)) in reused.hidden.iter().zip(&fresh.hidden).enumerate() {
        let (a, b) = (host(a, &warm), host(b, &cold));
        assert_eq!(a.shape(), b.shape());
        let d = max_diff(a.as_slice().unwrap(), b.as_slice().unwrap());
        assert!(d < TOL, "hidden state entering layer {l} differs by {d}");
    }
    for (l, (a, b)) in reused.kv.iter().zip(&fresh.kv).enumerate() {
        for (x, y) in [(&a.key, &b.key), (&a.value, &b.value)] {
            let (x, y) = (host(x, &warm), host(y, &cold));
            assert_eq!(x.shape(), y.shape());
            assert!(
                max_diff(x.as_slice().unwrap(), y.as_slice().unwrap()) < TOL,
                "K/V {l}"
            );
        }
    }
    let lens_warm = lens_sample(&warm, &builder, &smp, &inputs, &settings)
        .unwrap()
        .unwrap();
    let lens_cold = lens_sample(&cold, &builder, &smp, &inputs, &settings)
        .unwrap()
        .unwrap();
    for (a, b) in lens_warm.iter().zip(&lens_cold) {
        assert!((a.p_true - b.p_true).abs() < 1e-5, "layer {}", a.layer_1);
    }

    // An early exit after layer K answers what the lens reads at layer K.
    for rec in &lens_cold {
        let logits = answer::causal_logits(&cold, &inputs, rec.layer_1).unwrap();
        let p = answer::softmax(logits.view());
        let truth = inputs.layout.option_token_ids[1] as usize;
        assert!(
            (p[truth] - rec.p_true).abs() < 1e-6,
            "exit after layer {}: p(true) {} vs lens {}",
            rec.layer_1,
            p[truth],
            rec.p_true
        );
    }
}
