//! Pathway configs, mask schedules, execution plans and their execution on the shipped test
//! package (tests/fixtures/tiny, 4 layers).
//!
//! References are independent of the code under test: masks are rebuilt here from the prompt
//! layout's groups by a plain loop over (query, key) pairs, plan row sets are worked out by hand,
//! and pruned logits are compared with a dense masked run over every row.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ndarray::{s, Array4};
use vidflow::answer::{self, SampleInputs};
use vidflow::engine::{self, Rotary};
use vidflow::mask::EdgeMask;
use vidflow::package::Package;
use vidflow::pathway::{
    MaskSchedule, PathwayConfig, Pathways, RandomBlocking, Rule, SequenceGroups,
};
use vidflow::plan::{FlopModel, ModelShape, Plan, VideoGrid};
use vidflow::prompt::{PromptBuilder, PromptLayout};
use vidflow::runtime::Tensor;

/// Pruned vs dense logits, `max |a - e| / (1 + |e|)`.
const TOL: f32 = 1e-5;

struct Inputs {
    layout: PromptLayout,
    groups: SequenceGroups,
    embeds: Tensor,
    rotary: Rotary,
}

/// Seeded uniform pixels in [-2, 2): the vision graph sees a "video" without decoding one.
fn random_pixels(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    Array4::from_shape_simple_fn(shape, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
    })
}

/// A real prompt layout from the package tokenizer, and the spliced embeddings of a random video.
fn inputs(pkg: &Package) -> Inputs {
    let builder = PromptBuilder::new(&pkg.manifest, pkg.dir()).unwrap();
    let layout = builder
        .layout(
            "What does the man do after the dog opens the door?",
            &["The man closes the box", "It moves left", "Nothing happens"],
            Some(1),
        )
        .unwrap();
    let v = &pkg.manifest.video;
    let pixels = random_pixels((v.input_frames(), 3, v.frame_height, v.frame_width), 3);
    let sample = SampleInputs {
        pixels,
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout: layout.clone(),
    };
    let (embeds, rotary) = answer::embed(pkg, &sample).unwrap();
    Inputs {
        groups: SequenceGroups::from_prompt(&layout),
        layout,
        embeds,
        rotary,
    }
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("configs/pathways"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the shipped configs, found {files:?}"
    );
    files
}

fn config(name: &str) -> PathwayConfig {
    PathwayConfig::from_file(&repo_path(&format!("configs/pathways/{name}.yaml"))).unwrap()
}

/// Runs the plan and the dense masks; returns (pruned logits, dense logits, plan).
fn pruned_and_dense(
    pkg: &Package,
    inp: &Inputs,
    schedule: &MaskSchedule,
) -> (Vec<f32>, Vec<f32>, Plan) {
    let plan = Plan::compile(schedule);
    let pruned = engine::run_plan(pkg, schedule, &plan, &inp.embeds, &inp.rotary).unwrap();
    let dense = engine::run_dense(pkg, schedule, &inp.embeds, &inp.rotary).unwrap();
    (
        pruned.last_logits().to_vec(),
        dense.last_logits().to_vec(),
        plan,
    )
}

fn err(a: &[f32], e: &[f32]) -> f32 {
    a.iter()
        .zip(e)
        .map(|(a, e)| (a - e).abs() / (1.0 + e.abs()))
        .fold(0.0, f32::max)
}

// ---------------------------------------------------------------------------------------------
// Independent reference masks: one boolean per (layer, query, key), straight from the groups.

fn frame_of(layout: &PromptLayout, p: usize) -> Option<usize> {
    layout.groups.frames.iter().position(|f| f.contains(&p))
}

/// `open[q][k]` of layer `l` for rules applied to a real prompt layout, by brute force.
fn reference_open(layout: &PromptLayout, rules: &[Rule], l: usize) -> Vec<Vec<bool>> {
    let s = layout.seq_len;
    let mut open = vec![vec![false; s]; s];
    for (q, row) in open.iter_mut().enumerate() {
        for (k, cell) in row.iter_mut().enumerate().take(q + 1) {
            *cell = !rules.iter().filter(|r| r.blocked[l]).any(|r| {
                if r.source == "cross-frame" {
                    matches!((frame_of(layout, k), frame_of(layout, q)), (Some(j), Some(i)) if j < i)
                } else {
                    layout.group(&r.source).unwrap().contains(&k)
                        && layout.group(&r.target).unwrap().contains(&q)
                }
            });
        }
    }
    open
}

fn assert_schedule_matches(schedule: &MaskSchedule, reference: &[Vec<Vec<bool>>], what: &str) {
    assert_eq!(schedule.num_layers(), reference.len(), "{what}");
    let counts = schedule.open_edges();
    for (l, open) in reference.iter().enumerate() {
        let mut n = 0;
        for (q, row) in open.iter().enumerate() {
            for (k, &o) in row.iter().enumerate() {
                assert_eq!(
                    schedule.is_open(l, q, k),
                    o,
                    "{what}: layer {l}, query {q}, key {k}"
                );
                n += usize::from(o);
            }
        }
        assert_eq!(counts[l], n, "{what}: open edges of layer {l}");
    }
}

// ---------------------------------------------------------------------------------------------
// Execution: pruned plans give the dense masked logits.

#[test]
fn pruned_plans_equal_dense_masks_for_every_shipped_config_at_4_layers() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let s = inp.layout.seq_len;
    let full = answer::last_logits(&pkg, &inp.embeds, &inp.rotary)
        .unwrap()
        .to_vec();
    for file in shipped_configs() {
        let cfg = PathwayConfig::from_file(&file).unwrap().scaled_to(4);
        let schedule = cfg.resolve(&inp.groups, 4).unwrap();
        let (pruned, dense, plan) = pruned_and_dense(&pkg, &inp, &schedule);
        let e = err(&pruned, &dense);
        assert!(
            e <= TOL,
            "{}: pruned vs dense logits differ by {e:e}",
            file.display()
        );
        // Not vacuous: the masks move the logits, and the plan drops rows.
        assert!(
            err(&dense, &full) > 100.0 * TOL,
            "{}: the masks changed nothing",
            file.display()
        );
        assert!(
            plan.rows_computed() < 4 * s,
            "{}: the plan dropped no row",
            file.display()
        );
    }
}

#[test]
fn pruned_plans_equal_dense_masks_for_random_blocking() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    for (ratio, seed) in [(0.3, 0), (0.7, 1), (0.5, 7), (0.95, 3), (1.0, 2)] {
        let schedule = RandomBlocking::new(ratio, seed)
            .unwrap()
            .schedule(&inp.groups, 4);
        let (pruned, dense, plan) = pruned_and_dense(&pkg, &inp, &schedule);
        let e = err(&pruned, &dense);
        assert!(
            e <= TOL,
            "random {ratio} seed {seed}: pruned vs dense differ by {e:e}"
        );
        if ratio == 1.0 {
            // Every edge among video and later positions is blocked: only the system prompt
            // (read by everyone) and the last position are ever computed.
            let mut expected = inp.layout.groups.system.clone();
            expected.push(inp.layout.seq_len - 1);
            for lp in &plan.layers {
                assert_eq!(lp.rows, expected);
            }
        }
    }
}

/// A config that closes every path out of the video after layer 2, so whole groups are dropped in
/// layers 3 and 4 (the published configs keep video -> template open and drop little).
#[test]
fn pruned_plans_equal_dense_masks_when_whole_groups_are_dropped() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let yaml = r#"
num_layers: 4
rules:
  - {source: video, target: question, blocked: "3-4"}
  - {source: video, target: template, blocked: "3-4"}
  - {source: video, target: last, blocked: all}
  - {source: video, target: video, blocked: "3-4"}
  - {source: question, target: template, blocked: "4"}
  - {source: question, target: question, blocked: "4"}
"#;
    let cfg = PathwayConfig::from_yaml(yaml, Path::new("closed-video.yaml")).unwrap();
    let schedule = cfg.resolve(&inp.groups, 4).unwrap();
    let (pruned, dense, plan) = pruned_and_dense(&pkg, &inp, &schedule);
    let e = err(&pruned, &dense);
    assert!(e <= TOL, "pruned vs dense differ by {e:e}");
    let video = &inp.layout.groups.video;
    for l in [2, 3] {
        assert!(
            !plan.layers[l].rows.iter().any(|p| video.contains(p)),
            "layer {l} still computes video rows"
        );
    }
    assert!(plan.layers[1].rows.iter().any(|p| video.contains(p)));
}

/// The comparison above can fail: computing one row too few, or gathering the rotary tables of
/// the wrong positions, moves the logits far beyond the tolerance.
#[test]
fn pruned_runs_detect_a_missing_key_row_and_wrong_positions() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let schedule = config("tiny").resolve(&inp.groups, 4).unwrap();
    let plan = Plan::compile(&schedule);
    let dense = engine::run_dense(&pkg, &schedule, &inp.embeds, &inp.rotary).unwrap();

    let last = plan.layers.len() - 1;
    let mut short = plan.clone();
    let key_only = *short.layers[last]
        .rows
        .iter()
        .find(|p| !short.layers[last].needed.contains(p))
        .expect("the last layer reads some key-only row");
    short.layers[last].rows.retain(|&p| p != key_only);
    let out = engine::run_plan(&pkg, &schedule, &short, &inp.embeds, &inp.rotary).unwrap();
    assert!(
        err(
            out.last_logits().as_slice().unwrap(),
            dense.last_logits().as_slice().unwrap()
        ) > 100.0 * TOL
    );

    // The last layer's rows given the rotary tables of positions renumbered 0..Q, as a gather
    // that renumbers instead of keeping original positions would do.
    let (cos, sin) = inp.rotary.to_host(&pkg).unwrap();
    let (mut wrong_cos, mut wrong_sin) = (cos.clone(), sin.clone());
    for (rank, &p) in plan.layers[last].rows.iter().enumerate() {
        wrong_cos
            .slice_mut(s![.., p, ..])
            .assign(&cos.slice(s![.., rank, ..]));
        wrong_sin
            .slice_mut(s![.., p, ..])
            .assign(&sin.slice(s![.., rank, ..]));
    }
    let wrong = Rotary::upload(&pkg, &wrong_cos, &wrong_sin).unwrap();
    let out = engine::run_plan(&pkg, &schedule, &plan, &inp.embeds, &wrong).unwrap();
    assert!(
        err(
            out.last_logits().as_slice().unwrap(),
            dense.last_logits().as_slice().unwrap()
        ) > 100.0 * TOL
    );
}

// ---------------------------------------------------------------------------------------------
// Schedules: edge for edge equal to brute-force masks.

#[test]
fn schedules_of_shipped_configs_match_brute_force_masks() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let mut configs: Vec<PathwayConfig> = shipped_configs()
        .iter()
        .map(|f| PathwayConfig::from_file(f).unwrap().scaled_to(4))
        .collect();
    // A config using indexed groups and the option groups as well.
    configs.push(
        PathwayConfig::from_yaml(
            "num_layers: 4\nrules:\n  - source: frame[0]\n    target: option.true\n    blocked: \"1-2\"\n  \
             - {source: question.text, target: \"option[2]\", blocked: [4]}\n  \
             - {source: option.false, target: last, except: 3}\n  \
             - {source: system, target: \"frame[3]\", blocked: all}\n",
            Path::new("indexed.yaml"),
        )
        .unwrap(),
    );
    for cfg in &configs {
        let schedule = cfg.resolve(&inp.groups, 4).unwrap();
        let reference: Vec<_> = (0..4)
            .map(|l| reference_open(&inp.layout, &cfg.rules, l))
            .collect();
        assert_schedule_matches(&schedule, &reference, &cfg.name);
        let causal = schedule.causal_edges_per_layer();
        assert!(
            schedule.open_edges().iter().any(|&n| n < causal),
            "{}: nothing blocked",
            cfg.name
        );
    }
}

#[test]
fn random_blocking_blocks_the_asked_share_of_post_video_edges() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let s = inp.layout.seq_len;
    let v = inp.layout.placeholder_index;
    let n = s - v;
    for (ratio, seed) in [(0.25, 0), (0.5, 11), (0.8, 5)] {
        let rb = RandomBlocking::new(ratio, seed).unwrap();
        let schedule = rb.schedule(&inp.groups, 4);
        let want_blocked = (ratio * (n * (n + 1) / 2) as f64).round() as usize;
        for l in 0..4 {
            let mut blocked = 0;
            for q in 0..s {
                for k in 0..=q {
                    if !schedule.is_open(l, q, k) {
                        assert!(
                            q >= v && k >= v,
                            "layer {l}: blocked edge ({q}, {k}) before the video"
                        );
                        blocked += 1;
                    }
                }
                for k in q + 1..s {
                    assert!(!schedule.is_open(l, q, k), "future key open");
                }
            }
            assert_eq!(blocked, want_blocked, "ratio {ratio} seed {seed} layer {l}");
            assert_eq!(schedule.open_edges()[l], s * (s + 1) / 2 - want_blocked);
        }
        // Layers draw independently; the same seed draws the same edges, another seed others.
        assert_ne!(schedule.layer(0), schedule.layer(1));
        assert_eq!(schedule, rb.schedule(&inp.groups, 4));
        assert_ne!(
            schedule,
            RandomBlocking::new(ratio, seed + 1)
                .unwrap()
                .schedule(&inp.groups, 4)
        );
    }
    // Uniformity, roughly: with ratio 1/2, every region of the eligible triangle loses about half.
    let schedule = RandomBlocking::new(0.5, 9)
        .unwrap()
        .schedule(&inp.groups, 4);
    let (mut early, mut early_n, mut late, mut late_n) = (0, 0, 0, 0);
    for q in v..s {
        for k in v..=q {
            let blocked = usize::from(!schedule.is_open(0, q, k));
            if q < v + n / 2 {
                early += blocked;
                early_n += 1;
            } else {
                late += blocked;
                late_n += 1;
            }
        }
    }
    for (b, t) in [(early, early_n), (late, late_n)] {
        let share = b as f64 / t as f64;
        assert!(
            (share - 0.5).abs() < 0.05,
            "blocked share {share} in a region"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Plans worked out by hand: 6 positions, 2 layers, the output is position 5.

fn hand_schedule(blocks: [&[(usize, &[usize])]; 2]) -> MaskSchedule {
    MaskSchedule::new(
        blocks
            .iter()
            .map(|layer| {
                let mut m = EdgeMask::full_causal(1, 6);
                for (q, keys) in layer.iter() {
                    m.block(None, keys, &[*q]).unwrap();
                }
                m
            })
            .collect(),
    )
    .unwrap()
}

#[test]
fn hand_computed_plans() {
    // Plain causal: the last position reads everything in layer 2, so everything is computed.
    let plan = Plan::compile(&MaskSchedule::full_causal(2, 6));
    assert_eq!(plan.layers[1].needed, vec![5]);
    assert_eq!(plan.layers[1].rows, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(plan.layers[0].rows, vec![0, 1, 2, 3, 4, 5]);

    // Layer 2: 5 reads {2, 5} only. Layer 1: 2 reads {0, 1, 2} (causal), 5 reads {0, 2, 5}.
    // Rows 3 and 4 are never computed; row 2 at layer 2 is key-only.
    let s = hand_schedule([&[(5, &[1, 3, 4])], &[(5, &[0, 1, 3, 4])]]);
    let plan = Plan::compile(&s);
    assert_eq!(plan.layers[1].rows, vec![2, 5]);
    assert_eq!(plan.layers[1].needed, vec![5]);
    assert_eq!(plan.layers[1].keys_read, 2);
    assert_eq!(plan.layers[0].needed, vec![2, 5]);
    assert_eq!(plan.layers[0].rows, vec![0, 1, 2, 5]);
    assert_eq!(plan.layers[0].keys_read, 4);
    assert_eq!(plan.layers[1].open_edges, 21 - 4);
    assert_eq!(plan.rows_computed(), 6);

    // A key-only row's own reads do not count: at layer 2, 5 reads {4, 5}; 4 is key-only, so
    // what 4 would read at layer 2 is irrelevant. At layer 1, 4 reads only {3, 4}, 5 only {5}.
    let s = hand_schedule([
        &[(4, &[0, 1, 2]), (5, &[0, 1, 2, 3, 4])],
        &[(5, &[0, 1, 2, 3]), (4, &[0, 1, 2, 3])],
    ]);
    let plan = Plan::compile(&s);
    assert_eq!(plan.layers[1].rows, vec![4, 5]);
    assert_eq!(plan.layers[0].rows, vec![3, 4, 5]);

    // A needed row with no open key attends uniformly over every position (reference policy),
    // so every position is computed at that layer.
    let s = hand_schedule([&[(2, &[0, 1, 2])], &[(5, &[0, 1, 3, 4, 5])]]);
    let plan = Plan::compile(&s);
    assert_eq!(plan.layers[1].rows, vec![2, 5]);
    assert_eq!(plan.layers[0].needed, vec![2, 5]);
    assert_eq!(plan.layers[0].rows_without_open_key, 1);
    assert_eq!(plan.layers[0].rows, vec![0, 1, 2, 3, 4, 5]);

    // Several outputs.
    let plan = Plan::compile_for(&s, &[1, 5]).unwrap();
    assert_eq!(plan.layers[1].rows, vec![0, 1, 2, 5]);
    assert!(Plan::compile_for(&s, &[6]).is_err());
}

/// Hand plans also run: the first 6 positions of the real input, 4 layers.
#[test]
fn hand_plan_runs_on_six_positions() {
    let pkg = open_tiny();
    let inp = inputs(&pkg);
    let embeds = pkg.data().slice(&inp.embeds, 1, 0, 6).unwrap();
    let rotary = inp.rotary.rows(&pkg, &[0, 1, 2, 3, 4, 5]).unwrap();
    let layer = |blocks: &[(usize, &[usize])]| {
        let mut m = EdgeMask::full_causal(1, 6);
        for (q, keys) in blocks {
            m.block(None, keys, &[*q]).unwrap();
        }
        m
    };
    let schedule = MaskSchedule::new(vec![
        layer(&[(2, &[0, 1, 2])]),
        layer(&[(4, &[1, 2, 3])]),
        layer(&[(5, &[1, 3, 4])]),
        layer(&[(5, &[0, 1, 3, 4])]),
    ])
    .unwrap();
    let plan = Plan::compile(&schedule);
    assert_eq!(plan.layers[3].rows, vec![2, 5]);
    assert_eq!(plan.layers[2].rows, vec![0, 1, 2, 5]);
    let pruned = engine::run_plan(&pkg, &schedule, &plan, &embeds, &rotary).unwrap();
    let dense = engine::run_dense(&pkg, &schedule, &embeds, &rotary).unwrap();
    let e = err(
        pruned.last_logits().as_slice().unwrap(),
        dense.last_logits().as_slice().unwrap(),
    );
    assert!(e <= TOL, "{e:e}");
    assert_eq!(pruned.rows_per_layer, vec![6, 6, 4, 2]);
}

// ---------------------------------------------------------------------------------------------
// Configs: layer sets, scaling, and errors.

#[test]
fn published_config_layers_read_as_in_the_paper() {
    let cfg = config("llava-next-7b-video-ft");
    assert_eq!(cfg.num_layers, 32);
    let rule = |s: &str, t: &str| {
        cfg.rules
            .iter()
            .find(|r| r.source == s && r.target == t)
            .unwrap()
    };
    let blocked =
        |r: &Rule| -> Vec<usize> { (0..32).filter(|&l| r.blocked[l]).map(|l| l + 1).collect() };
    let range = |a: usize, b: usize| -> Vec<usize> { (a..=b).collect() };
    let except =
        |a: usize, b: usize| -> Vec<usize> { (1..=32).filter(|l| *l < a || *l > b).collect() };
    assert_eq!(blocked(rule("cross-frame", "cross-frame")), except(6, 15));
    assert_eq!(blocked(rule("video", "question")), except(6, 20));
    assert_eq!(blocked(rule("question", "last")), except(16, 25));
    assert_eq!(blocked(rule("video", "last")), range(1, 32));
    assert_eq!(blocked(rule("last", "last")), range(1, 32));
    assert_eq!(blocked(rule("video", "video")), range(21, 32));
    assert_eq!(blocked(rule("question", "question")), range(26, 32));

    let v3 = config("videollama3-7b");
    assert_eq!(v3.num_layers, 28);
    assert_eq!(v3.rules[0].blocked_layers(), "16-28");
}

#[test]
fn scaled_configs_equal_the_shipped_small_ones() {
    let big = config("llava-next-7b-video-ft");
    for (name, layers) in [("tiny", 4), ("smollm2-135m", 30)] {
        let small = config(name);
        let scaled = big.scaled_to(layers);
        assert_eq!(small.num_layers, layers);
        assert_eq!(scaled.rules.len(), small.rules.len(), "{name}");
        for (a, b) in scaled.rules.iter().zip(&small.rules) {
            assert_eq!(
                (&a.source, &a.target, &a.blocked),
                (&b.source, &b.target, &b.blocked),
                "{name}"
            );
        }
    }
    // Hand-worked 32 -> 4: target layers follow 7B layers 5, 13, 21, 29.
    let tiny = big.scaled_to(4);
    assert_eq!(tiny.rules[0].blocked, vec![true, false, true, true]); // cross-frame open in 6-15
    assert_eq!(tiny.rules[2].blocked, vec![true, true, false, true]); // question->last open in 16-25
}

fn parse_err(yaml: &str) -> String {
    PathwayConfig::from_yaml(yaml, Path::new("configs/bad.yaml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn config_errors_name_the_file_the_rule_and_what_was_expected() {
    let e = parse_err("num_layers: 32\nrules:\n  - {source: video, target: last, blocked: all}\n  - {source: video, target: questoin, blocked: \"6-15\"}\n");
    assert!(
        e.starts_with("configs/bad.yaml: rule 2 (video -> questoin): unknown group \"questoin\""),
        "{e}"
    );
    assert!(
        e.contains("expected one of system, video, video.sep, frame[i], question, question.text, option[j]"),
        "{e}"
    );

    let e = parse_err(
        "num_layers: 32\nrules:\n  - {source: video, target: question, blocked: \"15-6\"}\n",
    );
    assert!(e.contains("configs/bad.yaml: rule 1 (video -> question): blocked: layer range \"15-6\" runs backwards"), "{e}");

    let e = parse_err(
        "num_layers: 32\nrules:\n  - {source: video, target: question, except: \"6-40\"}\n",
    );
    assert!(
        e.contains("rule 1 (video -> question): except: layer 40 is beyond the model's 32 layers"),
        "{e}"
    );

    let e = parse_err(
        "num_layers: 32\nrules:\n  - {source: video, target: question, blocked: \"6..15\"}\n",
    );
    assert!(e.contains("cannot read \"6..15\" as layers"), "{e}");

    let e =
        parse_err("num_layers: 32\nrules:\n  - {source: video, target: question, blocked: 0}\n");
    assert!(e.contains("layers are numbered from 1"), "{e}");

    let e = parse_err("num_layers: 32\nrules:\n  - {source: video, target: question}\n");
    assert!(
        e.contains("rule 1 (video -> question): give exactly one of `blocked:`"),
        "{e}"
    );

    let e = parse_err(
        "num_layers: 32\nrules:\n  - {source: cross-frame, target: video, blocked: all}\n",
    );
    assert!(e.contains("write it as both source and target"), "{e}");

    let e = parse_err("num_layers: 32\nrules:\n  - {source: video, target: last, blockd: all}\n");
    assert!(
        e.starts_with("configs/bad.yaml: not a pathway config:")
            && e.contains("unknown field `blockd`"),
        "{e}"
    );

    let e = parse_err("rules: []\n");
    assert!(e.contains("missing field `num_layers`"), "{e}");

    let e = PathwayConfig::from_file(Path::new("configs/pathways/none.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("configs/pathways/none.yaml"), "{e}");
}

#[test]
fn resolve_errors_name_the_file_and_the_rule() {
    let groups =
        SequenceGroups::from_shape_spec("system=3,frames=2x2x2,question=4,template=2", None)
            .unwrap();
    let cfg = PathwayConfig::from_yaml(
        "num_layers: 2\nrules:\n  - {source: video, target: last, blocked: all}\n  - {source: \"frame[5]\", target: last, blocked: 1}\n",
        Path::new("cfg.yaml"),
    )
    .unwrap();
    let e = cfg.resolve(&groups, 2).unwrap_err().to_string();
    assert!(
        e.starts_with("cfg.yaml: rule 2 (frame[5] -> last):") && e.contains("index must be 0..2"),
        "{e}"
    );

    let e = cfg.resolve(&groups, 3).unwrap_err().to_string();
    assert!(
        e.contains("cfg.yaml: the config is written for 2 layers (num_layers), the model has 3"),
        "{e}"
    );

    let cfg = PathwayConfig::from_yaml(
        "num_layers: 2\nrules:\n  - {source: option.true, target: last, blocked: all}\n",
        Path::new("cfg.yaml"),
    )
    .unwrap();
    let e = cfg.resolve(&groups, 2).unwrap_err().to_string();
    assert!(
        e.contains("rule 1 (option.true -> last)") && e.contains("needs the answer index"),
        "{e}"
    );

    for (arg, want) in [
        ("random:1.5", "outside [0, 1]"),
        ("random:half", "expected random:RATIO[:SEED]"),
        ("random:0.5:x", "seed \"x\" is not a whole number"),
    ] {
        let e = Pathways::parse(arg).unwrap_err().to_string();
        assert!(e.contains(want), "{arg}: {e}");
    }
    assert_eq!(
        Pathways::parse("random:0.25:9").unwrap(),
        Pathways::Random(RandomBlocking {
            ratio: 0.25,
            seed: 9
        })
    );
}

// ---------------------------------------------------------------------------------------------
// FLOPs and the command line.

#[test]
fn flop_counts_follow_the_documented_formula() {
    let shape = ModelShape {
        name: "toy".into(),
        num_layers: 2,
        hidden_size: 4,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 2,
        intermediate_size: 8,
        vocab_size: 10,
        max_positions: 64,
        video: VideoGrid {
            num_frames: 1,
            grid_h: 1,
            grid_w: 1,
        },
    };
    let f = FlopModel::new(&shape).layer(3, 5);
    // q: 2*3*4*4, k and v: 2 * 2*3*4*2, o: 2*3*4*4
    assert_eq!(f.projections, 96 + 96 + 96);
    // scores and values: 2 * (2*2*3*5*2)
    assert_eq!(f.attention, 240);
    // gate, up, down: 3 * 2*3*4*8
    assert_eq!(f.mlp, 576);
    assert_eq!(FlopModel::new(&shape).head(1), 80);
}

fn vidflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plan_command_reports_shape_only_and_package_plans() {
    let (ok, out, err) = vidflow(&[
        "plan",
        "--shape",
        "configs/models/llava-next-7b.yaml",
        "--layout",
        "system=35,frames=8x12x12,question=60,template=20",
        "--config",
        "configs/pathways/llava-next-7b-video-ft.yaml",
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = 35 + 8 * 144 + 60 + 20;
    assert_eq!(r["seq_len"], s);
    assert_eq!(r["layers"].as_array().unwrap().len(), 32);
    assert_eq!(r["total_edges"], 32 * s * (s + 1) / 2);
    // The last layer computes the last position and the keys it reads: system and template.
    assert_eq!(r["layers"][31]["rows_computed"], 35 + 20);
    assert!(r["predicted_speedup"].as_f64().unwrap() > 1.0);

    let (ok, out, err) = vidflow(&[
        "plan",
        "--model",
        "tests/fixtures/tiny",
        "--config",
        "random:0.5:3",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("predicted speedup"), "{out}");

    let (ok, _, err) = vidflow(&[
        "plan",
        "--model",
        "tests/fixtures/tiny",
        "--config",
        "configs/pathways/llava-next-7b-video-ft.yaml",
    ]);
    assert!(
        !ok && err.contains("written for 32 layers") && err.contains("--scale"),
        "{err}"
    );
    let (ok, _, err) = vidflow(&[
        "plan",
        "--model",
        "tests/fixtures/tiny",
        "--scale",
        "--config",
        "configs/pathways/llava-next-7b-video-ft.yaml",
    ]);
    assert!(ok, "{err}");
}

#[cfg(feature = "video")]
#[test]
fn bench_command_times_every_mode_on_a_generated_video() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x72:rate=10",
            "-t",
            "2",
        ])
        .arg(&video)
        .status()
        .expect("the ffmpeg CLI is installed by the set-up");
    assert!(status.success());
    let (ok, out, err) = vidflow(&[
        "bench",
        "--model",
        "tests/fixtures/tiny",
        "--video",
        video.to_str().unwrap(),
        "--mode",
        "pathways:configs/pathways/tiny.yaml",
        "--mode",
        "dense:configs/pathways/tiny.yaml",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let modes = r["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 3);
    assert_eq!(modes[0]["mode"], "full");
    assert_eq!(modes[0]["predicted_speedup"], 1.0);
    assert!(modes[1]["max_abs_diff_to_dense"].as_f64().unwrap() < 1e-3);
    assert_eq!(modes[1]["argmax_token"], modes[2]["argmax_token"]);
    assert!(modes[1]["rows_computed"].as_u64() < modes[2]["rows_computed"].as_u64());
}

/// Every shape config in configs/models plans with a published pathway config: the layer count
/// and video tokens come from the file, the text layout is the same default for all.
#[test]
fn plan_runs_on_every_shape_config() {
    let dir = repo_path("configs/models");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    let mut text_rows = None;
    for file in &files {
        let shape: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let n = |k: &str| shape[k].as_u64().unwrap() as usize;
        let v = &shape["video"];
        let video = ["num_frames", "grid_h", "grid_w"]
            .iter()
            .map(|k| v[*k].as_u64().unwrap() as usize)
            .product::<usize>();
        let name = file.file_name().unwrap().to_str().unwrap();
        // The family's own published config where there is one, else the 7B one scaled.
        let config = match name {
            "mini-internvl-4b.yaml" => "configs/pathways/mini-internvl-4b-video-ft.yaml",
            "videollama3-7b.yaml" => "configs/pathways/videollama3-7b.yaml",
            "llava-next-13b.yaml" => "configs/pathways/llava-next-13b-video-ft.yaml",
            _ => "configs/pathways/llava-next-7b-video-ft.yaml",
        };
        let (ok, out, err) = vidflow(&[
            "plan",
            "--shape",
            file.to_str().unwrap(),
            "--config",
            config,
            "--scale",
            "--json",
        ]);
        assert!(ok, "{name}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            r["layers"].as_array().unwrap().len(),
            n("num_layers"),
            "{name}"
        );
        let s = r["seq_len"].as_u64().unwrap() as usize;
        let text = s - video;
        assert_eq!(*text_rows.get_or_insert(text), text, "{name}: text rows");
        let speedup = r["predicted_speedup"].as_f64().unwrap();
        assert!(speedup > 1.0 && speedup < 2.0, "{name}: {speedup}");
    }
}
