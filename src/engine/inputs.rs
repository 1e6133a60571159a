//! The graphs around the decoder stack: vision, token embeddings, rotary tables, heads.

use ndarray::{concatenate, s, Array2, Array3, ArrayView2, ArrayView3, ArrayView4, Axis, Ix2, Ix3};

use crate::error::{Error, Result};
use crate::package::names::*;
use crate::package::{Input, Package, Projection};

/// Runs the vision graph: `pixel_values [F,3,H,W]` -> `video_embeds [F*h*w, D]`.
pub fn encode_video(pkg: &Package, pixels: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
    let v = &pkg.manifest.video;
    let f = pixels.shape()[0];
    let out = pkg.vision.run(
        vec![(VISION_IN_PIXELS, Input::F32(pixels.into_dyn()))],
        &[VISION_OUT_EMBEDS],
    )?;
    let emb = into_dim::<Ix2>(out, pkg.vision.path())?;
    let expected = f * v.tokens_per_frame();
    if emb.shape()[0] != expected {
        return Err(Error::GraphMismatch {
            path: pkg.vision.path().to_path_buf(),
            msg: format!(
                "{f} frames gave {} video tokens, but the manifest's grid {}x{} implies {expected}",
                emb.shape()[0],
                v.grid_h,
                v.grid_w
            ),
        });
    }
    Ok(emb)
}

/// Runs the embedding graph: `input_ids [B,T]` -> `[B,T,D]`.
pub fn embed_tokens(pkg: &Package, ids: ArrayView2<'_, i64>) -> Result<Array3<f32>> {
    let vocab = pkg.manifest.vocab_size as i64;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(Error::Input(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        )));
    }
    let out = pkg.embed.run(
        vec![(EMBED_IN_IDS, Input::I64(ids.into_dyn()))],
        &[EMBED_OUT],
    )?;
    into_dim::<Ix3>(out, pkg.embed.path())
}

/// Replaces the single placeholder row `at` of `text [B,T,D]` by the video rows `[N,D]`
/// (the same video for every batch entry), giving `[B,T-1+N,D]`.
pub fn splice_video(
    text: ArrayView3<'_, f32>,
    at: usize,
    video: ArrayView2<'_, f32>,
) -> Result<Array3<f32>> {
    let (b, t, d) = text.dim();
    if at >= t {
        return Err(Error::Input(format!(
            "video placeholder index {at} is outside the sequence of {t} tokens"
        )));
    }
    if video.shape()[1] != d {
        return Err(Error::Input(format!(
            "video embeddings have width {}, the text embeddings {d}",
            video.shape()[1]
        )));
    }
    let n = video.shape()[0];
    let vid = video
        .insert_axis(Axis(0))
        .broadcast((b, n, d))
        .expect("broadcast over batch")
        .to_owned();
    Ok(concatenate(
        Axis(1),
        &[
            text.slice(s![.., ..at, ..]),
            vid.view(),
            text.slice(s![.., at + 1.., ..]),
        ],
    )
    .expect("same batch and width"))
}

/// Rotary tables for a set of positions.
pub struct Rotary {
    pub cos: Array3<f32>,
    pub sin: Array3<f32>,
}

/// Runs the rope graph for `positions [B,T]`; any subset of positions can be asked for, which is
/// what lets dropped-row plans keep original positions.
pub fn rotary(pkg: &Package, positions: ArrayView2<'_, i64>) -> Result<Rotary> {
    let out = pkg.rope.run(
        vec![(ROPE_IN_POSITIONS, Input::I64(positions.into_dyn()))],
        &[ROPE_OUT_COS, ROPE_OUT_SIN],
    )?;
    let mut it = out.into_iter();
    let dim3 = |a: ndarray::ArrayD<f32>| {
        a.into_dimensionality::<Ix3>()
            .map_err(|e| Error::GraphMismatch {
                path: pkg.rope.path().to_path_buf(),
                msg: e.to_string(),
            })
    };
    Ok(Rotary {
        cos: dim3(it.next().expect("cos"))?,
        sin: dim3(it.next().expect("sin"))?,
    })
}

/// Projects hidden states `[B,N,D]` to logits `[B,N,V]` with the chosen head.
pub fn project(
    pkg: &Package,
    projection: Projection,
    hidden: ArrayView3<'_, f32>,
) -> Result<Array3<f32>> {
    let head = pkg.head(projection);
    let out = head.run(
        vec![(HEAD_IN_HIDDEN, Input::F32(hidden.into_dyn()))],
        &[HEAD_OUT_LOGITS],
    )?;
    into_dim::<Ix3>(out, head.path())
}

fn into_dim<D: ndarray::Dimension>(
    mut out: Vec<ndarray::ArrayD<f32>>,
    path: &std::path::Path,
) -> Result<ndarray::Array<f32, D>> {
    out.remove(0)
        .into_dimensionality::<D>()
        .map_err(|e| Error::GraphMismatch {
            path: path.to_path_buf(),
            msg: format!("unexpected output rank: {e}"),
        })
}
