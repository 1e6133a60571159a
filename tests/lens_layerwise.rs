//! `vidflow lens` against PyTorch: the tiny package's golden files hold the HF model's three
//! lenses (norm + head, head, embedding matrix) at the last position of every layer's output and
//! every layer's hidden states, for the golden prompt and frames (export/vidflow_export/golden.py).

mod common;

use common::{open_tiny, tiny_dir, Golden};
use ndarray::{s, Axis, Ix2, Ix4};
use vidflow::answer::{softmax, Sample, SampleInputs};
use vidflow::engine;
use vidflow::lens::{lens_sample, parse_keywords, LensSettings};
use vidflow::package::Projection;
use vidflow::prompt::PromptBuilder;

/// The prompt golden.py renders (QUESTION, OPTIONS there).
const QUESTION: &str = "What does the red ball do after it hits the wall?";
const OPTIONS: [&str; 3] = ["It bounces back", "It stops", "It rolls to the left"];

#[test]
fn layerwise_option_probabilities_and_video_top1_match_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let builder = PromptBuilder::new(&pkg.manifest, &tiny_dir()).unwrap();
    let layout = builder.layout(QUESTION, &OPTIONS, Some(1)).unwrap();
    let ids = golden
        .i64("input_ids")
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_eq!(
        layout.input_ids,
        ids.row(0).to_vec(),
        "the golden prompt's tokens"
    );
    let inputs = SampleInputs {
        pixels: golden
            .f32("pixel_values")
            .into_dimensionality::<Ix4>()
            .unwrap(),
        frame_indices: vec![],
        seconds_per_frame: None,
        layout,
    };
    let sample = Sample {
        id: "golden".into(),
        task: None,
        video: "unused".into(),
        question: QUESTION.into(),
        options: OPTIONS.iter().map(|o| o.to_string()).collect(),
        answer: Some(1),
        window: None,
    };
    let keywords = parse_keywords("categories:\n  any: [the, a]\n", "k").unwrap();
    let hidden = golden.f32("prefill.hidden"); // [L+1, 1, S, D]
    let num_layers = pkg.manifest.num_layers;
    for (projection, name) in [
        (Projection::NormHead, "prefill.lens_norm"),
        (Projection::Head, "prefill.lens_lm"),
        (Projection::Embed, "prefill.lens_embed"),
    ] {
        let settings = LensSettings {
            projection,
            keywords: Some(keywords.clone()),
            all_samples: true,
            out_dir: "unused".into(),
            workers: 1,
            progress: false,
            inputs: Default::default(),
            shard: None,
        };
        let records = lens_sample(&pkg, &builder, &sample, &inputs, &settings)
            .unwrap()
            .expect("all samples are traced");
        assert_eq!(records.len(), num_layers);
        let want = golden.f32(name).into_dimensionality::<Ix2>().unwrap(); // [L, V]
        let tokens = &inputs.layout.option_token_ids;
        for (l, r) in records.iter().enumerate() {
            let p = softmax(want.row(l));
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.max(1e-6);
            assert!(
                close(r.p_true, p[tokens[1] as usize]),
                "{name} layer {l}: {} vs {}",
                r.p_true,
                p[tokens[1] as usize]
            );
            assert!(
                close(r.p_false[0], p[tokens[0] as usize]),
                "{name} layer {l}"
            );
            assert!(
                close(r.p_false[1], p[tokens[2] as usize]),
                "{name} layer {l}"
            );
            let top = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
            assert_eq!(r.top1_token, top as i64, "{name} layer {l}");
            // Video rows: the top-1 of PyTorch's hidden states through the package's head.
            let v0 = inputs.layout.placeholder_index;
            let n = inputs.layout.num_video_tokens();
            let rows = hidden
                .slice(s![l + 1, .., v0..v0 + n, ..])
                .into_dimensionality()
                .unwrap();
            let logits = engine::project_host(&pkg, projection, rows).unwrap();
            let mut counts = std::collections::BTreeMap::<i64, usize>::new();
            for row in logits.index_axis(Axis(0), 0).outer_iter() {
                let t = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                *counts.entry(t as i64).or_default() += 1;
            }
            let best = counts.values().copied().max().unwrap();
            assert_eq!(
                r.top_video_tokens[0].1, best,
                "{name} layer {l}: most frequent video top-1"
            );
            let matched: usize = counts
                .iter()
                .filter(|(&t, _)| {
                    let text = builder.tokenizer().decode(&[t as u32], false).unwrap();
                    ["the", "a"].contains(&text.trim().to_lowercase().as_str())
                })
                .map(|(_, &c)| c)
                .sum();
            assert_eq!(r.concept_counts["any"], matched, "{name} layer {l}");
        }
    }
}

#[test]
fn the_lens_command_writes_records_summary_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lens");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .current_dir(common::repo_path(""))
        .args(["lens", "--model", tiny_dir().to_str().unwrap(), "--data"])
        .arg(common::repo_path("tests/fixtures/knockout/samples.json"))
        .args([
            "--keywords",
            "configs/keywords/action_sequence.yaml",
            "--projection",
            "embed",
        ])
        .args([
            "--all-samples",
            "--quiet",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = std::fs::read_to_string(out.join("lens.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 2 * 4);
    let first: vidflow::lens::LensRecord =
        serde_json::from_str(records.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first.projection.as_str(), first.p_false.len()),
        ("embed", 2)
    );
    assert_eq!(
        first.concept_counts.keys().collect::<Vec<_>>(),
        ["spatial", "temporal"]
    );
    let summary = std::fs::read_to_string(out.join("lens_summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 4);
    assert!(summary.starts_with("layer,layer_1,n,mean_p_true"));
    for f in ["lens_option_prob", "lens_concepts"] {
        for ext in ["png", "svg"] {
            assert!(out.join(format!("plots/{f}.{ext}")).is_file(), "{f}.{ext}");
        }
    }
}
