//! The logit lens over a baseline run: every layer's output projected to the vocabulary (final
//! norm + LM head, LM head alone, or the input-embedding matrix).

use ndarray::{ArrayView1, Axis};

use crate::answer::softmax;
use crate::engine;
use crate::error::{Error, Result};
use crate::package::{Package, Projection};
use crate::runtime::Tensor;

/// The lens at the last position of one layer's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LastPositionLens {
    /// 0-based layer whose output was projected.
    pub layer: usize,
    /// Softmax over the vocabulary at each option's label token, in option order.
    pub option_probs: Vec<f64>,
    /// Probability of the final prediction's token at this layer.
    pub pred_prob: f64,
    pub top1_token: i64,
    pub top1_prob: f64,
}

fn argmax(row: ArrayView1<'_, f32>) -> usize {
    // First maximum on ties.
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

fn token_index(t: i64, vocab: usize) -> Result<usize> {
    usize::try_from(t)
        .ok()
        .filter(|&i| i < vocab)
        .ok_or_else(|| Error::Input(format!("token {t} is outside the vocabulary ({vocab})")))
}

/// `outputs[l]` is layer l's output `[1,S,D]` (a baseline's `hidden[1..]`). Projects the last
/// position of every layer in one head call.
pub fn last_position_lens(
    pkg: &Package,
    outputs: &[Tensor],
    projection: Projection,
    option_tokens: &[i64],
    pred_token: i64,
) -> Result<Vec<LastPositionLens>> {
    let data = pkg.data();
    let mut stacked: Option<Tensor> = None;
    for h in outputs {
        let s = h.dim(1);
        let row = data.gather(h, 1, &[s - 1])?;
        stacked = Some(match stacked {
            None => row,
            Some(rows) => data.concat(&rows, &row, 1)?,
        });
    }
    let stacked = stacked
        .ok_or_else(|| Error::Input("the logit lens needs at least one layer output".into()))?;
    let logits = engine::project(pkg, projection, &stacked)?;
    let vocab = logits.shape()[2];
    logits
        .index_axis(Axis(0), 0)
        .outer_iter()
        .enumerate()
        .map(|(layer, row)| {
            let p = softmax(row);
            let top = argmax(row);
            Ok(LastPositionLens {
                layer,
                option_probs: option_tokens
                    .iter()
                    .map(|&t| token_index(t, vocab).map(|i| p[i]))
                    .collect::<Result<_>>()?,
                pred_prob: p[token_index(pred_token, vocab)?],
                top1_token: top as i64,
                top1_prob: p[top],
            })
        })
        .collect()
}

/// The top-1 token of every position in `positions` (a contiguous range, e.g. the video) for each
/// layer output: `[layer][position]`.
pub fn top1_tokens(
    pkg: &Package,
    outputs: &[Tensor],
    projection: Projection,
    positions: std::ops::Range<usize>,
) -> Result<Vec<Vec<i64>>> {
    outputs
        .iter()
        .map(|h| {
            let rows = pkg.data().slice(h, 1, positions.start, positions.end)?;
            let logits = engine::project(pkg, projection, &rows)?;
            Ok(logits
                .index_axis(Axis(0), 0)
                .outer_iter()
                .map(|r| argmax(r) as i64)
                .collect())
        })
        .collect()
}
