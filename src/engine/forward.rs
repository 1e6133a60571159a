//! The decoder stack in extend form: from any start layer, over any subset of rows, reading
//! cached K/V of rows that are not recomputed. A plain prefill is the case start 0, no past.
//! Everything between layers stays in the provider's memory.

use ndarray::Array4;

use super::inputs::Rotary;
use super::layer::run_layer;
use super::masks::{MaskCache, Masks};
use crate::error::{Error, Result};
use crate::mask::MaskedRows;
use crate::package::Package;
use crate::runtime::{Tensor, Upload};

/// Post-rotary keys and values of one layer, `[B,Hkv,P,Dh]` each, on the device.
#[derive(Debug)]
pub struct LayerKv {
    pub key: Tensor,
    pub value: Tensor,
}

impl LayerKv {
    /// Rows `start..end` of both (along the sequence axis), on the device.
    pub fn rows(&self, pkg: &Package, start: usize, end: usize) -> Result<LayerKv> {
        Ok(LayerKv {
            key: pkg.data().slice(&self.key, 2, start, end)?,
            value: pkg.data().slice(&self.value, 2, start, end)?,
        })
    }

    /// Uploads host K/V (from a file or a reference computation).
    pub fn upload(pkg: &Package, key: &Array4<f32>, value: &Array4<f32>) -> Result<LayerKv> {
        Ok(LayerKv {
            key: pkg.data().upload(key.view().into_dyn(), Upload::State)?,
            value: pkg.data().upload(value.view().into_dyn(), Upload::State)?,
        })
    }
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

pub struct ForwardSpec<'a> {
    /// First layer to run; `hidden` is that layer's input.
    pub start_layer: usize,
    /// `[B,Q,D]` input rows of `start_layer`.
    pub hidden: &'a Tensor,
    /// Rotary tables of the computed rows, batch B or 1.
    pub rotary: &'a Rotary,
    /// Per layer (indexed by absolute layer), K/V of context rows not recomputed, batch B or 1.
    pub past: Option<&'a [LayerKv]>,
    /// The additive mask of each layer, `[B,1,Q,P+Q]`.
    pub masks: &'a Masks<'a>,
    /// What rows with no open key attend to (design.md §3).
    pub masked_rows: MaskedRows,
    pub keep: Keep,
}

pub struct ForwardOutput {
    /// Entry 0 is the input of `start_layer`, entry i the output of layer `start_layer + i - 1`.
    pub hidden_states: Vec<Tensor>,
    /// K/V of the computed rows, one entry per computed layer, starting at `start_layer`.
    pub kv: Vec<LayerKv>,
    /// `(layer, [B,H,Q,P+Q])` for the layers in `keep.attn_layers`.
    pub attn: Vec<(usize, Array4<f32>)>,
    /// Output of the last layer, `[B,Q,D]`.
    pub final_hidden: Tensor,
}

impl ForwardOutput {
    /// The last computed row of the final layer, `[B,1,D]`: the answer position.
    pub fn last_row(&self, pkg: &Package) -> Result<Tensor> {
        let q = self.final_hidden.dim(1);
        pkg.data().gather(&self.final_hidden, 1, &[q - 1])
    }
}

/// `t` at batch `b`: itself, or a device-side broadcast of its batch 1.
pub(crate) enum Batched<'t> {
    Same(&'t Tensor),
    Expanded(Tensor),
}

impl Batched<'_> {
    pub(crate) fn get(&self) -> &Tensor {
        match self {
            Batched::Same(t) => t,
            Batched::Expanded(t) => t,
        }
    }
}

pub(crate) fn batched<'t>(
    pkg: &Package,
    t: &'t Tensor,
    b: usize,
    what: &str,
) -> Result<Batched<'t>> {
    match t.dim(0) {
        n if n == b => Ok(Batched::Same(t)),
        1 => Ok(Batched::Expanded(pkg.data().expand_batch(t, b)?)),
        n => Err(Error::Input(format!(
            "{what} has batch {n}, rows have batch {b}"
        ))),
    }
}

/// Runs layers `start_layer..L`.
pub fn forward(pkg: &Package, spec: ForwardSpec<'_>) -> Result<ForwardOutput> {
    forward_until(pkg, spec, pkg.manifest.num_layers)
}

/// Runs layers `start_layer..end` (0-based, end exclusive): an early exit reads the output of
/// layer `end - 1`, and no later layer runs.
pub fn forward_until(pkg: &Package, spec: ForwardSpec<'_>, end: usize) -> Result<ForwardOutput> {
    let m = &pkg.manifest;
    if end > m.num_layers {
        return Err(Error::Input(format!(
            "a forward to layer {end} is past the model's {} layers",
            m.num_layers
        )));
    }
    let num_layers = end;
    if spec.start_layer >= num_layers {
        return Err(Error::Input(format!(
            "start layer {} is past the model's {num_layers} layers",
            spec.start_layer
        )));
    }
    let shape = spec.hidden.shape().to_vec();
    if shape.len() != 3 || shape[2] != m.hidden_size || shape[1] == 0 {
        return Err(Error::Input(format!(
            "hidden rows have shape {shape:?}, expected [B, Q>0, {}]",
            m.hidden_size
        )));
    }
    let (b, q) = (shape[0], shape[1]);
    if spec.rotary.len() != q || spec.rotary.sin.shape() != spec.rotary.cos.shape() {
        return Err(Error::Input(format!(
            "rotary tables cover {} rows, the call computes {q}",
            spec.rotary.len()
        )));
    }
    let cos = batched(pkg, &spec.rotary.cos, b, "cos")?;
    let sin = batched(pkg, &spec.rotary.sin, b, "sin")?;
    let empty = match spec.past {
        Some(_) => None,
        None => {
            let z = Array4::<f32>::zeros((b, m.num_kv_heads, 0, m.head_dim));
            Some(pkg.data().upload(z.view().into_dyn(), Upload::Index)?)
        }
    };
    let mut masks = MaskCache::new(spec.masks, spec.masked_rows);
    masks.prepare(pkg, spec.start_layer..num_layers)?;

    let mut hidden_states = Vec::new();
    let mut kv_out = Vec::new();
    let mut attn_out = Vec::new();
    let mut current: Option<Tensor> = None;
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
                    batched(pkg, &kv.key, b, "past key")?,
                    batched(pkg, &kv.value, b, "past value")?,
                )
            }
            None => {
                let e = empty.as_ref().expect("no past");
                (Batched::Same(e), Batched::Same(e))
            }
        };
        let mask = masks.layer(pkg, l)?;
        let with_attn = spec.keep.attn_layers.contains(&l);
        let input = current.as_ref().unwrap_or(spec.hidden);
        let step = run_layer(
            pkg,
            l,
            input,
            cos.get(),
            sin.get(),
            pk.get(),
            pv.get(),
            mask,
            with_attn,
        )?;
        let input = current.replace(step.hidden);
        if spec.keep.hidden {
            hidden_states.push(match input {
                Some(t) => t,
                None => pkg.data().copy(spec.hidden)?,
            });
        }
        if spec.keep.kv {
            kv_out.push(LayerKv {
                key: step.key,
                value: step.value,
            });
        }
        if let Some(a) = step.attn {
            attn_out.push((l, a));
        }
    }
    let final_hidden = current.expect("at least one layer ran");
    if spec.keep.hidden {
        hidden_states.push(pkg.data().copy(&final_hidden)?);
    }
    Ok(ForwardOutput {
        hidden_states,
        kv: kv_out,
        attn: attn_out,
        final_hidden,
    })
}
