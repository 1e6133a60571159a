//! The graphs around the decoder stack: vision, token embeddings, rotary tables, heads. Their
//! outputs stay in the provider's memory, except the logits a caller reads.

use ndarray::{Array3, ArrayView2, ArrayView4, Ix3};

use super::positions::Positions;
use crate::error::{Error, Result};
use crate::package::names::*;
use crate::package::{Package, Projection};
use crate::prompt::VideoSlot;
use crate::runtime::{Tensor, Upload};

/// Runs the vision graph: `pixel_values [F,3,H,W]` -> `video_embeds [F/g*h*w, D]` (on the device),
/// g being the frames per temporal group (1 but for Qwen2.5-VL).
pub fn encode_video(pkg: &Package, pixels: ArrayView4<'_, f32>) -> Result<Tensor> {
    let v = &pkg.manifest.video;
    let f = pixels.shape()[0];
    let pixels = pkg.data().upload(pixels.into_dyn(), Upload::Input)?;
    let emb = single(pkg.vision.run(
        pkg.data(),
        &[(VISION_IN_PIXELS, &pixels)],
        &[VISION_OUT_EMBEDS],
    )?);
    // Families that merge frames into temporal groups (Qwen2.5-VL) give one grid per group.
    let per_group = pkg.manifest.frames_per_group();
    if !f.is_multiple_of(per_group) {
        return Err(Error::Input(format!(
            "{f} frames do not fill temporal groups of {per_group} (model.yaml \
             mrope.temporal_patch_size)"
        )));
    }
    let expected = f / per_group * v.tokens_per_frame() + v.trailing_tokens;
    if emb.shape().len() != 2 {
        return Err(Error::GraphMismatch {
            path: pkg.vision.path().to_path_buf(),
            msg: format!(
                "video embeddings have shape {:?}, expected [N, D]",
                emb.shape()
            ),
        });
    }
    if emb.dim(0) != expected {
        return Err(Error::GraphMismatch {
            path: pkg.vision.path().to_path_buf(),
            msg: format!(
                "{f} frames gave {} video tokens, but the manifest's grid {}x{}{} implies {expected}",
                emb.dim(0),
                v.grid_h,
                v.grid_w,
                match v.trailing_tokens {
                    0 => String::new(),
                    t => format!(" and {t} trailing tokens"),
                }
            ),
        });
    }
    Ok(emb)
}

/// Runs the embedding graph: `input_ids [B,T]` -> `[B,T,D]`.
pub fn embed_tokens(pkg: &Package, ids: ArrayView2<'_, i64>) -> Result<Tensor> {
    let vocab = pkg.manifest.vocab_size as i64;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(Error::Input(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        )));
    }
    let ids = pkg.data().upload_i64(ids.into_dyn(), Upload::Input)?;
    Ok(single(pkg.embed.run(
        pkg.data(),
        &[(EMBED_IN_IDS, &ids)],
        &[EMBED_OUT],
    )?))
}

/// Replaces the placeholder rows of `text [B,T,D]` by the video rows `[N,D]` (the same video
/// for every batch entry), in order: slot i's placeholder takes the next `rows` video rows. One
/// gather on the device, giving `[B,T-slots+N,D]`.
pub fn splice_video(
    pkg: &Package,
    text: &Tensor,
    slots: &[VideoSlot],
    video: &Tensor,
) -> Result<Tensor> {
    let data = pkg.data();
    let (b, t, d) = (text.dim(0), text.dim(1), text.dim(2));
    if let Some(s) = slots.iter().find(|s| s.index >= t) {
        return Err(Error::Input(format!(
            "video placeholder index {} is outside the sequence of {t} tokens",
            s.index
        )));
    }
    if video.shape().len() != 2 || video.dim(1) != d {
        return Err(Error::Input(format!(
            "video embeddings have shape {:?}, the text embeddings width {d}",
            video.shape()
        )));
    }
    let n = video.dim(0);
    let rows: usize = slots.iter().map(|s| s.rows).sum();
    if rows != n {
        return Err(Error::Input(format!(
            "the prompt's video placeholders take {rows} rows, the video has {n}"
        )));
    }
    let mut vid = data.reshape(video, &[1, n, d])?;
    if b > 1 {
        vid = data.expand_batch(&vid, b)?;
    }
    let both = data.concat(text, &vid, 1)?;
    let mut order = Vec::with_capacity(t - slots.len() + n);
    let (mut next_text, mut next_row) = (0, t);
    for s in slots {
        order.extend(next_text..s.index);
        order.extend(next_row..next_row + s.rows);
        next_text = s.index + 1;
        next_row += s.rows;
    }
    order.extend(next_text..t);
    data.gather(&both, 1, &order)
}

/// Rotary tables for a set of positions, `[B,T,R]` each, on the device.
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rotary {
    /// The tables of rows `idx` (along the sequence axis).
    pub fn rows(&self, pkg: &Package, idx: &[usize]) -> Result<Rotary> {
        Ok(Rotary {
            cos: pkg.data().gather(&self.cos, 1, idx)?,
            sin: pkg.data().gather(&self.sin, 1, idx)?,
        })
    }

    /// Uploads host tables `[B,T,R]` (from a file or a reference computation).
    pub fn upload(pkg: &Package, cos: &Array3<f32>, sin: &Array3<f32>) -> Result<Rotary> {
        Ok(Rotary {
            cos: pkg.data().upload(cos.view().into_dyn(), Upload::State)?,
            sin: pkg.data().upload(sin.view().into_dyn(), Upload::State)?,
        })
    }

    /// The tables read back to the host, `(cos, sin)`.
    pub fn to_host(&self, pkg: &Package) -> Result<(Array3<f32>, Array3<f32>)> {
        let three = |t: &Tensor| -> Result<Array3<f32>> {
            pkg.data()
                .download(t)?
                .into_dimensionality::<Ix3>()
                .map_err(|e| Error::Input(e.to_string()))
        };
        Ok((three(&self.cos)?, three(&self.sin)?))
    }

    /// Rows covered.
    pub fn len(&self) -> usize {
        self.cos.dim(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the rope graph for `positions` (batch 1, `[1,T]` or `[3,1,T]` as the family takes); any
/// subset of positions can be asked for, which is what lets dropped-row plans keep original
/// positions.
pub fn rotary(pkg: &Package, positions: &Positions) -> Result<Rotary> {
    let positions = pkg
        .data()
        .upload_i64(positions.input(1).view(), Upload::Input)?;
    let mut out = pkg
        .rope
        .run(
            pkg.data(),
            &[(ROPE_IN_POSITIONS, &positions)],
            &[ROPE_OUT_COS, ROPE_OUT_SIN],
        )?
        .into_iter();
    let (cos, sin) = (out.next().expect("cos"), out.next().expect("sin"));
    if cos.shape().len() != 3 || sin.shape() != cos.shape() {
        return Err(Error::GraphMismatch {
            path: pkg.rope.path().to_path_buf(),
            msg: format!(
                "cos {:?} / sin {:?}, expected [B,T,R] each",
                cos.shape(),
                sin.shape()
            ),
        });
    }
    Ok(Rotary { cos, sin })
}

/// Projects hidden states `[B,N,D]` to logits `[B,N,V]` with the chosen head; the logits are
/// the one thing that comes back to the host.
pub fn project(pkg: &Package, projection: Projection, hidden: &Tensor) -> Result<Array3<f32>> {
    let head = pkg.head(projection);
    let logits = single(head.run(pkg.data(), &[(HEAD_IN_HIDDEN, hidden)], &[HEAD_OUT_LOGITS])?);
    pkg.data()
        .download(&logits)?
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::GraphMismatch {
            path: head.path().to_path_buf(),
            msg: format!("unexpected output rank: {e}"),
        })
}

/// [`project`] of host rows `[B,N,D]` (uploaded as a state).
pub fn project_host(
    pkg: &Package,
    projection: Projection,
    hidden: ndarray::ArrayView3<'_, f32>,
) -> Result<Array3<f32>> {
    let t = pkg.data().upload(hidden.into_dyn(), Upload::State)?;
    project(pkg, projection, &t)
}

fn single(mut out: Vec<Tensor>) -> Tensor {
    out.remove(0)
}
