//! Checks a package's graphs against its manifest before anything runs, so that an export bug
//! shows up as "layer_03.onnx: input `mask` has rank 3, expected 4" rather than a shape error deep
//! inside ONNX Runtime; and checks that the tokenizer and the prompt template work together (the
//! deep check, [`prompt`]), so that a package that cannot answer is refused when it is opened.

use std::path::Path;

use ort::value::TensorElementType;

use super::graph::{Graph, Port};
use super::manifest::Family;
use super::names::*;
use super::Manifest;
use crate::error::{Error, Result};
use crate::prompt::{load_tokenizer, PromptBuilder, MAX_OPTIONS, MIN_OPTIONS};

/// One expected dimension.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    /// A dynamic axis: the graph must leave it open (-1).
    Dynamic(&'static str),
    /// A size fixed by the manifest.
    Fixed(&'static str, usize),
}

/// Expected signature of one input or output.
pub struct Spec {
    pub name: &'static str,
    pub dtype: TensorElementType,
    pub dims: Vec<Dim>,
}

fn spec(name: &'static str, dtype: TensorElementType, dims: Vec<Dim>) -> Spec {
    Spec { name, dtype, dims }
}

use Dim::{Dynamic as Dy, Fixed as Fx};
const F32: TensorElementType = TensorElementType::Float32;
const I64: TensorElementType = TensorElementType::Int64;

pub fn vision(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    let v = &m.video;
    // A vision graph may be traced at the manifest's frame count (Qwen2.5-VL's window partitions,
    // PLLaVA's temporal pooling are constants): its frame and token axes are then fixed, and must
    // be the manifest's; otherwise they are dynamic.
    (
        vec![spec(
            VISION_IN_PIXELS,
            F32,
            vec![
                Fx(
                    "decoded frames (video.num_frames x frames per group)",
                    v.input_frames(),
                ),
                Fx("channels", 3),
                Fx("video.frame_height", v.frame_height),
                Fx("video.frame_width", v.frame_width),
            ],
        )],
        vec![spec(
            VISION_OUT_EMBEDS,
            F32,
            vec![
                Fx("video tokens", v.num_video_tokens()),
                Fx("hidden_size", m.hidden_size),
            ],
        )],
    )
}

pub fn embed(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    (
        vec![spec(EMBED_IN_IDS, I64, vec![Dy("B"), Dy("T")])],
        vec![spec(
            EMBED_OUT,
            F32,
            vec![Dy("B"), Dy("T"), Fx("hidden_size", m.hidden_size)],
        )],
    )
}

pub fn rope(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    let table = |n| spec(n, F32, vec![Dy("B"), Dy("T"), Fx("rope_dim", m.rope_dim)]);
    // The family says what position ids look like (engine::positions).
    let positions = match m.family {
        Family::Llama => vec![Dy("B"), Dy("T")],
        Family::Qwen25Vl => vec![Fx("M-RoPE axes", 3), Dy("B"), Dy("T")],
    };
    (
        vec![spec(ROPE_IN_POSITIONS, I64, positions)],
        vec![table(ROPE_OUT_COS), table(ROPE_OUT_SIN)],
    )
}

pub fn layer(m: &Manifest, with_attn: bool) -> (Vec<Spec>, Vec<Spec>) {
    let d = Fx("hidden_size", m.hidden_size);
    let kv = |n| {
        spec(
            n,
            F32,
            vec![
                Dy("B"),
                Fx("num_kv_heads", m.num_kv_heads),
                Dy("P"),
                Fx("head_dim", m.head_dim),
            ],
        )
    };
    let kv_out = |n| {
        spec(
            n,
            F32,
            vec![
                Dy("B"),
                Fx("num_kv_heads", m.num_kv_heads),
                Dy("Q"),
                Fx("head_dim", m.head_dim),
            ],
        )
    };
    let table = |n| spec(n, F32, vec![Dy("B"), Dy("Q"), Fx("rope_dim", m.rope_dim)]);
    let inputs = vec![
        spec(LAYER_IN_HIDDEN, F32, vec![Dy("B"), Dy("Q"), d]),
        table(LAYER_IN_COS),
        table(LAYER_IN_SIN),
        kv(LAYER_IN_PAST_KEY),
        kv(LAYER_IN_PAST_VALUE),
        spec(
            LAYER_IN_MASK,
            F32,
            vec![Dy("B"), Fx("mask heads", 1), Dy("Q"), Dy("P+Q")],
        ),
    ];
    let mut outputs = vec![
        spec(LAYER_OUT_HIDDEN, F32, vec![Dy("B"), Dy("Q"), d]),
        kv_out(LAYER_OUT_KEY),
        kv_out(LAYER_OUT_VALUE),
    ];
    if with_attn {
        outputs.push(spec(
            LAYER_OUT_ATTN,
            F32,
            vec![Dy("B"), Fx("num_heads", m.num_heads), Dy("Q"), Dy("P+Q")],
        ));
    }
    (inputs, outputs)
}

pub fn head(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    (
        vec![spec(
            HEAD_IN_HIDDEN,
            F32,
            vec![Dy("B"), Dy("N"), Fx("hidden_size", m.hidden_size)],
        )],
        vec![spec(
            HEAD_OUT_LOGITS,
            F32,
            vec![Dy("B"), Dy("N"), Fx("vocab_size", m.vocab_size)],
        )],
    )
}

/// Compares a graph's declared ports with the expected ones; the error names the file, the port
/// and the first difference.
pub fn check(graph: &Graph, expected: (Vec<Spec>, Vec<Spec>)) -> Result<()> {
    let (ins, outs) = expected;
    check_ports(graph, "input", graph.inputs(), &ins)?;
    check_ports(graph, "output", graph.outputs(), &outs)
}

fn check_ports(graph: &Graph, kind: &str, actual: &[Port], expected: &[Spec]) -> Result<()> {
    let fail = |msg: String| Error::GraphMismatch {
        path: graph.path().to_path_buf(),
        msg,
    };
    for want in expected {
        let Some(got) = actual.iter().find(|p| p.name == want.name) else {
            let names: Vec<&str> = actual.iter().map(|p| p.name.as_str()).collect();
            return Err(fail(format!(
                "missing {kind} `{}` (the graph has {kind}s {names:?})",
                want.name
            )));
        };
        if got.dtype != Some(want.dtype) {
            return Err(fail(format!(
                "{kind} `{}` has element type {:?}, expected {:?}",
                want.name, got.dtype, want.dtype
            )));
        }
        if got.shape.len() != want.dims.len() {
            return Err(fail(format!(
                "{kind} `{}` has rank {} (shape {:?}), expected rank {}",
                want.name,
                got.shape.len(),
                got.shape,
                want.dims.len()
            )));
        }
        for (axis, (&g, w)) in got.shape.iter().zip(&want.dims).enumerate() {
            match *w {
                Dim::Fixed(what, n) if g >= 0 && g != n as i64 => {
                    return Err(fail(format!(
                        "{kind} `{}` axis {axis} is {g}, but the manifest's {what} is {n}",
                        want.name
                    )))
                }
                Dim::Dynamic(what) if g >= 0 => {
                    return Err(fail(format!(
                        "{kind} `{}` axis {axis} ({what}) is fixed at {g}; it must be dynamic",
                        want.name
                    )))
                }
                _ => {}
            }
        }
    }
    if let Some(extra) = actual
        .iter()
        .find(|p| !expected.iter().any(|s| s.name == p.name))
    {
        return Err(fail(format!(
            "unexpected {kind} `{}`; expected only {:?}",
            extra.name,
            expected.iter().map(|s| s.name).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The question and options of the sample prompts the deep check renders.
const SAMPLE_QUESTION: &str = "What happens in the video?";
const SAMPLE_OPTIONS: [&str; MAX_OPTIONS] = [
    "the man opens the door",
    "the woman closes the box",
    "the dog runs to the left",
    "the cat jumps up",
    "nothing happens",
    "the car turns right",
    "the ball falls down",
    "the robot waves",
];
const MINIMAL_QUESTION: &str = "Why?";
const MINIMAL_OPTIONS: [&str; MIN_OPTIONS] = ["yes", "no"];

/// What the deep check at open verified (`vidflow info` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptCheck {
    /// Entries of `tokenizer.json`, added tokens included (at most `vocab_size`).
    pub tokenizer_size: usize,
    /// Per entry of `prompt.option_labels`, the one token id that answers it.
    pub option_token_ids: Vec<i64>,
    /// Positions of the sample prompt: a question with one option per label, and the video.
    pub sample_seq_len: usize,
    /// Positions of the shortest prompt (a one-word question, 2 one-word options) and the video.
    pub minimal_seq_len: usize,
}

impl PromptCheck {
    /// What was verified, in a few lines for `vidflow info`.
    pub fn summary(&self, m: &Manifest) -> Vec<String> {
        vec![
            format!(
                "{} loads: {} tokens, within vocab_size {}",
                m.tokenizer, self.tokenizer_size, m.vocab_size
            ),
            format!(
                "the prompt renders and tokenizes: {:?} is video_token_id {}, {}; labels {} are \
                 {} distinct single tokens after {:?} (ids {:?})",
                m.prompt.video_placeholder,
                m.special_tokens.video_token_id,
                if m.prompt.per_frame() {
                    "once per frame"
                } else {
                    "once"
                },
                m.prompt.option_labels.join(""),
                self.option_token_ids.len(),
                m.prompt.answer_prefix,
                self.option_token_ids
            ),
            format!(
                "the shortest prompt takes {} of max_positions {}; special token ids < vocab_size; \
                 video sizes > 0, rescale_factor and image_std finite and > 0, image_mean finite",
                self.minimal_seq_len, m.max_positions
            ),
        ]
    }
}

/// The deep check: the tokenizer loads and fits the vocabulary, and the prompt template renders
/// and tokenizes as the runtime will use it: through [`PromptBuilder::layout`], which finds the
/// video placeholder as the one `video_token_id` and the token that answers each option label.
/// Each label must be exactly that one token, and the shortest prompt must fit `max_positions`.
/// Returns the builder (the tokenizer loaded once) and what was verified.
pub fn prompt(
    m: &Manifest,
    manifest_path: &Path,
    tokenizer_path: &Path,
) -> Result<(PromptBuilder, PromptCheck)> {
    let tokenizer = load_tokenizer(tokenizer_path)?;
    let tokenizer_size = tokenizer.get_vocab_size(true);
    if tokenizer_size > m.vocab_size {
        return Err(Error::Tokenizer {
            path: tokenizer_path.to_path_buf(),
            msg: format!(
                "has {tokenizer_size} tokens, but the manifest's vocab_size is {}; every token id \
                 must be a row of the embedding",
                m.vocab_size
            ),
        });
    }
    let builder = PromptBuilder::with_tokenizer(
        &m.prompt,
        &m.special_tokens,
        &m.video,
        tokenizer,
        tokenizer_path,
    )?;
    let bad = |msg: String| Error::Manifest {
        path: manifest_path.to_path_buf(),
        msg,
    };
    let n = m.prompt.option_labels.len().min(MAX_OPTIONS);
    let sample = builder
        .layout(SAMPLE_QUESTION, &SAMPLE_OPTIONS[..n], None)
        .map_err(|e| {
            bad(format!(
                "the prompt template does not tokenize (sample question with {n} options): {e}"
            ))
        })?;
    for (j, (label, &id)) in m
        .prompt
        .option_labels
        .iter()
        .zip(&sample.option_token_ids)
        .enumerate()
    {
        let text = builder
            .tokenizer()
            .decode(&[id as u32], false)
            .map_err(|e| Error::Tokenizer {
                path: tokenizer_path.to_path_buf(),
                msg: format!("cannot decode token id {id}: {e}"),
            })?;
        if text.trim() != label.as_str() {
            return Err(bad(format!(
                "prompt.option_labels[{j}] {label:?} is not one token after the answer prefix \
                 {:?}: the token that would answer it is id {id}, {text:?}; every label must \
                 encode to exactly one token there",
                m.prompt.answer_prefix
            )));
        }
    }
    let minimal = builder
        .layout(MINIMAL_QUESTION, &MINIMAL_OPTIONS, None)
        .map_err(|e| {
            bad(format!(
                "the prompt template does not tokenize (minimal question with 2 options): {e}"
            ))
        })?;
    if minimal.seq_len > m.max_positions {
        return Err(bad(format!(
            "max_positions is {}, but the shortest prompt (a one-word question, 2 one-word \
             options and {} video tokens) is already {} positions; no question would fit",
            m.max_positions,
            m.video.num_video_tokens(),
            minimal.seq_len
        )));
    }
    let check = PromptCheck {
        tokenizer_size,
        option_token_ids: sample.option_token_ids,
        sample_seq_len: sample.seq_len,
        minimal_seq_len: minimal.seq_len,
    };
    // Kept for the package with the limit `PromptBuilder::new` sets (the checks above ran without
    // it, so that a too small max_positions is reported as such).
    Ok((builder.with_max_positions(m.max_positions), check))
}
