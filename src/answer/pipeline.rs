//! From a sample to its option scores: decoding and tokenizing (CPU work that can run on worker
//! threads), then the engine (vision, embeddings, decoder stack, head).

use ndarray::{Array2, Array4, Axis};

use super::sample::Sample;
use super::scores::{score_options, OptionScores};
use crate::engine::{self, ForwardSpec, Keep, Masks, Rotary};
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::manifest::VideoSpec;
use crate::package::{Package, Projection};
use crate::prompt::{PromptBuilder, PromptLayout};
use crate::runtime::Tensor;
use crate::video::load_video;

/// What the engine needs of a sample, prepared without touching ONNX Runtime.
pub struct SampleInputs {
    pub pixels: Array4<f32>,
    pub frame_indices: Vec<usize>,
    pub layout: PromptLayout,
}

/// Decodes and samples the video and lays out the prompt.
pub fn prepare(
    builder: &PromptBuilder,
    video: &VideoSpec,
    sample: &Sample,
) -> Result<SampleInputs> {
    let options: Vec<&str> = sample.options.iter().map(String::as_str).collect();
    let layout = builder.layout(&sample.question, &options, sample.answer)?;
    let input = load_video(&sample.video, video, sample.window, None)?;
    Ok(SampleInputs {
        pixels: input.pixel_values,
        frame_indices: input.sampled.indices,
        layout,
    })
}

/// The spliced input embeddings `[1,S,D]` and the rotary tables of positions `0..S`.
pub fn embed(pkg: &Package, inputs: &SampleInputs) -> Result<(Tensor, Rotary)> {
    let layout = &inputs.layout;
    let video = engine::encode_video(pkg, inputs.pixels.view())?;
    let ids = Array2::from_shape_vec((1, layout.input_ids.len()), layout.input_ids.clone())
        .expect("one row");
    let text = engine::embed_tokens(pkg, ids.view())?;
    let embeds = engine::splice_video(pkg, &text, layout.placeholder_index, &video)?;
    if embeds.dim(1) != layout.seq_len {
        return Err(Error::Input(format!(
            "the spliced sequence has {} positions but the prompt layout expects {}",
            embeds.dim(1),
            layout.seq_len
        )));
    }
    let positions = Array2::from_shape_fn((1, layout.seq_len), |(_, i)| i as i64);
    let rotary = engine::rotary(pkg, positions.view())?;
    Ok((embeds, rotary))
}

/// Last-position logits `[V]` of a plain causal prefill.
pub fn last_logits(
    pkg: &Package,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<ndarray::Array1<f32>> {
    let s = embeds.dim(1);
    let mask = EdgeMask::full_causal(1, s).additive();
    let masks = Masks::same(&mask);
    let out = engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: embeds,
            rotary,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep::default(),
        },
    )?;
    let logits = engine::project(pkg, Projection::NormHead, &out.last_row(pkg)?)?;
    Ok(logits
        .index_axis_move(Axis(0), 0)
        .index_axis_move(Axis(0), 0))
}

/// Scores the options of a prepared sample.
pub fn answer(pkg: &Package, inputs: &SampleInputs) -> Result<OptionScores> {
    let (embeds, rotary) = embed(pkg, inputs)?;
    let logits = last_logits(pkg, &embeds, &rotary)?;
    let layout = &inputs.layout;
    let labels: Vec<String> =
        pkg.manifest.prompt.option_labels[..layout.option_token_ids.len()].to_vec();
    score_options(
        logits.view(),
        &labels,
        &layout.option_token_ids,
        layout.answer,
    )
}
