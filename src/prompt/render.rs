//! Renders the manifest's multiple-choice prompt and records where each part landed.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::package::manifest::PromptSpec;

/// Fewest and most answer options a prompt may have.
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 8;

/// One rendered option: `option_format` with `{label}` and `{text}` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSpan {
    pub label: String,
    /// Byte range of the whole formatted option, e.g. `(A) open the door`.
    pub full: Range<usize>,
    /// Byte range of the option's own text, e.g. `open the door`.
    pub text: Range<usize>,
}

/// The prompt text and the byte ranges (into `text`) of the parts that become token groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub text: String,
    /// The video placeholders (replaced by the video tokens after tokenization): one, or one per
    /// frame when the spec writes text between frames ([`PromptSpec::per_frame`]).
    pub placeholders: Vec<Range<usize>>,
    /// The whole video: the placeholders and any per-frame text between them.
    pub video: Range<usize>,
    /// `question_prefix` through the end of the last option: the `question` group's text.
    pub question_block: Range<usize>,
    /// The question itself, without prefix or options: the `question.text` group's text.
    pub question_text: Range<usize>,
    pub options: Vec<OptionSpan>,
}

impl RenderedPrompt {
    pub fn slice(&self, r: &Range<usize>) -> &str {
        &self.text[r.clone()]
    }
}

/// Renders `spec` for `question` and `options` (2 to 8, at most one per label) as the
/// concatenation documented on [`PromptSpec`]:
/// `system, user_prefix, <video>, after_video, question_prefix, question,
/// options_header, options joined by option_separator, instruction, assistant_prefix,
/// answer_prefix`. The question and option texts are inserted verbatim (no trimming), so their byte
/// ranges are exact; empty or blank texts are errors because their spans could not be marked.
/// `frame_times` (seconds, one per frame) fill `{t}` in a per-frame video.
pub fn render(
    spec: &PromptSpec,
    question: &str,
    options: &[&str],
    frame_times: &[f64],
) -> Result<RenderedPrompt> {
    let n = options.len();
    if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&n) {
        return Err(Error::Prompt(format!(
            "{n} answer options given, expected {MIN_OPTIONS} to {MAX_OPTIONS}"
        )));
    }
    if n > spec.option_labels.len() {
        return Err(Error::Prompt(format!(
            "{n} answer options given but the manifest's prompt.option_labels has only {} labels \
             ({})",
            spec.option_labels.len(),
            spec.option_labels.join(", ")
        )));
    }
    check_video_and_question(spec, question)?;
    for (j, opt) in options.iter().enumerate() {
        if opt.trim().is_empty() {
            return Err(Error::Prompt(format!(
                "option {} text {opt:?} is empty; there is no option span to mark",
                spec.option_labels[j]
            )));
        }
    }
    let format = OptionFormat::parse(&spec.option_format)?;

    let mut text = String::new();
    text.push_str(&spec.system);
    text.push_str(&spec.user_prefix);
    let (video, placeholders) = push_video(&mut text, spec, frame_times);
    text.push_str(&spec.after_video);
    let block_start = text.len();
    text.push_str(&spec.question_prefix);
    let question_text = push(&mut text, question);
    text.push_str(&spec.options_header);
    let mut spans = Vec::with_capacity(n);
    for (j, opt) in options.iter().enumerate() {
        if j > 0 {
            text.push_str(&spec.option_separator);
        }
        let label = &spec.option_labels[j];
        let start = text.len();
        let mut text_range = 0..0;
        for piece in &format.pieces {
            match piece {
                Piece::Literal(s) => text.push_str(s),
                Piece::Label => text.push_str(label),
                Piece::Text => text_range = push(&mut text, opt),
            }
        }
        spans.push(OptionSpan {
            label: label.clone(),
            full: start..text.len(),
            text: text_range,
        });
    }
    let question_block = block_start..text.len();
    text.push_str(&spec.instruction);
    text.push_str(&spec.assistant_prefix);
    text.push_str(&spec.answer_prefix);
    Ok(RenderedPrompt {
        text,
        placeholders,
        video,
        question_block,
        question_text,
        options: spans,
    })
}

/// Renders the open-ended prompt for `question` (no options): `system, user_prefix,
/// <video>, after_video, question, assistant_prefix`. The multiple-choice parts
/// (`question_prefix`, options, `instruction`, `answer_prefix`) are left out, so the model answers
/// in its own words after the assistant prefix; the question block is the question alone.
pub fn render_open(
    spec: &PromptSpec,
    question: &str,
    frame_times: &[f64],
) -> Result<RenderedPrompt> {
    check_video_and_question(spec, question)?;
    let mut text = String::new();
    text.push_str(&spec.system);
    text.push_str(&spec.user_prefix);
    let (video, placeholders) = push_video(&mut text, spec, frame_times);
    text.push_str(&spec.after_video);
    let question_text = push(&mut text, question);
    text.push_str(&spec.assistant_prefix);
    Ok(RenderedPrompt {
        text,
        placeholders,
        video,
        question_block: question_text.clone(),
        question_text,
        options: Vec::new(),
    })
}

/// What every prompt needs: a video placeholder, and a question whose span can be marked.
fn check_video_and_question(spec: &PromptSpec, question: &str) -> Result<()> {
    if spec.video_placeholder.is_empty() {
        return Err(Error::Prompt(
            "prompt.video_placeholder is empty; it must be the text of the video token".into(),
        ));
    }
    if question.trim().is_empty() {
        return Err(Error::Prompt(format!(
            "the question text {question:?} is empty; there is no question span to mark"
        )));
    }
    Ok(())
}

/// The video: one placeholder, or per frame `frame_prefix + placeholder + frame_suffix`
/// joined by `frame_separator`. Returns the whole video's range and each placeholder's.
fn push_video(
    text: &mut String,
    spec: &PromptSpec,
    frame_times: &[f64],
) -> (Range<usize>, Vec<Range<usize>>) {
    let start = text.len();
    if !spec.per_frame() {
        let ph = push(text, &spec.video_placeholder);
        return (ph.clone(), vec![ph]);
    }
    let mut placeholders = Vec::with_capacity(frame_times.len());
    for (i, &t) in frame_times.iter().enumerate() {
        if i > 0 {
            text.push_str(&spec.frame_separator);
        }
        text.push_str(&frame_text(&spec.frame_prefix, i, t));
        placeholders.push(push(text, &spec.video_placeholder));
        text.push_str(&frame_text(&spec.frame_suffix, i, t));
    }
    (start..text.len(), placeholders)
}

/// `{i}` -> the frame number from 1, `{t}` -> its time in seconds with one decimal (as Python's
/// `f"{t:.1f}"`: both round the exact binary value, ties to even).
pub fn frame_text(template: &str, index: usize, seconds: f64) -> String {
    template
        .replace("{i}", &(index + 1).to_string())
        .replace("{t}", &format!("{seconds:.1}"))
}

fn push(text: &mut String, part: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(part);
    start..text.len()
}

enum Piece {
    Literal(String),
    Label,
    Text,
}

/// `option_format` split at `{label}` and `{text}`; other braces are literal text.
struct OptionFormat {
    pieces: Vec<Piece>,
}

impl OptionFormat {
    fn parse(format: &str) -> Result<OptionFormat> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        let mut texts = 0;
        while !rest.is_empty() {
            let (piece, len) = if rest.starts_with("{label}") {
                (Some(Piece::Label), "{label}".len())
            } else if rest.starts_with("{text}") {
                texts += 1;
                (Some(Piece::Text), "{text}".len())
            } else {
                let c = rest.chars().next().expect("rest is not empty");
                literal.push(c);
                (None, c.len_utf8())
            };
            if let Some(p) = piece {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(p);
            }
            rest = &rest[len..];
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if texts != 1 {
            return Err(Error::Prompt(format!(
                "prompt.option_format {format:?} contains {{text}} {texts} times, expected exactly \
                 once"
            )));
        }
        Ok(OptionFormat { pieces })
    }
}
