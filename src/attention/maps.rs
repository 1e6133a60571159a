//! Head-averaged attention of chosen query rows over the video tokens, per layer, from the
//! attention-weights variant of the layer graphs, with or without a knockout.

use ndarray::{Array3, Axis};
use serde::{Deserialize, Serialize};

use crate::engine::{self, ForwardSpec, Keep, Masks, Rotary};
use crate::error::{Error, Result};
use crate::knockout::ResolvedFlow;
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::Package;
use crate::runtime::Tensor;

/// One layer's map: `frames[f][i][j]` is the attention (averaged over heads and query rows) that
/// the queries pay to the video token at grid cell (i, j) of frame f.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionMap {
    pub layer: usize,
    pub frames: Vec<Vec<Vec<f64>>>,
    /// Attention on all video tokens together, and on everything else (they sum to 1).
    pub video_mass: f64,
    pub other_mass: f64,
}

impl AttentionMap {
    /// Largest cell value.
    pub fn max(&self) -> f64 {
        self.frames
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(0.0, f64::max)
    }

    /// Attention on each frame.
    pub fn frame_mass(&self) -> Vec<f64> {
        self.frames
            .iter()
            .map(|f| f.iter().flatten().sum())
            .collect()
    }
}

/// Where the video sits: each frame's first position (frames need not be adjacent: text may sit
/// between them), and the grid of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoGrid {
    pub frame_starts: Vec<usize>,
    pub h: usize,
    pub w: usize,
}

/// A knockout for the maps: `flow` blocked in `layers`.
pub struct MapKnockout<'a> {
    pub flow: &'a ResolvedFlow,
    pub layers: &'a [usize],
}

/// Runs a full forward from the spliced embeddings `[1,S,D]` (blocking `knockout` if given) and
/// returns the maps of `layers` for the query positions `queries`.
pub fn attention_maps(
    pkg: &Package,
    embeds: &Tensor,
    rotary: &Rotary,
    grid: &VideoGrid,
    queries: &[usize],
    layers: &[usize],
    knockout: Option<MapKnockout<'_>>,
) -> Result<Vec<AttentionMap>> {
    if queries.is_empty() {
        return Err(Error::Input(
            "attention maps need at least one query position".into(),
        ));
    }
    let s = embeds.dim(1);
    let causal = EdgeMask::full_causal(1, s);
    let mut blocked = causal.clone();
    if let Some(k) = &knockout {
        k.flow.apply(&mut blocked, None)?;
    }
    let (causal, blocked) = (causal.additive(), blocked.additive());
    let block_layers: &[usize] = knockout.as_ref().map_or(&[], |k| k.layers);
    let masks = Masks::in_layers(block_layers, &blocked, &causal);
    let out = engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: embeds,
            rotary,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: false,
                kv: false,
                attn_layers: layers.to_vec(),
            },
        },
    )?;
    out.attn
        .iter()
        .map(|(layer, attn)| map_of(*layer, attn, grid, queries))
        .collect()
}

/// Averages `[1,H,S,S]` weights over heads and the query rows, and cuts out the video grid.
fn map_of(
    layer: usize,
    attn: &ndarray::Array4<f32>,
    grid: &VideoGrid,
    queries: &[usize],
) -> Result<AttentionMap> {
    let heads = attn.index_axis(Axis(0), 0); // [H,S,S]
    let (h, s, _) = heads.dim();
    let mut keys = vec![0f64; s];
    for hd in heads.outer_iter() {
        for &q in queries {
            let row = hd.row(q);
            for (k, &v) in row.iter().enumerate() {
                keys[k] += v as f64;
            }
        }
    }
    let norm = (h * queries.len()) as f64;
    keys.iter_mut().for_each(|v| *v /= norm);
    let hw = grid.h * grid.w;
    if let Some(&start) = grid.frame_starts.iter().find(|&&a| a + hw > s) {
        return Err(Error::Input(format!(
            "a video frame ({hw} tokens from {start}) does not fit {s} positions"
        )));
    }
    let cells = Array3::from_shape_fn((grid.frame_starts.len(), grid.h, grid.w), |(f, i, j)| {
        keys[grid.frame_starts[f] + i * grid.w + j]
    });
    // The frames' own rows: text between frames counts as other mass.
    let video_mass: f64 = cells.iter().sum();
    Ok(AttentionMap {
        layer,
        frames: cells
            .outer_iter()
            .map(|f| f.outer_iter().map(|r| r.to_vec()).collect())
            .collect(),
        video_mass,
        other_mass: keys.iter().sum::<f64>() - video_mass,
    })
}
