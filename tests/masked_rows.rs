//! The `zero` masked-rows policy (design.md §3): a row with no open key gets zero attention
//! output. Checked against an independent construction: a row whose only open key has a zero
//! hidden state reads a zero value (RMSNorm(0) = 0 and the projections have no bias), so its
//! attention output is zero without any policy.

mod common;

use common::*;
use ndarray::{s, Array2, Array3, Array4};
use vidflow::engine::{self, LayerMask, Positions};
use vidflow::mask::{MaskedRows, BLOCKED};
use vidflow::package::Package;
use vidflow::runtime::Upload;

/// One layer's outputs, read back to the host.
struct Host {
    hidden: Array3<f32>,
    key: Array4<f32>,
    value: Array4<f32>,
    attn: Option<Array4<f32>>,
}

/// Layer `l` over rows `hidden [B,Q,D]` at `positions`, no past, with `policy`.
fn layer(
    pkg: &Package,
    l: usize,
    hidden: &Array3<f32>,
    positions: &[i64],
    mask: &Array4<f32>,
    policy: MaskedRows,
) -> Host {
    let m = &pkg.manifest;
    let b = hidden.shape()[0];
    let pos = Array2::from_shape_fn((1, positions.len()), |(_, i)| positions[i]);
    let rot = engine::rotary(pkg, &Positions::from_ids(pos.into_dyn()).unwrap()).unwrap();
    let data = pkg.data();
    let rot = engine::Rotary {
        cos: data.expand_batch(&rot.cos, b).unwrap(),
        sin: data.expand_batch(&rot.sin, b).unwrap(),
    };
    let no_past = Array4::<f32>::zeros((b, m.num_kv_heads, 0, m.head_dim));
    let no_past = data
        .upload(no_past.view().into_dyn(), Upload::State)
        .unwrap();
    let rows = data
        .upload(hidden.view().into_dyn(), Upload::State)
        .unwrap();
    let mask = LayerMask::upload(pkg, mask.view(), policy).unwrap();
    let out = engine::run_layer(
        pkg, l, &rows, &rot.cos, &rot.sin, &no_past, &no_past, &mask, true,
    )
    .unwrap();
    Host {
        hidden: data.download_as(&out.hidden).unwrap(),
        key: data.download_as(&out.key).unwrap(),
        value: data.download_as(&out.value).unwrap(),
        attn: out.attn,
    }
}

#[test]
fn a_row_without_open_keys_gets_zero_attention_output() {
    let pkg = open_tiny();
    let m = &pkg.manifest;
    let d = m.hidden_size;
    let h = Array3::from_shape_fn((1, 1, d), |(_, _, j)| ((j * 7 % 11) as f32 - 5.0) / 4.0);

    // Row h at position 1 with its only key (itself) blocked.
    let alone = Array4::from_elem((1, 1, 1, 1), BLOCKED);
    let zero = layer(&pkg, 0, &h, &[1], &alone, MaskedRows::Zero);
    let uniform = layer(&pkg, 0, &h, &[1], &alone, MaskedRows::Uniform);

    // Reference: rows [0-vector, h]; row 1 reads only row 0, whose value is zero.
    let mut pair = Array3::<f32>::zeros((1, 2, d));
    pair.slice_mut(s![.., 1.., ..]).assign(&h);
    let mut mask = Array4::<f32>::zeros((1, 1, 2, 2));
    mask[[0, 0, 0, 1]] = BLOCKED;
    mask[[0, 0, 1, 1]] = BLOCKED;
    let reference = layer(&pkg, 0, &pair, &[0, 1], &mask, MaskedRows::Uniform);

    let expected = reference.hidden.slice(s![.., 1.., ..]);
    assert_close(
        zero.hidden.view(),
        expected,
        1e-5,
        "zero policy vs zero-value key",
    );
    // The check can fail: the reference policy reads the row's own value instead.
    assert!(
        max_err(&uniform.hidden.view(), &expected) > 1e-3,
        "uniform and zero policies should differ on an empty row"
    );
    // K/V of the computed rows do not depend on the policy; the sink is not in the weights.
    assert_eq!(zero.key, uniform.key);
    assert_eq!(zero.value, uniform.value);
    let attn = zero.attn.unwrap();
    assert_eq!(attn.shape(), [1, m.num_heads, 1, 1]);
    assert!(attn.iter().all(|&w| w.abs() < 1e-6), "{attn:?}");
}

#[test]
fn rows_with_open_keys_are_unchanged_by_the_zero_policy() {
    let pkg = open_tiny();
    let s = 5;
    let hidden = Array3::from_shape_fn((2, s, pkg.manifest.hidden_size), |(b, i, j)| {
        (((b + 1) * (i * 13 + j * 5)) % 19) as f32 / 9.5 - 1.0
    });
    let positions: Vec<i64> = (0..s as i64).collect();
    // Entry 0: row 3 reads nothing. Entry 1: plain causal.
    let mut edges = vidflow::mask::EdgeMask::full_causal(2, s);
    edges.block(Some(0), &[0, 1, 2, 3], &[3]).unwrap();
    let mask = edges.additive();
    let run = |policy| layer(&pkg, 1, &hidden, &positions, &mask, policy).hidden;
    let (zero, uniform) = (run(MaskedRows::Zero), run(MaskedRows::Uniform));
    for b in 0..2 {
        for r in 0..s {
            let (z, u) = (zero.slice(s![b, r, ..]), uniform.slice(s![b, r, ..]));
            let differs = z.iter().zip(u).any(|(a, c)| (a - c).abs() > 1e-4);
            assert_eq!(differs, b == 0 && r == 3, "entry {b} row {r}");
        }
    }
}
