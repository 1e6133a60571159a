//! Generation under masks (docs/serving.md): greedy tokens equal PyTorch's on every family's test package —
//! HF `generate` under full attention, and a dense masked model re-run over the whole sequence at
//! every step under a knockout (generated tokens join `last`) — with and without the video-prefix
//! cache; seeded sampling, cancellation and the masked-rows rule.

mod common;

use std::path::{Path, PathBuf};

use ndarray::Ix4;
use serde::Deserialize;
use vidflow::answer::SampleInputs;
use vidflow::generate::{generate, Finish, GenerateSpec, Sampling};
use vidflow::mask::MaskedRows;
use vidflow::package::Package;
use vidflow::pathway::PathwayConfig;
use vidflow::prompt::PromptBuilder;
use vidflow::runtime::RuntimeOptions;

use common::{tiny_dir, Golden, GoldenBlock};

#[derive(Debug, Deserialize)]
struct GenCase {
    name: String,
    blocks: Vec<GoldenBlock>,
    tokens: Vec<i64>,
    min_margin: f64,
}

#[derive(Debug, Deserialize)]
struct GenGolden {
    question: String,
    prompt_text: String,
    input_ids: Vec<i64>,
    seq_len: usize,
    max_new_tokens: usize,
    eos_token_id: i64,
    cases: Vec<GenCase>,
}

/// Every family's test package with a generation golden.
const FAMILIES: [&str; 5] = [
    "tests/fixtures/tiny",
    "tests/fixtures/tiny-qwen2_5_vl",
    "tests/fixtures/tiny-llava_onevision",
    "tests/fixtures/tiny-videollama3",
    "tests/fixtures/tiny-internvl_hf",
];

fn golden() -> GenGolden {
    golden_of(&tiny_dir())
}

fn golden_of(dir: &Path) -> GenGolden {
    let path = dir.join("golden/generate.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("generate.json")).expect("parse")
}

impl GenGolden {
    fn case(&self, name: &str) -> &GenCase {
        self.cases.iter().find(|c| c.name == name).expect("case")
    }
}

fn open(prefix_cache_bytes: u64) -> Package {
    open_at(&tiny_dir(), prefix_cache_bytes)
}

fn open_at(dir: &Path, prefix_cache_bytes: u64) -> Package {
    let opts = RuntimeOptions {
        threads: 1,
        prefix_cache_bytes,
        ..RuntimeOptions::default()
    };
    Package::open(dir, &opts).unwrap()
}

fn inputs(pkg: &Package, g: &GenGolden) -> SampleInputs {
    let builder = PromptBuilder::new(&pkg.manifest, pkg.dir()).unwrap();
    let layout = builder.layout_open(&g.question, None).unwrap();
    let pixels = Golden::load_from(pkg.dir())
        .f32("pixel_values")
        .into_dimensionality::<Ix4>()
        .unwrap();
    SampleInputs {
        pixels,
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout,
    }
}

/// The golden blocks (0-based inclusive layers) as a pathway config file.
fn config_of(blocks: &[GoldenBlock], num_layers: usize, dir: &Path) -> PathwayConfig {
    let mut yaml = format!("name: golden-knockout\nnum_layers: {num_layers}\nrules:\n");
    for b in blocks {
        yaml.push_str(&format!(
            "  - {{source: {}, target: {}, blocked: \"{}-{}\"}}\n",
            b.source,
            b.target,
            b.layers[0] + 1,
            b.layers[1] + 1
        ));
    }
    let path: PathBuf = dir.join("knockout.yaml");
    std::fs::write(&path, yaml).unwrap();
    PathwayConfig::from_file(&path).unwrap()
}

fn spec<'a>(g: &GenGolden, pathways: Option<&'a PathwayConfig>) -> GenerateSpec<'a> {
    GenerateSpec {
        max_tokens: g.max_new_tokens,
        sampling: Sampling::greedy(),
        pathways,
        masked_rows: MaskedRows::Uniform,
        stop: vec![g.eos_token_id],
    }
}

#[test]
fn open_prompt_tokens_match_pytorch() {
    for dir in FAMILIES.map(common::repo_path) {
        let g = golden_of(&dir);
        let pkg = open_at(&dir, 0);
        let inp = inputs(&pkg, &g);
        assert_eq!(inp.layout.rendered.text, g.prompt_text, "{dir:?}");
        assert_eq!(inp.layout.input_ids, g.input_ids, "{dir:?}");
        assert_eq!(inp.layout.seq_len, g.seq_len, "{dir:?}");
        assert!(inp.layout.option_token_ids.is_empty());
        assert!(!inp.layout.groups.question_text.is_empty());
    }
}

#[test]
fn greedy_tokens_equal_hf_generate_with_and_without_prefix_reuse() {
    for dir in FAMILIES.map(common::repo_path) {
        greedy_tokens_equal_pytorch(&dir);
    }
}

/// Full attention: HF's `generate` (LLaVA-NeXT-Video, LLaVA-OneVision, VideoLLaMA3, InternVL) or, for Qwen2.5-VL, the
/// dense loop with the official positions (transformers 5.23's `generate` uses other ones).
fn greedy_tokens_equal_pytorch(dir: &Path) {
    let g = golden_of(dir);
    let want = &g.case("full").tokens;
    assert!(g.case("full").min_margin > 1e-3);
    for budget in [0, 64 << 20] {
        let pkg = open_at(dir, budget);
        let inp = inputs(&pkg, &g);
        // Twice: with a cache, the second run takes the prefix from it.
        for run in 0..2 {
            let out = generate(&pkg, &inp, &spec(&g, None), |_| true).unwrap();
            assert_eq!(&out.tokens, want, "{dir:?} budget {budget}, run {run}");
            assert_eq!(out.prefix_reused, budget > 0);
            let stopped = want.last() == Some(&g.eos_token_id);
            assert_eq!(
                out.finish,
                if stopped {
                    Finish::Stop
                } else {
                    Finish::Length
                }
            );
        }
        if budget > 0 {
            let st = pkg.prefixes().stats();
            assert_eq!((st.misses, st.hits), (1, 1));
        }
    }
}

#[test]
fn greedy_tokens_under_a_knockout_equal_the_dense_masked_model() {
    for dir in FAMILIES.map(common::repo_path) {
        knockout_tokens_equal_pytorch(&dir);
    }
}

fn knockout_tokens_equal_pytorch(dir: &Path) {
    let g = golden_of(dir);
    let case = g.case("knockout");
    assert!(case.min_margin > 1e-3);
    assert_ne!(
        case.tokens,
        g.case("full").tokens,
        "the knockout must change the answer, or this test could not see the masks"
    );
    let tmp = tempfile::tempdir().unwrap();
    for budget in [0, 64 << 20] {
        let pkg = open_at(dir, budget);
        let config = config_of(&case.blocks, pkg.num_layers(), tmp.path());
        let inp = inputs(&pkg, &g);
        for run in 0..2 {
            let out = generate(&pkg, &inp, &spec(&g, Some(&config)), |_| true).unwrap();
            assert_eq!(
                out.tokens, case.tokens,
                "{dir:?} budget {budget}, run {run}"
            );
        }
    }
}

#[test]
fn a_wrong_rule_for_generated_tokens_changes_them() {
    // The same blocks applied to the prompt's last position only (generated tokens read
    // everything) must not reproduce the knockout golden: the rule for generated tokens is seen.
    let g = golden();
    let case = g.case("knockout");
    let tmp = tempfile::tempdir().unwrap();
    let pkg = open(0);
    let inp = inputs(&pkg, &g);
    let config = config_of(&case.blocks, pkg.num_layers(), tmp.path());
    let mut outside = config.clone();
    // Rules with target `last` become rules on a group that holds no generated token.
    for r in &mut outside.rules {
        if r.target == "last" {
            r.target = "template".into();
        }
    }
    let out = generate(&pkg, &inp, &spec(&g, Some(&outside)), |_| true).unwrap();
    assert_ne!(out.tokens, case.tokens);
}

#[test]
fn rows_without_an_open_key_need_the_zero_policy() {
    let g = golden();
    let pkg = open(0);
    let inp = inputs(&pkg, &g);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("closed.yaml");
    let mut yaml = String::from("name: closed\nnum_layers: 4\nrules:\n");
    for src in ["system", "video", "question", "template", "last"] {
        yaml.push_str(&format!(
            "  - {{source: {src}, target: last, blocked: \"2-2\"}}\n"
        ));
    }
    std::fs::write(&path, yaml).unwrap();
    let config = PathwayConfig::from_file(&path).unwrap();
    let mut s = spec(&g, Some(&config));
    let e = generate(&pkg, &inp, &s, |_| true).unwrap_err().to_string();
    assert!(
        e.contains("layer 2") && e.contains("without an open key") && e.contains("zero"),
        "{e}"
    );
    s.masked_rows = MaskedRows::Zero;
    let out = generate(&pkg, &inp, &s, |_| true).unwrap();
    assert!(!out.tokens.is_empty());
}

#[test]
fn sampling_is_seeded_and_cancellation_stops() {
    let g = golden();
    let pkg = open(0);
    let inp = inputs(&pkg, &g);
    let mut s = spec(&g, None);
    s.stop.clear();
    s.sampling = Sampling {
        temperature: 1.5,
        top_p: 1.0,
        seed: 11,
    };
    let a = generate(&pkg, &inp, &s, |_| true).unwrap().tokens;
    assert_eq!(a, generate(&pkg, &inp, &s, |_| true).unwrap().tokens);
    assert_eq!(a.len(), g.max_new_tokens);
    let seeds: Vec<Vec<i64>> = (0..4)
        .map(|seed| {
            s.sampling.seed = seed;
            generate(&pkg, &inp, &s, |_| true).unwrap().tokens
        })
        .collect();
    assert!(
        seeds.iter().any(|t| *t != a),
        "temperature 1.5 gave the same tokens for 5 seeds"
    );
    // A nucleus this small keeps only the most likely token: greedy.
    s.sampling.top_p = 1e-6;
    let mut greedy = spec(&g, None);
    greedy.stop.clear();
    assert_eq!(
        generate(&pkg, &inp, &s, |_| true).unwrap().tokens,
        generate(&pkg, &inp, &greedy, |_| true).unwrap().tokens
    );
    let mut seen = 0;
    let out = generate(&pkg, &inp, &greedy, |_| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    assert_eq!((out.tokens.len(), out.finish), (3, Finish::Cancelled));
}

#[test]
fn too_many_tokens_for_the_model_are_refused() {
    let g = golden();
    let pkg = open(0);
    let inp = inputs(&pkg, &g);
    let mut s = spec(&g, None);
    s.max_tokens = pkg.manifest.max_positions;
    let e = generate(&pkg, &inp, &s, |_| true).unwrap_err().to_string();
    assert!(
        e.contains("max_tokens") && e.contains("max_positions"),
        "{e}"
    );
    s.max_tokens = 0;
    assert!(generate(&pkg, &inp, &s, |_| true).is_err());
}
