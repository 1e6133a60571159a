//! What crosses between host and device memory (issue: a device-resident data path), counted by
//! the package's data path on the CPU provider, which runs the same path in host memory:
//!
//! - a prefill uploads its inputs and one mask per distinct layer mask, whatever the layer count,
//!   and reads back only the logits rows asked for;
//! - a knockout sweep re-uploads nothing of its baseline (no input, no hidden state, no K/V):
//!   its uploads are masks and row indices only.
//!
//! Expected byte counts are computed here from the shapes (4 bytes per float, 8 per int64).

mod common;

use common::open_tiny;
use vidflow::answer::{self, SampleInputs};
use vidflow::bench::random_pixels;
use vidflow::engine::{self, ForwardSpec, Keep, Masks};
use vidflow::knockout::{
    collect_flows, plan_knockouts, run_baseline, run_knockouts, Execution, NamedTarget,
    ResolvedFlow, WindowStyle,
};
use vidflow::mask::{EdgeMask, MaskedRows};
use vidflow::package::{Package, Projection};
use vidflow::prompt::PromptBuilder;
use vidflow::runtime::Transfers;

fn sample(pkg: &Package) -> SampleInputs {
    let layout = PromptBuilder::new(&pkg.manifest, pkg.dir())
        .unwrap()
        .layout(
            "What does the man do after the dog opens the door?",
            &["It moves left", "Nothing happens", "It jumps"],
            Some(1),
        )
        .unwrap();
    let v = &pkg.manifest.video;
    SampleInputs {
        pixels: random_pixels((v.input_frames(), 3, v.frame_height, v.frame_width), 7),
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout,
    }
}

/// Transfers of `f`, from the package's counters.
fn counted<T>(pkg: &Package, f: impl FnOnce() -> T) -> (T, Transfers) {
    let before = pkg.data().transfers();
    let out = f();
    (out, pkg.data().transfers().since(&before))
}

#[test]
fn a_prefill_uploads_one_mask_per_distinct_mask_and_reads_back_only_logits() {
    let pkg = open_tiny();
    let m = &pkg.manifest;
    let num_layers = m.num_layers;
    assert!(num_layers >= 3, "the test needs a few layers");
    let inputs = sample(&pkg);
    let s = inputs.layout.seq_len;
    let (embeds, rotary) = answer::embed(&pkg, &inputs).unwrap();
    let causal = EdgeMask::full_causal(1, s).additive();
    let mask_bytes = (s * s * 4) as u64;

    let run = |start: usize, masks: &Masks| {
        // The input of the start layer (the embeddings stand in: only shapes matter here).
        let hidden = pkg.data().copy(&embeds).unwrap();
        counted(&pkg, || {
            engine::forward(
                &pkg,
                ForwardSpec {
                    start_layer: start,
                    hidden: &hidden,
                    rotary: &rotary,
                    past: None,
                    masks,
                    masked_rows: MaskedRows::Uniform,
                    keep: Keep::default(),
                },
            )
            .unwrap()
        })
    };

    // One shared mask: the same transfers for all layers as for the last one alone.
    let same = Masks::same(&causal);
    let (out, all_layers) = run(0, &same);
    let (_, one_layer) = run(num_layers - 1, &same);
    assert_eq!(all_layers, one_layer, "transfers grew with the layer count");
    assert_eq!(all_layers.host_to_device_by_kind.masks, mask_bytes);
    assert_eq!(all_layers.host_to_device_by_kind.states, 0);
    assert_eq!(all_layers.host_to_device_by_kind.inputs, 0);
    assert_eq!(
        all_layers.device_to_host_calls, 0,
        "a forward reads nothing back"
    );

    // A distinct mask per layer: one upload each, nothing else more.
    let distinct = Masks::per_layer(|_| Ok(causal.clone()));
    let (_, per_layer) = run(0, &distinct);
    assert_eq!(
        per_layer.host_to_device_by_kind.masks,
        mask_bytes * num_layers as u64
    );
    assert_eq!(
        per_layer.host_to_device_calls,
        all_layers.host_to_device_calls + num_layers as u64 - 1
    );

    // Two distinct masks over the layers (the layers of a schedule that share a mask share it).
    let mut blocked = EdgeMask::full_causal(1, s);
    blocked.block(None, &[0], &[s - 1]).unwrap();
    let mut layers = vec![EdgeMask::full_causal(1, s); num_layers];
    layers[1] = blocked.clone();
    layers[num_layers - 1] = blocked;
    let schedule = vidflow::pathway::MaskSchedule::new(layers).unwrap();
    let two = Masks::schedule(&schedule);
    let (_, shared) = run(0, &two);
    assert_eq!(shared.host_to_device_by_kind.masks, 2 * mask_bytes);

    // Only the answer row's logits come back: [1,1,V] floats.
    let (logits, read) = counted(&pkg, || {
        let last = out.last_row(&pkg).unwrap();
        engine::project(&pkg, Projection::NormHead, &last).unwrap()
    });
    assert_eq!(logits.shape(), [1, 1, m.vocab_size]);
    assert_eq!(read.device_to_host_calls, 1);
    assert_eq!(read.device_to_host_bytes, (m.vocab_size * 4) as u64);
}

#[test]
fn a_whole_sample_uploads_its_inputs_once() {
    let pkg = open_tiny();
    let m = &pkg.manifest;
    let v = &m.video;
    let pixels = v.num_frames * 3 * v.frame_height * v.frame_width * 4;
    let inputs = sample(&pkg);
    let s = inputs.layout.seq_len;
    let t = inputs.layout.input_ids.len();

    // Without prefix reuse: pixels (f32), input ids and positions (int64), one S x S mask.
    pkg.prefixes().set_budget(0);
    let (_, up) = counted(&pkg, || answer::answer(&pkg, &inputs).unwrap());
    assert_eq!(
        up.host_to_device_by_kind.inputs,
        (pixels + t * 8 + s * 8) as u64
    );
    assert_eq!(up.host_to_device_by_kind.masks, (s * s * 4) as u64);
    assert_eq!(up.host_to_device_by_kind.states, 0);
    assert_eq!(up.device_to_host_bytes, (m.vocab_size * 4) as u64);

    // With it: the prefix (P positions) and the question's rows (Q = S - P) are uploaded
    // separately, ids and positions still once each; the masks are P x P and Q x S.
    pkg.prefixes().set_budget(1 << 30);
    let p = inputs.layout.groups.question[0];
    let q = s - p;
    let (_, up) = counted(&pkg, || answer::answer(&pkg, &inputs).unwrap());
    assert_eq!(
        up.host_to_device_by_kind.inputs,
        (pixels + t * 8 + s * 8) as u64
    );
    assert_eq!(
        up.host_to_device_by_kind.masks,
        ((p * p + q * s) * 4) as u64
    );
    // A second question about the same video uploads no pixels, only its own rows' ids and
    // positions and one Q x S mask.
    let (_, up) = counted(&pkg, || answer::answer(&pkg, &inputs).unwrap());
    let own_ids = t - (p + 1 - inputs.layout.num_video_tokens());
    assert_eq!(
        up.host_to_device_by_kind.inputs,
        (own_ids * 8 + q * 8) as u64
    );
    assert_eq!(up.host_to_device_by_kind.masks, (q * s * 4) as u64);
    assert_eq!(up.host_to_device_by_kind.states, 0);
    assert_eq!(up.device_to_host_bytes, (m.vocab_size * 4) as u64);
}

#[test]
fn a_knockout_sweep_reuploads_nothing_of_its_baseline() {
    let pkg = open_tiny();
    let m = &pkg.manifest;
    let inputs = sample(&pkg);
    let baseline = run_baseline(&pkg, &inputs).unwrap();
    let flows: Vec<ResolvedFlow> = collect_flows(&NamedTarget::ALL, &[], m.video.num_frames)
        .unwrap()
        .iter()
        .map(|f| ResolvedFlow::new(f, &inputs.layout).unwrap())
        .collect();
    let knockouts = plan_knockouts(
        flows.len(),
        &(0..m.num_layers).collect::<Vec<_>>(),
        2,
        WindowStyle::Center,
        m.num_layers,
    );
    for execution in [Execution::Optimised { max_batch: 4 }, Execution::Naive] {
        let (out, up) = counted(&pkg, || {
            run_knockouts(
                &pkg,
                &baseline,
                &flows,
                &knockouts,
                execution,
                MaskedRows::Uniform,
                &mut |_| {},
            )
            .unwrap()
        });
        assert_eq!(out.readouts.len(), knockouts.len());
        assert!(out.cost.forwards > 0);
        let kinds = up.host_to_device_by_kind;
        assert_eq!(kinds.inputs, 0, "{execution:?}: inputs uploaded again");
        assert_eq!(kinds.states, 0, "{execution:?}: baseline state uploaded");
        assert!(kinds.masks > 0, "{execution:?}: the knockouts' masks");
        assert_eq!(
            up.host_to_device_bytes,
            kinds.masks + kinds.indices,
            "{execution:?}: only masks and indices cross"
        );
        // Only last-position logits come back: one read per forward, V floats per knockout
        // that ran (knockouts that block nothing reuse the baseline's readout).
        let row = (m.vocab_size * 4) as u64;
        assert_eq!(up.device_to_host_calls, out.cost.forwards as u64);
        assert_eq!(up.device_to_host_bytes % row, 0);
        assert!(up.device_to_host_bytes <= row * knockouts.len() as u64);
        if execution == Execution::Naive {
            assert_eq!(up.device_to_host_bytes, row * knockouts.len() as u64);
        }
    }
}
