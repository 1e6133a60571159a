//! Every model family's test package (tests/fixtures/tiny-*): PyTorch parity through the library's
//! golden check, the family's own rules shown to matter (a wrong position rule, wrong rope
//! sections, a wrong separator group must break parity), token groups against the text, and every
//! analysis command run on the package.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::{Array2, Ix3};
use vidflow::check::{golden, Status};
use vidflow::engine::{self, ForwardSpec, Keep, Masks, Positions};
use vidflow::mask::{EdgeMask, MaskedRows};
use vidflow::package::Package;
use vidflow::prompt::PromptBuilder;

const TOL: f32 = 1e-4;

fn qwen_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-qwen2_5_vl")
}

fn open(dir: &Path) -> Package {
    Package::open(dir, &options()).expect("open the family's test package")
}

/// The library's golden check (vision, splice, position rule, rope, every layer's hidden state
/// and the logits of prefill, knockout, batch-of-two and extend) passes on the package.
fn golden_check_passes(dir: &Path) {
    let pkg = open(dir);
    let results = golden::check(&pkg, 1e-4).unwrap();
    assert!(results.len() >= 12, "{results:?}");
    for r in &results {
        assert_eq!(r.status, Status::Pass, "{}: {r:?}", dir.display());
    }
    for part in ["position rule", "prefill", "knockout", "batch2", "extend"] {
        assert!(
            results.iter().any(|r| r.name.contains(part)),
            "{part} not checked"
        );
    }
}

/// Largest error of the last layer's output under the plain causal mask, with the golden
/// inputs but `positions` for the rotary tables.
fn prefill_error(pkg: &Package, golden: &Golden, positions: &Positions) -> f32 {
    let (embeds, _) = golden_inputs(pkg, golden);
    let s = embeds.dim(1);
    let rotary = engine::rotary(pkg, positions).unwrap();
    let mask = EdgeMask::full_causal(1, s).additive();
    let masks = Masks::same(&mask);
    let out = engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &embeds,
            rotary: &rotary,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: true,
                kv: false,
                attn_layers: vec![],
            },
        },
    )
    .unwrap();
    let last = out.hidden_states.last().unwrap();
    let got: ndarray::Array3<f32> = pkg.data().download_as(last).unwrap();
    let want = golden.f32("prefill.hidden");
    let l = want.shape()[0] - 1;
    let want = want
        .index_axis(ndarray::Axis(0), l)
        .to_owned()
        .into_dimensionality::<Ix3>()
        .unwrap();
    max_err(&got.view(), &want.view())
}

#[test]
fn qwen2_5_vl_matches_pytorch() {
    golden_check_passes(&qwen_dir());
}

#[test]
fn qwen2_5_vl_parity_fails_with_a_wrong_position_rule_or_wrong_sections() {
    let pkg = open(&qwen_dir());
    let golden = Golden::load_from(&qwen_dir());
    let meta = &golden.meta;
    let s = meta.seq_len;
    let right = Positions::new(&pkg.manifest, Some(meta.video_start), s).unwrap();
    assert!(prefill_error(&pkg, &golden, &right) <= TOL);

    let ids = right.ids();
    let with = |f: &dyn Fn(&mut Array2<i64>)| {
        let mut wrong = ids.clone();
        f(&mut wrong);
        prefill_error(
            &pkg,
            &golden,
            &Positions::from_ids(wrong.insert_axis(ndarray::Axis(1)).into_dyn()).unwrap(),
        )
    };
    // Llama's rule: every axis the token index.
    let index = with(&|p| {
        for ((_, i), v) in p.indexed_iter_mut() {
            *v = i as i64;
        }
    });
    // transformers 5.23's helper: text after the video from start + max(grid_h, grid_w).
    let v = &pkg.manifest.video;
    let end = meta.video_start + v.num_video_tokens();
    let helper = with(&|p| {
        let first = (meta.video_start + v.grid_h.max(v.grid_w)) as i64;
        for i in end..s {
            p.column_mut(i).fill(first + (i - end) as i64);
        }
    });
    // The t and h axes exchanged: each rope section reads the other axis' positions.
    let sections = with(&|p| {
        let t = p.row(0).to_owned();
        let h = p.row(1).to_owned();
        p.row_mut(0).assign(&h);
        p.row_mut(1).assign(&t);
    });
    for (name, err) in [
        ("token-index positions", index),
        ("HF 5.23 text-after rule", helper),
        ("t/h sections exchanged", sections),
    ] {
        eprintln!("qwen2_5_vl prefill, {name}: last hidden state off by {err:.3e}");
        assert!(err > 100.0 * TOL, "{name} went unnoticed: {err}");
    }
}

#[test]
fn qwen2_5_vl_groups_follow_the_text() {
    let pkg = open(&qwen_dir());
    let builder = PromptBuilder::new(&pkg.manifest, &qwen_dir()).unwrap();
    let layout = builder
        .layout(
            "What happens first?",
            &["A cup falls", "A door opens"],
            Some(1),
        )
        .unwrap();
    let tok = builder.tokenizer();
    let id = |t: &str| i64::from(tok.token_to_id(t).unwrap());
    let v0 = layout.placeholder_index;
    let n = layout.num_video_tokens();
    assert_eq!(n, 4 * 16);
    // <|vision_start|> ends the system group, <|vision_end|> opens the template.
    assert_eq!(layout.token_id_at(v0 - 1), Some(id("<|vision_start|>")));
    assert_eq!(layout.token_id_at(v0 + n), Some(id("<|vision_end|>")));
    assert_eq!(layout.group("system").unwrap().last(), Some(&(v0 - 1)));
    assert!(layout.group("template").unwrap().contains(&(v0 + n)));
    for i in 0..4 {
        let f = layout.group(&format!("frame[{i}]")).unwrap();
        assert_eq!(f, (v0 + 16 * i..v0 + 16 * (i + 1)).collect::<Vec<_>>());
    }
    assert!(layout.group("video.sep").unwrap().is_empty());
    // The answer is the bare letter right after the assistant prefix.
    assert_eq!(layout.option_token_ids, [id("A"), id("B")]);
}

/// Eight 64x64 frames of a square moving right: enough decoded frames for every family.
fn frame_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("frames/clip");
    std::fs::create_dir_all(&folder).unwrap();
    for f in 0..8u32 {
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            let inside = x >= f * 6 && x < f * 6 + 16 && (24..40).contains(&y);
            if inside {
                image::Rgb([240, 30, 30])
            } else {
                image::Rgb([(x * 3) as u8, (y * 3) as u8, 90])
            }
        });
        img.save(folder.join(format!("frame_{f:02}.png"))).unwrap();
    }
    let samples = dir.join("samples.json");
    std::fs::write(
        &samples,
        r#"[
  {"id": "s0", "task": "action_sequence", "video": "frames/clip",
   "question": "Where does the square go?", "options": ["Left", "Right", "Nowhere"], "answer": 1},
  {"id": "s1", "task": "scene_transition", "video": "frames/clip",
   "question": "What colour is the square?", "options": ["Red", "Blue"], "answer": 0}
]"#,
    )
    .unwrap();
    samples
}

/// answer, knockout, lens, plan and eval on a family's package, which decodes `decoded` frames
/// per video.
fn every_command_runs(pkg: &Path, decoded: usize) {
    let dir = tempfile::tempdir().unwrap();
    let samples = frame_folder(dir.path());
    let (pkg, samples) = (pkg.to_str().unwrap(), samples.to_str().unwrap());
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let answers = run_vidflow(&[
        "answer",
        "--model",
        pkg,
        "--samples",
        samples,
        "--json",
        "--threads",
        "1",
    ]);
    let lines: Vec<serde_json::Value> = answers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{answers}");
    for l in &lines {
        assert!(l.get("error").is_none(), "{l}");
        assert_eq!(l["frame_indices"].as_array().unwrap().len(), decoded, "{l}");
        let p: f64 = l["scores"]["option_share"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-4, "{l}");
    }

    // Open-ended generation under a pathway config: generated tokens take positions after the
    // prompt's largest one (the family's rule).
    let clip = dir.path().join("frames/clip");
    let generated = run_vidflow(&[
        "answer",
        "--model",
        pkg,
        "--video",
        clip.to_str().unwrap(),
        "--question",
        "What moves?",
        "--generate",
        "4",
        "--pathways",
        "configs/pathways/tiny.yaml",
        "--json",
        "--threads",
        "1",
    ]);
    let g: serde_json::Value = serde_json::from_str(generated.trim()).unwrap();
    assert!(!g["tokens"].as_array().unwrap().is_empty(), "{g}");

    let ko = out("knockout");
    run_vidflow(&[
        "knockout",
        "--model",
        pkg,
        "--data",
        samples,
        "--targets",
        "cross-frame,vql-to-ql,question-and-options-to-last,vq-to-true-opt",
        "--window",
        "1",
        "--all-samples",
        "--threads",
        "1",
        "--out",
        &ko,
    ]);
    let records = std::fs::read_to_string(Path::new(&ko).join("knockouts.jsonl")).unwrap();
    assert!(records.lines().count() >= 2 * 4, "{records}");

    let lens = out("lens");
    run_vidflow(&[
        "lens",
        "--model",
        pkg,
        "--data",
        samples,
        "--all-samples",
        "--quiet",
        "--threads",
        "1",
        "--out",
        &lens,
    ]);
    let records = std::fs::read_to_string(Path::new(&lens).join("lens.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 2 * 4);

    // Every published pathway config resolves on the package's groups.
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo_path("configs/pathways"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    configs.sort();
    assert!(configs.len() >= 5);
    for config in &configs {
        let plan = run_vidflow(&[
            "plan",
            "--model",
            pkg,
            "--config",
            config.to_str().unwrap(),
            "--scale",
            "--json",
        ]);
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        assert_eq!(plan["layers"].as_array().unwrap().len(), 4, "{config:?}");
    }

    let eval = out("eval");
    let data = format!("json:{samples}");
    for mode in [
        "full",
        "pathways:configs/pathways/llava-next-7b-video-ft.yaml",
    ] {
        let run = format!("{eval}-{}", mode.len());
        run_vidflow(&[
            "eval",
            "--model",
            pkg,
            "--data",
            &data,
            "--mode",
            mode,
            "--scale",
            "--quiet",
            "--threads",
            "1",
            "--out",
            &run,
        ]);
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(&run).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["overall"]["scored"], 2, "{summary}");
    }
}

#[test]
fn qwen2_5_vl_runs_every_command() {
    every_command_runs(&qwen_dir(), 8);
}

/// The golden prompt (export/vidflow_export/golden.py QUESTION, OPTIONS).
const GOLDEN_QUESTION: &str = "What does the red ball do after it hits the wall?";
const GOLDEN_OPTIONS: [&str; 3] = ["It bounces back", "It stops", "It rolls to the left"];

/// `[L,B,S,S]` blocked flags of a golden case rebuilt from vidflow's token groups of the golden
/// prompt (causality plus the case's block rules; `cross-frame` = frame[j] ↛ frame[i], j < i),
/// with the groups named in `overrides` replaced.
fn case_blocked(
    golden: &Golden,
    layout: &vidflow::prompt::PromptLayout,
    case: &str,
    overrides: &[(String, Vec<usize>)],
) -> ndarray::Array4<u8> {
    let meta = &golden.meta;
    let c = golden.case(case);
    let s = layout.seq_len;
    let mut blocked = ndarray::Array4::<u8>::zeros((meta.num_layers, c.batch, s, s));
    for q in 0..s {
        for k in q + 1..s {
            blocked.slice_mut(ndarray::s![.., .., q, k]).fill(1);
        }
    }
    let group = |name: &str| -> Vec<usize> {
        match overrides.iter().find(|(n, _)| n == name) {
            Some((_, v)) => v.clone(),
            None => layout.group(name).unwrap().to_vec(),
        }
    };
    for rule in &c.blocks {
        let pairs: Vec<(Vec<usize>, Vec<usize>)> = if rule.source == "cross-frame" {
            let frames: Vec<Vec<usize>> = (0..layout.num_frames)
                .map(|i| group(&format!("frame[{i}]")))
                .collect();
            (0..frames.len())
                .flat_map(|i| (0..i).map(move |j| (j, i)))
                .map(|(j, i)| (frames[j].clone(), frames[i].clone()))
                .collect()
        } else {
            vec![(group(&rule.source), group(&rule.target))]
        };
        let batches: Vec<usize> = rule.batch.map_or((0..c.batch).collect(), |b| vec![b]);
        for l in rule.layers[0]..=rule.layers[1].min(meta.num_layers - 1) {
            for &b in &batches {
                for (sources, targets) in &pairs {
                    for &q in targets {
                        for &k in sources {
                            blocked[(l, b, q, k)] = 1;
                        }
                    }
                }
            }
        }
    }
    blocked
}

/// vidflow's layout of the golden prompt has PyTorch's token ids, and the knockout and batch-of-two
/// masks rebuilt from its groups equal PyTorch's edge for edge; `wrong_video` (a video group with
/// the separator tokens misplaced) must change them.
fn groups_match_pytorch(dir: &Path, wrong_video: impl Fn(&[usize]) -> Vec<usize>) {
    let pkg = open(dir);
    let golden = Golden::load_from(dir);
    let builder = PromptBuilder::new(&pkg.manifest, dir).unwrap();
    let layout = builder
        .layout(GOLDEN_QUESTION, &GOLDEN_OPTIONS, None)
        .unwrap();
    let ids = golden.i64("input_ids");
    assert_eq!(
        layout.input_ids,
        ids.iter().copied().collect::<Vec<_>>(),
        "token ids"
    );
    assert_eq!(layout.seq_len, golden.meta.seq_len);
    for case in ["knockout", "batch2"] {
        let want = golden.u8(&format!("{case}.blocked"));
        let got = case_blocked(&golden, &layout, case, &[]);
        assert_eq!(got.into_dyn(), want, "{case}: masks differ from PyTorch's");
    }
    let wrong = wrong_video(layout.group("video").unwrap());
    let differ = knockout_edges_changed(dir, &[("video".into(), wrong)]);
    eprintln!(
        "{}: a misplaced separator changes {differ} knockout mask edges",
        dir.display()
    );
    assert!(differ > 0, "a misplaced separator went unnoticed");
}

/// How many edges of the golden knockout case change when vidflow's groups of the golden prompt
/// are replaced by `overrides`.
fn knockout_edges_changed(dir: &Path, overrides: &[(String, Vec<usize>)]) -> usize {
    let golden = Golden::load_from(dir);
    let (_, layout) = golden_layout(dir);
    let got = case_blocked(&golden, &layout, "knockout", overrides);
    let want = golden.u8("knockout.blocked");
    got.iter().zip(want.iter()).filter(|(a, b)| a != b).count()
}

#[test]
fn qwen2_5_vl_groups_and_masks_match_pytorch() {
    // Counting <|vision_end|> as video (it is template text) must change the knockout's masks.
    groups_match_pytorch(&qwen_dir(), |video| {
        let mut v = video.to_vec();
        v.push(v.last().unwrap() + 1);
        v
    });
}

fn onevision_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-llava_onevision")
}

#[test]
fn llava_onevision_matches_pytorch() {
    golden_check_passes(&onevision_dir());
}

#[test]
fn llava_onevision_groups_and_masks_match_pytorch() {
    // The newline the model appends after the last frame is video (so video -> last blocks it):
    // leaving it out of `video` must change the knockout's masks.
    groups_match_pytorch(&onevision_dir(), |video| video[..video.len() - 1].to_vec());
}

#[test]
fn llava_onevision_newline_is_video_and_no_frame() {
    let pkg = open(&onevision_dir());
    let builder = PromptBuilder::new(&pkg.manifest, &onevision_dir()).unwrap();
    let layout = builder
        .layout(
            "What happens first?",
            &["A cup falls", "A door opens"],
            Some(0),
        )
        .unwrap();
    let v0 = layout.placeholder_index;
    assert_eq!(layout.num_video_tokens(), 4 * 16 + 1);
    assert_eq!(layout.group("video.sep").unwrap(), [v0 + 64]);
    assert_eq!(
        layout.group("video").unwrap(),
        (v0..v0 + 65).collect::<Vec<_>>()
    );
    assert_eq!(
        layout.group("frame[3]").unwrap(),
        (v0 + 48..v0 + 64).collect::<Vec<_>>()
    );
    // The text after the video starts right after the newline.
    let tok = builder.tokenizer();
    assert_eq!(
        layout.token_id_at(v0 + 65),
        Some(i64::from(tok.token_to_id("Ċ").unwrap()))
    );
}

#[test]
fn llava_onevision_runs_every_command() {
    every_command_runs(&onevision_dir(), 4);
}

// The paper's own checkpoint layouts, converted (export/vidflow_export/pllava.py, internvl.py):
// goldens from module classes mirroring the reference's structure.

fn pllava_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-pllava")
}

fn internvl_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-internvl")
}

/// The video plus the token right after it (template text: `\n` for PLLaVA, `</img>` for
/// InternVL) — a video group that swallowed its closing text.
fn with_next_token(video: &[usize]) -> Vec<usize> {
    let mut v = video.to_vec();
    v.push(v.last().unwrap() + 1);
    v
}

#[test]
fn pllava_matches_the_reference_structure() {
    golden_check_passes(&pllava_dir());
    groups_match_pytorch(&pllava_dir(), with_next_token);
}

#[test]
fn internvl_matches_the_reference_structure() {
    golden_check_passes(&internvl_dir());
    groups_match_pytorch(&internvl_dir(), with_next_token);
}

#[test]
fn pllava_runs_every_command() {
    every_command_runs(&pllava_dir(), 4);
}

#[test]
fn internvl_runs_every_command() {
    every_command_runs(&internvl_dir(), 4);
}

// VideoLLaMA3 (export/vidflow_export/videollama3.py): `Time {t}s:` before each frame, `,` between.

fn videollama3_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-videollama3")
}

/// The golden prompt's layout on a package, and its prompt builder.
fn golden_layout(dir: &Path) -> (PromptBuilder, vidflow::prompt::PromptLayout) {
    let pkg = open(dir);
    let builder = PromptBuilder::new(&pkg.manifest, dir).unwrap();
    let layout = builder
        .layout(GOLDEN_QUESTION, &GOLDEN_OPTIONS, None)
        .unwrap();
    (builder, layout)
}

fn videollama3_layout() -> vidflow::prompt::PromptLayout {
    golden_layout(&videollama3_dir()).1
}

/// The text of spliced text positions.
fn text_at(b: &PromptBuilder, l: &vidflow::prompt::PromptLayout, positions: &[usize]) -> String {
    let ids: Vec<u32> = positions
        .iter()
        .map(|&p| l.token_id_at(p).unwrap() as u32)
        .collect();
    b.tokenizer().decode(&ids, false).unwrap()
}

#[test]
fn videollama3_matches_pytorch() {
    golden_check_passes(&videollama3_dir());
}

#[test]
fn videollama3_groups_and_masks_match_pytorch() {
    // The text between frames is video (video -> last blocks it): leaving it out of `video`
    // must change the knockout's masks.
    let sep = videollama3_layout().groups.video_sep;
    assert!(!sep.is_empty());
    groups_match_pytorch(&videollama3_dir(), |video| {
        video.iter().copied().filter(|p| !sep.contains(p)).collect()
    });
    // The reference's own frame ranges put `,Time t s:` in the frame after it; vidflow keeps a
    // frame to its vision rows. Taking the reference's ranges must change the cross-frame masks.
    let l = videollama3_layout();
    let frames = &l.groups.frames;
    let reference: Vec<(String, Vec<usize>)> = (0..frames.len())
        .map(|i| {
            let start = if i == 0 {
                l.first_video()
            } else {
                frames[i - 1].last().unwrap() + 1
            };
            (
                format!("frame[{i}]"),
                (start..frames[i].last().unwrap() + 1).collect(),
            )
        })
        .collect();
    let differ = knockout_edges_changed(&videollama3_dir(), &reference);
    eprintln!("videollama3: the reference's frame ranges change {differ} knockout mask edges");
    assert!(differ > 0);
}

#[test]
fn videollama3_frames_are_their_rows_and_the_text_between_is_video_sep() {
    let dir = videollama3_dir();
    let v = open(&dir).manifest.video;
    let (builder, l) = golden_layout(&dir);
    let hw = v.grid_h * v.grid_w;
    let text = |ps: &[usize]| text_at(&builder, &l, ps);
    assert_eq!(l.slots.len(), v.num_frames);
    for (i, f) in l.groups.frames.iter().enumerate() {
        assert_eq!(f.len(), hw);
        assert!(
            f.windows(2).all(|w| w[1] == w[0] + 1),
            "frame {i} contiguous"
        );
        let before: Vec<usize> = if i == 0 {
            (l.first_video()..f[0]).collect()
        } else {
            (l.groups.frames[i - 1].last().unwrap() + 1..f[0]).collect()
        };
        let want = format!("{}Time {i}.0s:", if i == 0 { "" } else { "," });
        assert_eq!(text(&before), want, "text before frame {i}");
        assert!(before.iter().all(|p| l.groups.video_sep.contains(p)));
    }
    // The video ends with the last frame; `\n` after it is template.
    let end = l.video_range().end;
    assert_eq!(end, l.groups.frames.last().unwrap().last().unwrap() + 1);
    assert_eq!(text(&[end]), "\n");
    assert!(l.groups.template.contains(&end));
}

#[test]
fn videollama3_runs_every_command() {
    every_command_runs(&videollama3_dir(), 4);
}

// transformers' native InternVL (export/vidflow_export/internvl_hf.py): `Frame{i}: <img>` before
// each frame, `</img>` after it, frames joined by `\n`.

fn internvl_hf_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny-internvl_hf")
}

#[test]
fn internvl_hf_matches_pytorch() {
    golden_check_passes(&internvl_hf_dir());
    // The frame text, `</img>` after the last frame included, is video: leaving the last
    // `</img>` out of it must change the knockout's masks.
    groups_match_pytorch(&internvl_hf_dir(), |video| {
        video[..video.len() - 1].to_vec()
    });
}

#[test]
fn internvl_hf_frame_text_is_video_sep() {
    let (builder, l) = golden_layout(&internvl_hf_dir());
    let text = |ps: &[usize]| text_at(&builder, &l, ps);
    let f = &l.groups.frames;
    assert_eq!(
        text(&(l.first_video()..f[0][0]).collect::<Vec<_>>()),
        "Frame1: <img>"
    );
    for i in 1..f.len() {
        let gap: Vec<usize> = (f[i - 1].last().unwrap() + 1..f[i][0]).collect();
        assert_eq!(text(&gap), format!("</img>\nFrame{}: <img>", i + 1));
        assert!(gap.iter().all(|p| l.groups.video_sep.contains(p)));
    }
    let end = l.video_range().end;
    assert_eq!(text(&[end - 1]), "</img>");
    assert!(
        l.groups.template.contains(&end),
        "after_video's newline is template"
    );
}

#[test]
fn internvl_hf_runs_every_command() {
    every_command_runs(&internvl_hf_dir(), 4);
}
