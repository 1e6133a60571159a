//! From a sample to its option scores: decoding and tokenizing (CPU work that can run on worker
//! threads), then the engine (vision, embeddings, decoder stack, head).

use std::sync::Arc;

use ndarray::{Array1, Array2, Array4, Axis};

use super::sample::Sample;
use super::scores::{score_options, OptionScores};
use crate::engine::{
    self, ForwardSpec, Keep, Masks, Positions, Prefix, PrefixInputs, PrefixMasks, Rotary,
};
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::manifest::VideoSpec;
use crate::package::{Package, Projection};
use crate::prompt::{PromptBuilder, PromptLayout};
use crate::runtime::Tensor;
use crate::video::{load_video, VideoInput};

/// What the engine needs of a sample, prepared without touching ONNX Runtime.
pub struct SampleInputs {
    pub pixels: Array4<f32>,
    pub frame_indices: Vec<usize>,
    /// Seconds between sampled frames when the video's frame rate is known: M-RoPE families
    /// space their time positions by it (engine::positions); others ignore it.
    pub seconds_per_frame: Option<f64>,
    pub layout: PromptLayout,
}

impl SampleInputs {
    /// A decoded video and its prompt. `layout` was laid out before decoding (so that its errors
    /// come first); a prompt that shows frame times is laid out again by `at_times` with the
    /// sampled frames' times.
    pub fn new<E>(
        input: VideoInput,
        video: &VideoSpec,
        layout: PromptLayout,
        at_times: impl FnOnce(&[f64]) -> std::result::Result<PromptLayout, E>,
    ) -> std::result::Result<SampleInputs, E> {
        let times = input.sampled.frame_times(video.frames_per_group);
        let layout = if layout.frame_times.is_empty() || layout.frame_times == times {
            layout
        } else {
            at_times(&times)?
        };
        Ok(SampleInputs {
            pixels: input.pixel_values,
            seconds_per_frame: input.sampled.seconds_per_frame(),
            frame_indices: input.sampled.indices,
            layout,
        })
    }
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
    SampleInputs::new(input, video, layout, |times| {
        builder.layout_at(&sample.question, &options, sample.answer, times)
    })
}

/// The spliced input embeddings `[1,S,D]` and the rotary tables of positions `0..S`.
pub fn embed(pkg: &Package, inputs: &SampleInputs) -> Result<(Tensor, Rotary)> {
    let layout = &inputs.layout;
    let video = engine::encode_video(pkg, inputs.pixels.view())?;
    let ids = Array2::from_shape_vec((1, layout.input_ids.len()), layout.input_ids.clone())
        .expect("one row");
    let text = engine::embed_tokens(pkg, ids.view())?;
    let embeds = engine::splice_video(pkg, &text, &layout.slots, &video)?;
    if embeds.dim(1) != layout.seq_len {
        return Err(Error::Input(format!(
            "the spliced sequence has {} positions but the prompt layout expects {}",
            embeds.dim(1),
            layout.seq_len
        )));
    }
    let positions = Positions::of_sample(&pkg.manifest, inputs)?;
    let rotary = engine::rotary(pkg, &positions)?;
    Ok((embeds, rotary))
}

/// The prefix of a sample: its pixels and the prompt's tokens before the question (system
/// text, the video, template text between them). `None` when the prompt has no question group
/// after the video.
pub fn prefix_inputs(inputs: &SampleInputs) -> Option<PrefixInputs<'_>> {
    let layout = &inputs.layout;
    let n = layout.num_video_tokens();
    let p = *layout.groups.question.first()?;
    if p < layout.video_range().end || p >= layout.seq_len {
        return None;
    }
    let ids = p + layout.slots.len() - n;
    Some(PrefixInputs {
        pixels: inputs.pixels.view(),
        ids: &layout.input_ids[..ids],
        slots: &layout.slots,
        len: p,
        seconds_per_frame: inputs.seconds_per_frame,
    })
}

/// A sample split at its prefix: the prefix (shared with every question about the same video and
/// frames) and the embeddings and rotary tables of the rows after it.
pub struct Split {
    pub prefix: Arc<Prefix>,
    /// `[1,S-P,D]`.
    pub embeds: Tensor,
    /// Positions `P..S`.
    pub rotary: Rotary,
}

/// Splits `inputs` at its prefix, computed through `layers` layers under `masks` or taken from
/// the package's cache. `None` when reuse is off or does not apply (see [`engine::PrefixCache`]).
pub fn split(
    pkg: &Package,
    inputs: &SampleInputs,
    masks: PrefixMasks<'_>,
    layers: usize,
    keep_hidden: bool,
) -> Result<Option<Split>> {
    let Some(pi) = prefix_inputs(inputs) else {
        return Ok(None);
    };
    let Some(prefix) = pkg.prefixes().get(pkg, &pi, masks, layers, keep_hidden)? else {
        return Ok(None);
    };
    let layout = &inputs.layout;
    let rest = &layout.input_ids[pi.ids.len()..];
    let ids = Array2::from_shape_vec((1, rest.len()), rest.to_vec()).expect("one row");
    let embeds = engine::embed_tokens(pkg, ids.view())?;
    let positions = Positions::of_sample(&pkg.manifest, inputs)?.range(pi.len..layout.seq_len);
    let rotary = engine::rotary(pkg, &positions)?;
    Ok(Some(Split {
        prefix,
        embeds,
        rotary,
    }))
}

/// Last-position logits `[V]` of the plain causal model read after `layers` layers (all of them
/// unless the answer exits early), reusing the sample's video prefix when the cache holds it.
pub fn causal_logits(pkg: &Package, inputs: &SampleInputs, layers: usize) -> Result<Array1<f32>> {
    let Some(sp) = split(pkg, inputs, PrefixMasks::Causal, layers, false)? else {
        let (embeds, rotary) = embed(pkg, inputs)?;
        return last_logits_until(pkg, &embeds, &rotary, layers);
    };
    let mask = engine::causal_after(sp.prefix.len, sp.embeds.dim(1));
    let masks = Masks::same(&mask);
    let out = engine::forward_until(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &sp.embeds,
            rotary: &sp.rotary,
            past: Some(&sp.prefix.kv),
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep::default(),
        },
        layers,
    )?;
    row_logits(pkg, &out)
}

fn row_logits(pkg: &Package, out: &engine::ForwardOutput) -> Result<Array1<f32>> {
    let logits = engine::project(pkg, Projection::NormHead, &out.last_row(pkg)?)?;
    Ok(logits
        .index_axis_move(Axis(0), 0)
        .index_axis_move(Axis(0), 0))
}

/// Last-position logits `[V]` of a plain causal prefill.
pub fn last_logits(pkg: &Package, embeds: &Tensor, rotary: &Rotary) -> Result<Array1<f32>> {
    last_logits_until(pkg, embeds, rotary, pkg.num_layers())
}

/// [`last_logits`] read after `layers` layers.
pub fn last_logits_until(
    pkg: &Package,
    embeds: &Tensor,
    rotary: &Rotary,
    layers: usize,
) -> Result<Array1<f32>> {
    let s = embeds.dim(1);
    let mask = EdgeMask::full_causal(1, s).additive();
    let masks = Masks::same(&mask);
    let out = engine::forward_until(
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
        layers,
    )?;
    row_logits(pkg, &out)
}

/// Scores a sample's options from its last-position logits.
pub fn scores_from(
    pkg: &Package,
    layout: &PromptLayout,
    logits: ndarray::ArrayView1<'_, f32>,
) -> Result<OptionScores> {
    let labels: Vec<String> =
        pkg.manifest.prompt.option_labels[..layout.option_token_ids.len()].to_vec();
    score_options(logits, &labels, &layout.option_token_ids, layout.answer)
}

/// Scores the options of a prepared sample (the plain causal model, all layers).
pub fn answer(pkg: &Package, inputs: &SampleInputs) -> Result<OptionScores> {
    let logits = causal_logits(pkg, inputs, pkg.num_layers())?;
    scores_from(pkg, &inputs.layout, logits.view())
}
