//! One decoder layer call in extend form (docs/package.md), on device-resident tensors.

use ndarray::{s, Array4, ArrayView4, Ix4};

use crate::error::{Error, Result};
use crate::mask::{with_zero_sink, MaskedRows};
use crate::package::names::*;
use crate::package::Package;
use crate::runtime::{Tensor, Upload};

/// An additive mask `[B,1,Q,P+Q]` uploaded once, with what the `zero` masked-rows policy adds.
pub struct LayerMask {
    /// The mask as the graph reads it (with the sink column in front when `sink` is set).
    tensor: Tensor,
    /// For `zero`: a zero key/value `[B,Hkv,1,Dh]` put in front of `past`, open exactly for the
    /// rows that have no open key (see [`with_zero_sink`]); `None` when no row is fully blocked.
    sink: Option<Tensor>,
    shape: [usize; 4],
}

impl LayerMask {
    /// Uploads `mask` for the policy `masked_rows`.
    pub fn upload(
        pkg: &Package,
        mask: ArrayView4<'_, f32>,
        masked_rows: MaskedRows,
    ) -> Result<Self> {
        let (b, one, q, k) = mask.dim();
        let data = pkg.data();
        let sunk = match masked_rows {
            MaskedRows::Uniform => None,
            MaskedRows::Zero => with_zero_sink(mask),
        };
        let (tensor, sink) = match sunk {
            Some(sunk) => {
                let m = &pkg.manifest;
                let zero = Array4::<f32>::zeros((b, m.num_kv_heads, 1, m.head_dim));
                (
                    data.upload(sunk.view().into_dyn(), Upload::Mask)?,
                    Some(data.upload(zero.view().into_dyn(), Upload::Mask)?),
                )
            }
            None => (data.upload(mask.into_dyn(), Upload::Mask)?, None),
        };
        Ok(LayerMask {
            tensor,
            sink,
            shape: [b, one, q, k],
        })
    }

    /// [`LayerMask::upload`] of a mask built for this call: no host copy under `uniform`.
    pub fn upload_owned(pkg: &Package, mask: Array4<f32>, masked_rows: MaskedRows) -> Result<Self> {
        match masked_rows {
            MaskedRows::Uniform => {
                let (b, one, q, k) = mask.dim();
                Ok(LayerMask {
                    tensor: pkg.data().upload_owned(mask.into_dyn(), Upload::Mask)?,
                    sink: None,
                    shape: [b, one, q, k],
                })
            }
            MaskedRows::Zero => LayerMask::upload(pkg, mask.view(), masked_rows),
        }
    }

    /// `[B,1,Q,P+Q]` as given (without the sink column).
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
}

pub struct LayerOutput {
    /// `[B,Q,D]`
    pub hidden: Tensor,
    /// Post-rotary `[B,Hkv,Q,Dh]` of the computed rows.
    pub key: Tensor,
    pub value: Tensor,
    /// `[B,H,Q,P+Q]`, only when asked for (read back to the host: maps are analysed there).
    pub attn: Option<Array4<f32>>,
}

/// Runs layer `l` over the computed rows `hidden [B,Q,D]`, with rotary tables `cos`/`sin`
/// `[B,Q,R]`, reading `past` K/V `[B,Hkv,P,Dh]` and an uploaded mask `[B,1,Q,P+Q]`.
#[allow(clippy::too_many_arguments)]
pub fn run_layer(
    pkg: &Package,
    l: usize,
    hidden: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    past_key: &Tensor,
    past_value: &Tensor,
    mask: &LayerMask,
    with_attn: bool,
) -> Result<LayerOutput> {
    let (b, q) = (hidden.dim(0), hidden.dim(1));
    let p = past_key.dim(2);
    if mask.shape != [b, 1, q, p + q] {
        return Err(Error::Input(format!(
            "layer {l}: mask has shape {:?}, expected [{b}, 1, {q}, {}] (batch, 1, rows, past + rows)",
            mask.shape,
            p + q
        )));
    }
    if past_key.dim(0) != b || past_value.shape() != past_key.shape() {
        return Err(Error::Input(format!(
            "layer {l}: past key {:?} / value {:?} do not match batch {b}",
            past_key.shape(),
            past_value.shape()
        )));
    }
    if cos.dim(0) != b || cos.dim(1) != q || sin.shape() != cos.shape() {
        return Err(Error::Input(format!(
            "layer {l}: rotary tables {:?} do not match rows [{b}, {q}]",
            cos.shape()
        )));
    }
    let data = pkg.data();
    let sunk = match &mask.sink {
        Some(zero) => Some((
            data.concat(zero, past_key, 2)?,
            data.concat(zero, past_value, 2)?,
        )),
        None => None,
    };
    let (past_key, past_value) = match &sunk {
        Some((k, v)) => (k, v),
        None => (past_key, past_value),
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
        data,
        &[
            (LAYER_IN_HIDDEN, hidden),
            (LAYER_IN_COS, cos),
            (LAYER_IN_SIN, sin),
            (LAYER_IN_PAST_KEY, past_key),
            (LAYER_IN_PAST_VALUE, past_value),
            (LAYER_IN_MASK, &mask.tensor),
        ],
        &outputs,
    )?;
    let mut it = out.into_iter();
    let (hidden, key, value) = (
        it.next().expect("hidden"),
        it.next().expect("key"),
        it.next().expect("value"),
    );
    let attn = match it.next() {
        Some(a) => {
            let a = data
                .download(&a)?
                .into_dimensionality::<Ix4>()
                .map_err(|e| Error::GraphMismatch {
                    path: graph.path().to_path_buf(),
                    msg: e.to_string(),
                })?;
            // The sink column is ours, not a position of the sequence.
            Some(match mask.sink {
                Some(_) => a.slice(s![.., .., .., 1..]).to_owned(),
                None => a,
            })
        }
        None => None,
    };
    Ok(LayerOutput {
        hidden,
        key,
        value,
        attn,
    })
}
