//! Parity of the Rust engine with PyTorch on the shipped test package (tests/fixtures/tiny).
//!
//! The golden files were computed by the Hugging Face model in PyTorch (export/vidflow_export/golden.py).
//! Masks are rebuilt here from the cases' group-level description and must equal PyTorch's masks
//! edge for edge before any number is compared.

mod common;

use common::*;
use ndarray::{s, Array2, Array3, Array4, ArrayView3, Axis, Ix2, Ix3, Ix4};
use vidflow::engine::{self, ForwardSpec, Keep, LayerKv, Masks, Positions, Rotary};
use vidflow::mask::{EdgeMask, MaskedRows};
use vidflow::package::{Package, Projection};
use vidflow::runtime::Tensor;

const TOL: f32 = 1e-4;

struct Groups {
    video: Vec<usize>,
    frames: Vec<Vec<usize>>,
    last: usize,
}

fn groups(meta: &GoldenMeta) -> Groups {
    let start = meta.video_start;
    let n = meta.tokens_per_frame;
    Groups {
        video: (start..start + n * meta.num_frames).collect(),
        frames: (0..meta.num_frames)
            .map(|i| (start + i * n..start + (i + 1) * n).collect())
            .collect(),
        last: meta.seq_len - 1,
    }
}

fn resolve(g: &Groups, name: &str) -> Vec<usize> {
    match name {
        "video" => g.video.clone(),
        "last" => vec![g.last],
        other => panic!("golden block names unknown group {other}"),
    }
}

/// The masks of every layer for a case, over the given query and key positions.
fn case_masks(
    meta: &GoldenMeta,
    case: &GoldenCase,
    queries: &[usize],
    keys: &[usize],
) -> Vec<EdgeMask> {
    let g = groups(meta);
    (0..meta.num_layers)
        .map(|l| {
            let mut m = EdgeMask::causal(case.batch, queries, keys);
            for b in case
                .blocks
                .iter()
                .filter(|b| b.layers[0] <= l && l <= b.layers[1])
            {
                if b.source == "cross-frame" {
                    assert_eq!(b.target, "cross-frame");
                    for i in 0..g.frames.len() {
                        for j in 0..i {
                            m.block(b.batch, &g.frames[j], &g.frames[i]).unwrap();
                        }
                    }
                } else {
                    m.block(b.batch, &resolve(&g, &b.source), &resolve(&g, &b.target))
                        .unwrap();
                }
            }
            m
        })
        .collect()
}

/// Rows and keys of a case: every position, except the extend case which computes P..S.
fn case_positions(golden: &Golden, name: &str) -> (Vec<usize>, Vec<usize>) {
    let s = golden.meta.seq_len;
    let first = if name == "extend" {
        golden.meta.prefix_len
    } else {
        0
    };
    ((first..s).collect(), (0..s).collect())
}

fn gather_rows(pkg: &Package, rot: &Rotary, from: usize) -> Rotary {
    rot.rows(pkg, &(from..rot.len()).collect::<Vec<_>>())
        .unwrap()
}

/// A device tensor read back to the host.
fn host<D: ndarray::Dimension>(pkg: &Package, t: &Tensor) -> ndarray::Array<f32, D> {
    pkg.data().download_as(t).unwrap()
}

/// Rows `from..` of `[B,S,D]`, on the device.
fn rows_from(pkg: &Package, t: &Tensor, from: usize) -> Tensor {
    pkg.data().slice(t, 1, from, t.dim(1)).unwrap()
}

/// K/V rows `..p` of every layer, on the device.
fn prefix(pkg: &Package, kv: &[LayerKv], p: usize) -> Vec<LayerKv> {
    kv.iter().map(|kv| kv.rows(pkg, 0, p).unwrap()).collect()
}

fn run_case(
    pkg: &Package,
    hidden: &Tensor,
    rot: &Rotary,
    masks: &[EdgeMask],
    past: Option<&[LayerKv]>,
) -> engine::ForwardOutput {
    let masks = Masks::per_layer(|l| Ok(masks[l].additive()));
    engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden,
            rotary: rot,
            past,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: true,
                kv: true,
                attn_layers: vec![],
            },
        },
    )
    .unwrap()
}

fn last_logits(pkg: &Package, out: &engine::ForwardOutput) -> Array2<f32> {
    engine::project(pkg, Projection::NormHead, &out.last_row(pkg).unwrap())
        .unwrap()
        .index_axis_move(Axis(1), 0)
}

fn compare_case(pkg: &Package, golden: &Golden, name: &str, out: &engine::ForwardOutput) {
    let expected = golden
        .f32(&format!("{name}.hidden"))
        .into_dimensionality::<Ix4>()
        .unwrap();
    assert_eq!(
        out.hidden_states.len(),
        expected.shape()[0],
        "{name}: layer count"
    );
    for (l, h) in out.hidden_states.iter().enumerate() {
        let what = if l == 0 {
            format!("{name}: layer input")
        } else {
            format!("{name}: output of layer {}", l - 1)
        };
        let h: Array3<f32> = host(pkg, h);
        assert_close(h.view(), expected.index_axis(Axis(0), l), TOL, &what);
    }
    let logits = golden
        .f32(&format!("{name}.logits_last"))
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_close(
        last_logits(pkg, out).view(),
        logits.view(),
        TOL,
        &format!("{name}: last-position logits"),
    );
}

#[test]
fn masks_built_from_groups_equal_pytorch_masks() {
    let golden = Golden::load();
    for case in &golden.meta.cases {
        let (q, k) = case_positions(&golden, &case.name);
        let masks = case_masks(&golden.meta, case, &q, &k);
        let expected = golden.u8(&format!("{}.blocked", case.name));
        assert_eq!(
            expected.shape(),
            [golden.meta.num_layers, case.batch, q.len(), k.len()],
            "{}",
            case.name
        );
        for (l, m) in masks.iter().enumerate() {
            let ours = m.blocked().mapv(u8::from);
            let theirs = expected
                .index_axis(Axis(0), l)
                .into_dimensionality::<Ix3>()
                .unwrap();
            let diff = ours
                .iter()
                .zip(theirs.iter())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                diff, 0,
                "case {} layer {l}: {diff} mask entries differ from PyTorch",
                case.name
            );
        }
    }
    // The knockout case must actually block something beyond causality, or the test is vacuous.
    let g = &golden;
    let (q, k) = case_positions(g, "knockout");
    let causal = EdgeMask::causal(1, &q, &k).open_edges()[0];
    let ko = case_masks(&g.meta, g.case("knockout"), &q, &k);
    assert!(ko.iter().any(|m| m.open_edges()[0] < causal));
}

#[test]
fn vision_embedding_and_rotary_graphs_match_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let pixels = golden
        .f32("pixel_values")
        .into_dimensionality::<Ix4>()
        .unwrap();
    let video = engine::encode_video(&pkg, pixels.view()).unwrap();
    let want = golden
        .f32("video_embeds")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let video: Array2<f32> = host(&pkg, &video);
    assert_close(video.view(), want.view(), TOL, "video embeddings");

    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let want = golden.f32("embeds").into_dimensionality::<Ix3>().unwrap();
    let embeds: Array3<f32> = host(&pkg, &embeds);
    assert_close(embeds.view(), want.view(), TOL, "spliced input embeddings");
    let cos = golden.f32("cos").into_dimensionality::<Ix3>().unwrap();
    let sin = golden.f32("sin").into_dimensionality::<Ix3>().unwrap();
    let (rc, rs) = rot.to_host(&pkg).unwrap();
    assert_close(rc.view(), cos.view(), TOL, "rotary cos");
    assert_close(rs.view(), sin.view(), TOL, "rotary sin");
}

#[test]
fn plain_causal_prefill_matches_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let (q, k) = case_positions(&golden, "prefill");
    let masks = case_masks(&golden.meta, golden.case("prefill"), &q, &k);
    let out = run_case(&pkg, &embeds, &rot, &masks, None);
    compare_case(&pkg, &golden, "prefill", &out);
}

#[test]
fn knockout_mask_matches_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let (q, k) = case_positions(&golden, "knockout");
    let masks = case_masks(&golden.meta, golden.case("knockout"), &q, &k);
    let out = run_case(&pkg, &embeds, &rot, &masks, None);
    compare_case(&pkg, &golden, "knockout", &out);
}

#[test]
fn batch_of_two_masks_matches_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let case = golden.case("batch2");
    assert_eq!(case.batch, 2);
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let batch = pkg.data().expand_batch(&embeds, 2).unwrap();
    let (q, k) = case_positions(&golden, "batch2");
    let masks = case_masks(&golden.meta, case, &q, &k);
    let out = run_case(&pkg, &batch, &rot, &masks, None);
    compare_case(&pkg, &golden, "batch2", &out);
}

#[test]
fn extend_with_past_kv_matches_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let p = golden.meta.prefix_len;
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let keys = golden
        .f32("extend.past_key")
        .into_dimensionality::<ndarray::Ix5>()
        .unwrap();
    let values = golden
        .f32("extend.past_value")
        .into_dimensionality::<ndarray::Ix5>()
        .unwrap();
    let past: Vec<LayerKv> = (0..golden.meta.num_layers)
        .map(|l| {
            LayerKv::upload(
                &pkg,
                &keys.index_axis(Axis(0), l).to_owned(),
                &values.index_axis(Axis(0), l).to_owned(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(past[0].key.dim(2), p);
    let (q, k) = case_positions(&golden, "extend");
    let masks = case_masks(&golden.meta, golden.case("extend"), &q, &k);
    let rows = rows_from(&pkg, &embeds, p);
    let out = run_case(
        &pkg,
        &rows,
        &gather_rows(&pkg, &rot, p),
        &masks,
        Some(&past),
    );
    compare_case(&pkg, &golden, "extend", &out);
}

#[test]
fn extend_equals_prefill_on_the_same_rows() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let p = golden.meta.prefix_len;
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let case = golden.case("knockout");
    let (q, k) = case_positions(&golden, "knockout");
    let full = run_case(
        &pkg,
        &embeds,
        &rot,
        &case_masks(&golden.meta, case, &q, &k),
        None,
    );

    // Reuse the prefill's K/V of rows 0..P as past and recompute only P..S.
    let past = prefix(&pkg, &full.kv, p);
    let rows: Vec<usize> = (p..golden.meta.seq_len).collect();
    let masks = case_masks(&golden.meta, case, &rows, &k);
    let ext = run_case(
        &pkg,
        &rows_from(&pkg, &embeds, p),
        &gather_rows(&pkg, &rot, p),
        &masks,
        Some(&past),
    );
    for (l, (a, b)) in ext
        .hidden_states
        .iter()
        .zip(&full.hidden_states)
        .enumerate()
    {
        let (a, b): (Array3<f32>, Array3<f32>) = (host(&pkg, a), host(&pkg, b));
        assert_close(
            a.view(),
            b.slice(s![.., p.., ..]),
            1e-5,
            &format!("extend vs prefill, hidden state {l}"),
        );
    }
    assert_close(
        last_logits(&pkg, &ext).view(),
        last_logits(&pkg, &full).view(),
        1e-5,
        "extend vs prefill logits",
    );
}

#[test]
fn three_lens_projections_match_pytorch() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let (q, k) = case_positions(&golden, "prefill");
    let out = run_case(
        &pkg,
        &embeds,
        &rot,
        &case_masks(&golden.meta, golden.case("prefill"), &q, &k),
        None,
    );
    for (proj, name) in [
        (Projection::NormHead, "prefill.lens_norm"),
        (Projection::Head, "prefill.lens_lm"),
        (Projection::Embed, "prefill.lens_embed"),
    ] {
        let want = golden.f32(name).into_dimensionality::<Ix2>().unwrap();
        for l in 0..golden.meta.num_layers {
            let h: Array3<f32> = host(&pkg, &out.hidden_states[l + 1]);
            let last: ArrayView3<'_, f32> = h.slice(s![.., h.shape()[1] - 1.., ..]);
            let got = engine::project_host(&pkg, proj, last).unwrap();
            assert_close(
                got.slice(s![0, 0, ..]),
                want.index_axis(Axis(0), l),
                TOL,
                &format!("{name} layer {l}"),
            );
        }
    }
}

/// The parity tests above must be able to fail: a wrong rotary table, a wrong K/V slot or a
/// missing knockout each move the logits far beyond the tolerance.
#[test]
fn parity_checks_detect_wrong_rotary_kv_and_mask() {
    let pkg = open_tiny();
    let golden = Golden::load();
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let case = golden.case("knockout");
    let (q, k) = case_positions(&golden, "knockout");
    let masks = case_masks(&golden.meta, case, &q, &k);
    let want = golden
        .f32("knockout.logits_last")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let err = |out: &engine::ForwardOutput| max_err(&last_logits(&pkg, out).view(), &want.view());

    // Rotary tables with positions shifted by one from the video on (a uniform shift of every
    // position leaves relative distances, hence RoPE attention, unchanged).
    let mut shifted = golden
        .i64("position_ids")
        .into_dimensionality::<Ix2>()
        .unwrap();
    shifted
        .slice_mut(s![.., golden.meta.video_start..])
        .mapv_inplace(|p| p + 1);
    let wrong_rot =
        engine::rotary(&pkg, &Positions::from_ids(shifted.into_dyn()).unwrap()).unwrap();
    assert!(
        err(&run_case(&pkg, &embeds, &wrong_rot, &masks, None)) > 10.0 * TOL,
        "shifted rotary went unnoticed"
    );

    // The plain causal mask in place of the knockout.
    let causal: Vec<EdgeMask> = (0..golden.meta.num_layers)
        .map(|_| EdgeMask::causal(1, &q, &k))
        .collect();
    assert!(
        err(&run_case(&pkg, &embeds, &rot, &causal, None)) > 10.0 * TOL,
        "missing knockout went unnoticed"
    );

    // Past K/V with two rows swapped.
    let p = golden.meta.prefix_len;
    let full = run_case(&pkg, &embeds, &rot, &masks, None);
    let past: Vec<LayerKv> = full
        .kv
        .iter()
        .map(|kv| {
            let key: Array4<f32> = host(&pkg, &kv.key);
            let value: Array4<f32> = host(&pkg, &kv.value);
            let mut key: Array4<f32> = key.slice(s![.., .., ..p, ..]).to_owned();
            let a = key.slice(s![.., .., 0, ..]).to_owned();
            let b = key.slice(s![.., .., p - 1, ..]).to_owned();
            key.slice_mut(s![.., .., 0, ..]).assign(&b);
            key.slice_mut(s![.., .., p - 1, ..]).assign(&a);
            LayerKv::upload(&pkg, &key, &value.slice(s![.., .., ..p, ..]).to_owned()).unwrap()
        })
        .collect();
    let rows: Vec<usize> = (p..golden.meta.seq_len).collect();
    let ext_masks = case_masks(&golden.meta, case, &rows, &k);
    let ext = run_case(
        &pkg,
        &rows_from(&pkg, &embeds, p),
        &gather_rows(&pkg, &rot, p),
        &ext_masks,
        Some(&past),
    );
    assert!(err(&ext) > 10.0 * TOL, "swapped K/V rows went unnoticed");
}
