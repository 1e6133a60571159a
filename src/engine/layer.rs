//! One decoder layer call in extend form (docs/package.md).

use ndarray::{concatenate, s, Array3, Array4, ArrayView3, ArrayView4, Axis, Ix3, Ix4};

use crate::error::{Error, Result};
use crate::mask::{with_zero_sink, MaskedRows};
use crate::package::names::*;
use crate::package::{Input, Package};

pub struct LayerOutput {
    /// `[B,Q,D]`
    pub hidden: Array3<f32>,
    /// Post-rotary `[B,Hkv,Q,Dh]` of the computed rows.
    pub key: Array4<f32>,
    pub value: Array4<f32>,
    /// `[B,H,Q,P+Q]`, only when asked for.
    pub attn: Option<Array4<f32>>,
}

/// Runs layer `l` over the computed rows, reading `past` K/V and the additive `mask [B,1,Q,P+Q]`.
/// `masked_rows` says what a row whose keys are all blocked attends to; for `zero` a zero key
/// and value are put in front of `past` where needed (see [`with_zero_sink`]), invisible in the
/// outputs.
#[allow(clippy::too_many_arguments)]
pub fn run_layer(
    pkg: &Package,
    l: usize,
    hidden: ArrayView3<'_, f32>,
    cos: ArrayView3<'_, f32>,
    sin: ArrayView3<'_, f32>,
    past_key: ArrayView4<'_, f32>,
    past_value: ArrayView4<'_, f32>,
    mask: ArrayView4<'_, f32>,
    with_attn: bool,
    masked_rows: MaskedRows,
) -> Result<LayerOutput> {
    let (b, q, _) = hidden.dim();
    let p = past_key.shape()[2];
    if mask.shape() != [b, 1, q, p + q] {
        return Err(Error::Input(format!(
            "layer {l}: mask has shape {:?}, expected [{b}, 1, {q}, {}] (batch, 1, rows, past + rows)",
            mask.shape(),
            p + q
        )));
    }
    if past_key.shape()[0] != b || past_value.shape() != past_key.shape() {
        return Err(Error::Input(format!(
            "layer {l}: past key {:?} / value {:?} do not match batch {b}",
            past_key.shape(),
            past_value.shape()
        )));
    }
    let sink = match masked_rows {
        MaskedRows::Uniform => None,
        MaskedRows::Zero => with_zero_sink(mask),
    };
    let sunk_past = sink.as_ref().map(|_| {
        let (pb, h, _, d) = past_key.dim();
        let zero = Array4::<f32>::zeros((pb, h, 1, d));
        (
            concatenate(Axis(2), &[zero.view(), past_key]).expect("same batch and heads"),
            concatenate(Axis(2), &[zero.view(), past_value]).expect("same batch and heads"),
        )
    });
    let (past_key, past_value, mask) = match (&sink, &sunk_past) {
        (Some(m), Some((k, v))) => (k.view(), v.view(), m.view()),
        _ => (past_key, past_value, mask),
    };
    let graph = if with_attn {
        pkg.layer_attn(l)?
    } else {
        &pkg.layers[l]
    };
    let mut outputs = vec![LAYER_OUT_HIDDEN, LAYER_OUT_KEY, LAYER_OUT_VALUE];
    if with_attn {
        outputs.push(LAYER_OUT_ATTN);
    }
    let out = graph.run(
        vec![
            (LAYER_IN_HIDDEN, Input::F32(hidden.into_dyn())),
            (LAYER_IN_COS, Input::F32(cos.into_dyn())),
            (LAYER_IN_SIN, Input::F32(sin.into_dyn())),
            (LAYER_IN_PAST_KEY, Input::F32(past_key.into_dyn())),
            (LAYER_IN_PAST_VALUE, Input::F32(past_value.into_dyn())),
            (LAYER_IN_MASK, Input::F32(mask.into_dyn())),
        ],
        &outputs,
    )?;
    let bad = |e: ndarray::ShapeError| Error::GraphMismatch {
        path: graph.path().to_path_buf(),
        msg: e.to_string(),
    };
    let mut it = out.into_iter();
    Ok(LayerOutput {
        hidden: it
            .next()
            .expect("hidden")
            .into_dimensionality::<Ix3>()
            .map_err(bad)?,
        key: it
            .next()
            .expect("key")
            .into_dimensionality::<Ix4>()
            .map_err(bad)?,
        value: it
            .next()
            .expect("value")
            .into_dimensionality::<Ix4>()
            .map_err(bad)?,
        attn: it
            .next()
            .map(|a| a.into_dimensionality::<Ix4>().map_err(bad))
            .transpose()?
            .map(|a| match sink {
                // The sink column is ours, not a position of the sequence.
                Some(_) => a.slice(s![.., .., .., 1..]).to_owned(),
                None => a,
            }),
    })
}
