//! The position rule of each family (engine::positions) against hand-computed ids.

mod common;

use common::*;
use ndarray::array;
use vidflow::engine::Positions;
use vidflow::package::manifest::{Family, Manifest, MropeSpec};

/// The tiny package's manifest turned into a Qwen2.5-VL one: 2 temporal groups of 2x3 tokens,
/// 1.5 position steps per group (2 tokens per second, 0.75 s per group).
fn qwen() -> Manifest {
    let mut m = Manifest::from_file(&repo_path("tests/fixtures/tiny/model.yaml")).unwrap();
    m.family = Family::Qwen25Vl;
    m.mrope = Some(MropeSpec {
        temporal_patch_size: 2,
        tokens_per_second: 2.0,
        seconds_per_group: 0.75,
        sections: [2, 3, 3],
    });
    m.video.num_frames = 2;
    m.video.grid_h = 2;
    m.video.grid_w = 3;
    m
}

#[test]
fn llama_positions_are_token_indices() {
    let m = Manifest::from_file(&repo_path("tests/fixtures/tiny/model.yaml")).unwrap();
    let p = Positions::new(&m, Some(3), 6).unwrap();
    assert_eq!(p.ids(), &array![[0, 1, 2, 3, 4, 5]]);
    assert_eq!(p.with_generated(2).ids(), &array![[0, 1, 2, 3, 4, 5, 6, 7]]);
    assert_eq!(p.input(2).shape(), &[2, 6]);
}

#[test]
fn qwen2_5_vl_positions_follow_the_frame_grid() {
    let m = qwen();
    // 3 text tokens, 12 video tokens (2 groups of 2x3), 2 text tokens.
    let p = Positions::new(&m, Some(3), 17).unwrap();
    let t = [0, 1, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 6, 7];
    let h = [0, 1, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4, 6, 7];
    let w = [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7];
    assert_eq!(p.ids().row(0).to_vec(), t, "t (group 1 at 3 + floor(1.5))");
    assert_eq!(p.ids().row(1).to_vec(), h, "h");
    assert_eq!(p.ids().row(2).to_vec(), w, "w (text after at max 5 + 1)");
    // Generated tokens continue after the largest position on every axis.
    let g = p.with_generated(2);
    assert_eq!(g.ids().column(17).to_vec(), [8, 8, 8]);
    assert_eq!(g.ids().column(18).to_vec(), [9, 9, 9]);
    // Rows keep their positions when a subset is computed.
    assert_eq!(
        p.select(&[0, 10, 16]).ids(),
        &array![[0, 4, 7], [0, 3, 7], [0, 4, 7]]
    );
    assert_eq!(p.range(15..17).ids(), &array![[6, 7], [6, 7], [6, 7]]);
    assert_eq!(p.input(1).shape(), &[3, 1, 17]);
}

#[test]
fn qwen2_5_vl_text_after_a_long_video_starts_after_its_last_time_step() {
    // 4 groups at 2 steps each: t reaches start + 6, beyond the grid (3): the text after the
    // video starts at start + 7, where a rule advancing by max(grid_h, grid_w) would give
    // start + 3.
    let mut m = qwen();
    m.video.num_frames = 4;
    m.mrope.as_mut().unwrap().seconds_per_group = 1.0;
    let p = Positions::new(&m, Some(1), 1 + 24 + 1).unwrap();
    assert_eq!(p.ids().column(25).to_vec(), [8, 8, 8]);
    assert_eq!(p.ids()[(0, 1 + 18)], 7, "group 3 at 1 + 3 * 2");
}

#[test]
fn qwen2_5_vl_without_video_counts_tokens_on_three_axes() {
    let p = Positions::new(&qwen(), None, 4).unwrap();
    assert_eq!(p.ids(), &array![[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]);
}

#[test]
fn video_running_past_the_sequence_is_refused() {
    let e = Positions::new(&qwen(), Some(10), 17)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10..22") && e.contains("17 tokens"), "{e}");
}

#[test]
fn qwen2_5_vl_time_steps_follow_the_video_when_its_rate_is_known() {
    // 0.25 s between sampled frames, 2 frames a group: 0.5 s a group, 1 position step at 2
    // tokens per second (the manifest's 0.75 s would give 1.5).
    let m = qwen();
    let p = Positions::timed(&m, Some(3), 17, Some(0.25)).unwrap();
    assert_eq!(p.ids()[(0, 3)], 3);
    assert_eq!(p.ids()[(0, 9)], 4, "group 1 at 3 + 1");
    assert_eq!(
        p.ids().column(15).to_vec(),
        [6, 6, 6],
        "text after at max(4, 4, 5) + 1"
    );
    assert_eq!(
        Positions::timed(&m, Some(3), 17, None).unwrap(),
        Positions::new(&m, Some(3), 17).unwrap()
    );
}

#[test]
fn frame_spacing_comes_from_the_sampled_indices_and_the_rate() {
    use vidflow::video::SampledFrames;
    let sampled = |indices: Vec<usize>, fps| SampledFrames {
        frames: Vec::new(),
        indices,
        total_frames: 100,
        fps,
        decode_errors: 0,
    };
    // Segment middles of 100 frames in 8 segments: 6, 18, …, 93 -> (93 - 6) / 7 frames apart.
    let s = sampled(vec![6, 18, 31, 43, 56, 68, 81, 93], Some(25.0));
    assert!((s.seconds_per_frame().unwrap() - 87.0 / 7.0 / 25.0).abs() < 1e-12);
    assert_eq!(sampled(vec![6, 18], None).seconds_per_frame(), None);
    assert_eq!(sampled(vec![6], Some(25.0)).seconds_per_frame(), None);
}
