//! The decoder stack in extend form: from any start layer, over any subset of rows, reading
//! cached K/V of rows that are not recomputed. A plain prefill is the case start 0, no past.

use ndarray::{s, Array3, Array4, ArrayView3, ArrayView4};

use super::inputs::Rotary;
use super::layer::run_layer;
use crate::error::{Error, Result};
use crate::mask::MaskedRows;
use crate::package::Package;

/// Post-rotary keys and values of one layer, `[B,Hkv,P,Dh]` each.
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub key: Array4<f32>,
    pub value: Array4<f32>,
}

/// What a forward pass keeps besides the final rows.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    /// Every layer's input and output hidden states of the computed rows.
    pub hidden: bool,
    /// Every computed layer's K/V (for reuse as `past` by later calls).
    pub kv: bool,
    /// Layers whose attention weights are returned (runs the attention variant there).
    pub attn_layers: Vec<usize>,
}

/// Additive mask for layer `l`, shaped `[B,1,Q,P+Q]`.
pub type MaskFn<'a> = dyn Fn(usize) -> Result<Array4<f32>> + 'a;

pub struct ForwardSpec<'a> {
    /// First layer to run; `hidden` is that layer's input.
    pub start_layer: usize,
    /// `[B,Q,D]` input rows of `start_layer`.
    pub hidden: Array3<f32>,
    /// Rotary tables of the computed rows, batch B or 1.
    pub rotary: &'a Rotary,
    /// Per layer (indexed by absolute layer), K/V of context rows not recomputed, batch B or 1.
    pub past: Option<&'a [LayerKv]>,
    pub mask: &'a MaskFn<'a>,
    /// What rows with no open key attend to (design.md §3).
    pub masked_rows: MaskedRows,
    pub keep: Keep,
}

pub struct ForwardOutput {
    /// Entry 0 is the input of `start_layer`, entry i the output of layer `start_layer + i - 1`.
    pub hidden_states: Vec<Array3<f32>>,
    /// K/V of the computed rows, one entry per computed layer, starting at `start_layer`.
    pub kv: Vec<LayerKv>,
    /// `(layer, [B,H,Q,P+Q])` for the layers in `keep.attn_layers`.
    pub attn: Vec<(usize, Array4<f32>)>,
    /// Output of the last layer, `[B,Q,D]`.
    pub final_hidden: Array3<f32>,
}

impl ForwardOutput {
    /// The last computed row of the final layer, `[B,1,D]`: the answer position.
    pub fn last_row(&self) -> ArrayView3<'_, f32> {
        let q = self.final_hidden.shape()[1];
        self.final_hidden.slice(s![.., q - 1..q, ..])
    }
}

fn batched<'v>(a: &'v Array3<f32>, b: usize, what: &str) -> Result<ArrayView3<'v, f32>> {
    let (ab, q, r) = a.dim();
    if ab == b {
        Ok(a.view())
    } else if ab == 1 {
        Ok(a.broadcast((b, q, r)).expect("batch 1 broadcasts"))
    } else {
        Err(Error::Input(format!(
            "{what} has batch {ab}, rows have batch {b}"
        )))
    }
}

fn batched4<'v>(a: &'v Array4<f32>, b: usize, what: &str) -> Result<ArrayView4<'v, f32>> {
    let (ab, h, p, d) = a.dim();
    if ab == b {
        Ok(a.view())
    } else if ab == 1 {
        Ok(a.broadcast((b, h, p, d)).expect("batch 1 broadcasts"))
    } else {
        Err(Error::Input(format!(
            "{what} has batch {ab}, rows have batch {b}"
        )))
    }
}

/// Runs layers `start_layer..L`.
pub fn forward(pkg: &Package, spec: ForwardSpec<'_>) -> Result<ForwardOutput> {
    let m = &pkg.manifest;
    let num_layers = m.num_layers;
    if spec.start_layer >= num_layers {
        return Err(Error::Input(format!(
            "start layer {} is past the model's {num_layers} layers",
            spec.start_layer
        )));
    }
    let (b, q, d) = spec.hidden.dim();
    if d != m.hidden_size || q == 0 {
        return Err(Error::Input(format!(
            "hidden rows have shape [{b}, {q}, {d}], expected [B, Q>0, {}]",
            m.hidden_size
        )));
    }
    if spec.rotary.cos.shape()[1] != q || spec.rotary.sin.shape() != spec.rotary.cos.shape() {
        return Err(Error::Input(format!(
            "rotary tables cover {} rows, the call computes {q}",
            spec.rotary.cos.shape()[1]
        )));
    }
    let cos = batched(&spec.rotary.cos, b, "cos")?;
    let sin = batched(&spec.rotary.sin, b, "sin")?;
    let empty = Array4::<f32>::zeros((b, m.num_kv_heads, 0, m.head_dim));

    let mut out = ForwardOutput {
        hidden_states: Vec::new(),
        kv: Vec::new(),
        attn: Vec::new(),
        final_hidden: Array3::zeros((0, 0, 0)),
    };
    let mut hidden = spec.hidden;
    for l in spec.start_layer..num_layers {
        let (pk, pv) = match spec.past {
            Some(past) => {
                let kv = past.get(l).ok_or_else(|| {
                    Error::Input(format!(
                        "past K/V given for {} layers, layer {l} needs one",
                        past.len()
                    ))
                })?;
                (
                    batched4(&kv.key, b, "past key")?,
                    batched4(&kv.value, b, "past value")?,
                )
            }
            None => (empty.view(), empty.view()),
        };
        let mask = (spec.mask)(l)?;
        let with_attn = spec.keep.attn_layers.contains(&l);
        let step = run_layer(
            pkg,
            l,
            hidden.view(),
            cos,
            sin,
            pk,
            pv,
            mask.view(),
            with_attn,
            spec.masked_rows,
        )?;
        if spec.keep.hidden {
            out.hidden_states.push(hidden);
        }
        if spec.keep.kv {
            out.kv.push(LayerKv {
                key: step.key,
                value: step.value,
            });
        }
        if let Some(a) = step.attn {
            out.attn.push((l, a));
        }
        hidden = step.hidden;
    }
    if spec.keep.hidden {
        out.hidden_states.push(hidden.clone());
    }
    out.final_hidden = hidden;
    Ok(out)
}
