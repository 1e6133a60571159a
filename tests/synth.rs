//! `vidflow synth`: determinism, the TVBench layout, balanced answers, and the property the
//! temporal tasks exist for: no single frame gives the answer away.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One sample of the single-frame probe: label, per-frame features, multi-frame features,
/// features of one randomly chosen frame.
type Probe = (usize, Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

use image::RgbImage;
use serde_json::Value;
use vidflow::data::{load, DataSpec};
use vidflow::synth::{generate, Suite, SynthConfig, SynthSummary, BACKGROUND, PALETTE};
use vidflow::video::{decode_frames_at, probe};

const TEMPORAL: [&str; 5] = [
    "action_antonym",
    "action_sequence",
    "moving_direction",
    "object_count",
    "scene_transition",
];

fn config(seed: u64, per_task: usize, suite: Suite) -> SynthConfig {
    SynthConfig {
        seed,
        per_task,
        suite,
        ..SynthConfig::default()
    }
}

fn make(dir: &Path, cfg: &SynthConfig) -> SynthSummary {
    generate(dir, cfg, |_, _| {}).expect("synth")
}

fn records(dir: &Path, task: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(format!("json/{task}.json"))).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn all_frames(path: &Path, n: usize) -> Vec<RgbImage> {
    decode_frames_at(path, &(0..n).collect::<Vec<_>>()).expect("decode")
}

#[test]
fn same_seed_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let mut cfg = config(3, 6, Suite::Temporal);
    cfg.dump_frames = Some(8);
    make(&a, &cfg);
    make(&b, &cfg);
    make(&c, &config(4, 6, Suite::Temporal));
    for task in TEMPORAL {
        let json = |d: &PathBuf| std::fs::read(d.join(format!("json/{task}.json"))).unwrap();
        assert_eq!(json(&a), json(&b), "{task}: JSON differs for the same seed");
        assert_ne!(json(&a), json(&c), "{task}: JSON equal for different seeds");
        let npy = |d: &PathBuf| std::fs::read(d.join(format!("frames/{task}.npy"))).unwrap();
        assert_eq!(npy(&a), npy(&b), "{task}: dumped frames differ");
        for r in records(&a, task) {
            let name = r["video"].as_str().unwrap();
            let va = all_frames(&a.join(format!("video/{task}/{name}")), 16);
            let vb = all_frames(&b.join(format!("video/{task}/{name}")), 16);
            assert_eq!(
                va, vb,
                "{task}/{name}: decoded frames differ for the same seed"
            );
        }
    }
    // A second run into a folder that holds a dataset is refused.
    let err = generate(&a, &cfg, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("already holds a dataset"), "{err}");
}

#[test]
fn loads_as_tvbench_and_decodes_as_rendered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(5, 4, Suite::Temporal);
    cfg.dump_frames = Some(8);
    make(tmp.path(), &cfg);
    let ds = load(&DataSpec::Tvbench(tmp.path().to_path_buf()), None).unwrap();
    assert!(ds.bad.is_empty(), "bad records: {:?}", ds.bad);
    assert_eq!(ds.samples.len(), 5 * 4);
    let tasks: std::collections::BTreeSet<_> =
        ds.samples.iter().filter_map(|s| s.task.clone()).collect();
    assert_eq!(tasks.into_iter().collect::<Vec<_>>(), TEMPORAL);
    for s in &ds.samples {
        let info = probe(&s.video).unwrap();
        assert_eq!(
            (info.width, info.height, info.codec.as_str()),
            (64, 64, "h264")
        );
        assert_eq!(info.frame_count, Some(16));
        assert_eq!(info.fps, Some(8.0));
        assert!(s.options.len() >= 2 && s.answer.unwrap() < s.options.len());
    }
    // The decoded video is the rendered clip up to H.264 4:2:0 coding noise.
    for task in TEMPORAL {
        for i in 0..4 {
            let clip = vidflow::synth::render_sample(&cfg, task, i).unwrap();
            let path = tmp
                .path()
                .join(format!("video/{task}/{}", clip.video_name()));
            let decoded = all_frames(&path, 16);
            let mut err = 0.0;
            for (x, y) in clip.frames.iter().zip(&decoded) {
                for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
                    err += (*p as f64 - *q as f64).abs();
                }
            }
            let mean = err / (16.0 * 64.0 * 64.0 * 3.0);
            assert!(
                mean < 4.0,
                "{task}/{i}: mean abs error {mean:.2} after coding"
            );
            let rec = &records(tmp.path(), task)[i];
            assert_eq!(rec["question"], clip.question.as_str());
            assert_eq!(rec["answer"], clip.candidates[clip.answer].as_str());
        }
    }
}

#[test]
fn answers_are_balanced() {
    for (suite, names) in [
        (Suite::Temporal, TEMPORAL.to_vec()),
        (
            Suite::Image,
            vec![
                "object_colour",
                "object_number",
                "object_position",
                "object_shape",
            ],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let summary = make(tmp.path(), &config(11, 24, suite));
        assert_eq!(summary.tasks.keys().cloned().collect::<Vec<_>>(), names);
        for (task, t) in &summary.tasks {
            // Recount from the files: position of the answer among the candidates.
            let mut pos = vec![0usize; t.answer_positions.len()];
            let mut texts: BTreeMap<String, usize> = BTreeMap::new();
            let mut orders = std::collections::BTreeSet::new();
            for r in records(tmp.path(), task) {
                let cands: Vec<&str> = r["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect();
                let answer = r["answer"].as_str().unwrap();
                pos[cands.iter().position(|c| *c == answer).unwrap()] += 1;
                *texts.entry(answer.to_string()).or_default() += 1;
                orders.insert(cands.join("|"));
            }
            assert_eq!(pos, t.answer_positions, "{task}");
            let k = pos.len();
            assert!(
                pos.iter().all(|&n| n == 24 / k),
                "{task}: answer positions {pos:?}"
            );
            assert!(
                t.classes.iter().all(|&n| n == 24 / t.classes.len()),
                "{task}: classes {:?}",
                t.classes
            );
            // Fixed-option tasks: every answer text equally often; options really shuffled.
            if matches!(
                task.as_str(),
                "moving_direction" | "object_count" | "action_antonym"
            ) {
                assert!(
                    texts.values().all(|&n| n == 24 / k),
                    "{task}: answers {texts:?}"
                );
                assert!(
                    orders.len() >= k.min(3),
                    "{task}: option order barely varies"
                );
            }
        }
    }
}

// ---- the single-frame check ---------------------------------------------------------------------
//
// For every temporal task, features a single frame exposes (areas, positions, colours, object
// counts, background colour) are computed from the *decoded* frames, and a k-nearest-neighbour
// classifier (non-linear, so it can use any difference between the class-conditional
// distributions) is trained on half of 400 samples and tested on the other half, separately for
// every frame index 0..15. Its best accuracy over the 16 indices must stay near chance. As a
// control that the features and the classifier have the power to find the answer, the same
// classifier on features that combine several frames must find it almost always.
//
// `scene_transition` is the exception by necessity (docs/toy.md): its frames are drawn at a random
// time for the single-frame check, because a frame at a known early index does show the first
// scene; the test measures that too and reports it.

const PER_TASK: usize = 400;
const K: usize = 15;

fn is_fg(px: &[u8], bg: [u8; 3]) -> bool {
    (0..3).any(|c| (px[c] as i32 - bg[c] as i32).abs() > 48)
}

/// Background: the per-channel median (the background covers most of every frame).
fn background(img: &RgbImage) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let mut v: Vec<u8> = img.pixels().map(|p| p.0[c]).collect();
        v.sort_unstable();
        *o = v[v.len() / 2];
    }
    out
}

/// Connected foreground components (4-neighbour): (area, cx, cy, mean r, g, b, bbox w, bbox h).
fn components(img: &RgbImage, bg: [u8; 3]) -> Vec<[f64; 8]> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    for start in 0..w * h {
        let fg = |i: usize| is_fg(&img.as_raw()[i * 3..i * 3 + 3], bg);
        if seen[start] || !fg(start) {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let mut s = [0.0f64; 6];
        let (mut x0, mut x1, mut y0, mut y1) = (w, 0, h, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            s[0] += 1.0;
            s[1] += x as f64;
            s[2] += y as f64;
            for c in 0..3 {
                s[3 + c] += img.as_raw()[i * 3 + c] as f64;
            }
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            let mut push = |j: usize| {
                if !seen[j] && fg(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < w {
                push(i + 1);
            }
            if y > 0 {
                push(i - w);
            }
            if y + 1 < h {
                push(i + w);
            }
        }
        if s[0] < 6.0 {
            continue; // coding noise
        }
        let n = s[0];
        out.push([
            n,
            s[1] / n,
            s[2] / n,
            s[3] / n,
            s[4] / n,
            s[5] / n,
            (x1 - x0 + 1) as f64,
            (y1 - y0 + 1) as f64,
        ]);
    }
    out
}

fn palette_index(c: [u8; 3]) -> usize {
    (0..PALETTE.len())
        .min_by_key(|&i| {
            (0..3)
                .map(|k| (PALETTE[i].1[k] as i32 - c[k] as i32).abs())
                .sum::<i32>()
        })
        .unwrap()
}

/// Features one frame exposes, per task (for `scene_transition` together with the options, as
/// the model sees them: +1 when the background is the first colour option A names, -1 when it
/// is the first colour option B names).
fn frame_features(task: &str, rec: &Value, img: &RgbImage) -> Vec<f64> {
    let bg = if task == "scene_transition" {
        background(img)
    } else {
        BACKGROUND
    };
    let comps = components(img, bg);
    let area: f64 = comps.iter().map(|c| c[0]).sum();
    let centre = |k: usize| comps.iter().map(|c| c[0] * c[k]).sum::<f64>() / area.max(1.0);
    match task {
        "moving_direction" | "object_count" => {
            let mut quad = [0.0; 4];
            for (i, p) in img.pixels().enumerate() {
                if is_fg(&p.0, bg) {
                    let (x, y) = (i % 64, i / 64);
                    quad[(x / 32) + 2 * (y / 32)] += 1.0;
                }
            }
            let mut f = vec![area, centre(1), centre(2), comps.len() as f64];
            f.extend(quad);
            f
        }
        "action_antonym" => {
            let c = comps.first().copied().unwrap_or([0.0; 8]);
            vec![c[0], c[1], c[2], c[6], c[7]]
        }
        "action_sequence" => {
            let mut cs = comps.clone();
            cs.sort_by(|a, b| a[1].total_cmp(&b[1]));
            cs.resize(2, [0.0; 8]);
            cs.iter().flat_map(|c| c[..6].to_vec()).collect()
        }
        "scene_transition" => {
            let shown = PALETTE[palette_index(bg)].0;
            let starts = |j: usize| {
                rec["candidates"][j]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("From {shown} "))
            };
            vec![if starts(0) {
                1.0
            } else if starts(1) {
                -1.0
            } else {
                0.0
            }]
        }
        _ => unreachable!(),
    }
}

/// The class the check predicts, in content terms, from the record and the frames.
fn check_label(task: &str, rec: &Value, frames: &[RgbImage]) -> usize {
    let cands: Vec<&str> = rec["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let answer = rec["answer"].as_str().unwrap();
    match task {
        "moving_direction" => vidflow::synth::tasks::DIRECTIONS
            .iter()
            .position(|d| *d == answer)
            .unwrap(),
        "object_count" => answer.parse().unwrap(),
        "action_antonym" => usize::from(answer.contains("smaller")),
        // Whether the object on the left changes first (left/right from frame 0).
        "action_sequence" => {
            let first = first_changes(frames);
            usize::from(first[0] > first[1])
        }
        // The position of the true option (the check below is option-aware for this task).
        "scene_transition" => cands.iter().position(|c| *c == answer).unwrap(),
        _ => unreachable!(),
    }
}

/// For the two objects of an action_sequence clip (left to right): the first frame whose colour
/// differs from frame 0's.
fn first_changes(frames: &[RgbImage]) -> [f64; 2] {
    let base = {
        let mut c = components(&frames[0], BACKGROUND);
        c.sort_by(|a, b| a[1].total_cmp(&b[1]));
        c
    };
    let mut out = [frames.len() as f64; 2];
    for (k, obj) in base.iter().take(2).enumerate() {
        let (x, y) = (obj[1].round() as u32, obj[2].round() as u32);
        let at = |f: &RgbImage| f.get_pixel(x, y).0;
        let c0 = at(&frames[0]);
        if let Some(t) = frames
            .iter()
            .position(|f| (0..3).any(|c| (at(f)[c] as i32 - c0[c] as i32).abs() > 48))
        {
            out[k] = t as f64;
        }
    }
    out
}

/// Features that combine frames: the control that the answer is there for more than one frame.
fn multi_frame_features(task: &str, rec: &Value, frames: &[RgbImage]) -> Vec<f64> {
    let f = |t: usize| frame_features(task, rec, &frames[t]);
    match task {
        // Votes of the foreground centroid's steps (robust to the steps where an object wraps).
        "moving_direction" => {
            let fs: Vec<Vec<f64>> = (0..frames.len()).map(f).collect();
            let votes =
                |k: usize| -> f64 { fs.windows(2).map(|w| (w[1][k] - w[0][k]).signum()).sum() };
            vec![votes(1), votes(2)]
        }
        "object_count" => {
            let changed = frames[0]
                .pixels()
                .zip(frames[1].pixels())
                .filter(|(p, q)| is_fg(&p.0, q.0))
                .count();
            vec![changed as f64]
        }
        "action_antonym" => {
            let votes: f64 = (1..frames.len())
                .map(|t| (f(t)[0] - f(t - 1)[0]).signum())
                .sum();
            vec![votes]
        }
        "action_sequence" => {
            let c = first_changes(frames);
            vec![c[0] - c[1]]
        }
        "scene_transition" => [f(0), f(frames.len() - 1)].concat(),
        _ => unreachable!(),
    }
}

/// Accuracy of k-NN (standardised Euclidean features) trained on `train`, tested on `test`.
fn knn_accuracy(train: &[(Vec<f64>, usize)], test: &[(Vec<f64>, usize)], classes: usize) -> f64 {
    let d = train[0].0.len();
    let mean: Vec<f64> = (0..d)
        .map(|j| train.iter().map(|x| x.0[j]).sum::<f64>() / train.len() as f64)
        .collect();
    let std: Vec<f64> = (0..d)
        .map(|j| {
            let v = train
                .iter()
                .map(|x| (x.0[j] - mean[j]).powi(2))
                .sum::<f64>()
                / train.len() as f64;
            v.sqrt().max(1e-9)
        })
        .collect();
    let z = |x: &[f64]| -> Vec<f64> { (0..d).map(|j| (x[j] - mean[j]) / std[j]).collect() };
    let tz: Vec<(Vec<f64>, usize)> = train.iter().map(|(x, y)| (z(x), *y)).collect();
    let mut correct = 0;
    for (x, y) in test {
        let q = z(x);
        let mut dist: Vec<(f64, usize)> = tz
            .iter()
            .map(|(p, c)| (p.iter().zip(&q).map(|(a, b)| (a - b).powi(2)).sum(), *c))
            .collect();
        dist.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut votes = vec![0usize; classes];
        for (_, c) in dist.iter().take(K) {
            votes[*c] += 1;
        }
        let pred = (0..classes)
            .max_by_key(|&c| (votes[c], classes - c))
            .unwrap();
        correct += usize::from(pred == *y);
    }
    correct as f64 / test.len() as f64
}

#[test]
fn no_single_frame_gives_the_answer_away() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(21, PER_TASK, Suite::Temporal);
    make(tmp.path(), &cfg);
    let mut report = Vec::new();
    let mut results = Vec::new();
    for task in TEMPORAL {
        let classes = match task {
            "moving_direction" | "object_count" => 4,
            _ => 2,
        };
        let chance = 1.0 / classes as f64;
        let mut pick = vidflow::synth::rng::Rng::new(7);
        // Per sample: label, features of each frame, multi-frame features, a random-time frame.
        let mut samples = Vec::new();
        for rec in records(tmp.path(), task) {
            let path = tmp
                .path()
                .join(format!("video/{task}/{}", rec["video"].as_str().unwrap()));
            let frames = all_frames(&path, cfg.frames);
            let label = check_label(task, &rec, &frames);
            let per_frame: Vec<Vec<f64>> = frames
                .iter()
                .map(|f| frame_features(task, &rec, f))
                .collect();
            let random_time = per_frame[pick.below(frames.len())].clone();
            samples.push((
                label,
                per_frame,
                multi_frame_features(task, &rec, &frames),
                random_time,
            ));
        }
        let (train, test) = samples.split_at(PER_TASK / 2);
        let acc = |sel: &dyn Fn(&Probe) -> Vec<f64>| {
            let tr: Vec<_> = train.iter().map(|s| (sel(s), s.0)).collect();
            let te: Vec<_> = test.iter().map(|s| (sel(s), s.0)).collect();
            knn_accuracy(&tr, &te, classes)
        };
        let by_index: Vec<f64> = (0..cfg.frames).map(|t| acc(&|s| s.1[t].clone())).collect();
        let random_time = acc(&|s| s.3.clone());
        let multi = acc(&|s| s.2.clone());
        let best = by_index.iter().cloned().fold(0.0, f64::max);
        report.push(format!(
            "{task:<17} chance {chance:.2}  single frame: best index {best:.2}, random time \
             {random_time:.2}  several frames {multi:.2}  (per index {:?})",
            by_index
                .iter()
                .map(|a| (a * 100.0).round() as i32)
                .collect::<Vec<_>>()
        ));
        results.push((task, chance, best, random_time, multi, by_index));
    }
    eprintln!("{}", report.join("\n"));
    for (task, chance, best, random_time, multi, by_index) in results {
        assert!(
            multi >= 0.9,
            "{task}: the multi-frame control finds only {multi:.2}"
        );
        assert!(
            random_time <= chance + 0.1,
            "{task}: a frame at a random time gives {random_time:.2} (chance {chance:.2})"
        );
        if task == "scene_transition" {
            // Known, documented limit: the first frame shows the first scene.
            assert!(by_index[0] > 0.9, "{task}: {by_index:?}");
        } else {
            assert!(
                best <= chance + 0.1,
                "{task}: a single frame gives {best:.2} at best (chance {chance:.2}): {by_index:?}"
            );
        }
    }
}
