//! The multiple-choice prompt: rendering, tokenization, and the token groups of the spliced
//! sequence (design.md §2).
//!
//! The model sees the prompt with its video placeholder token (one, or one per frame) replaced by
//! the `F·h·w` video embeddings. Every analysis speaks about positions of that *spliced* sequence,
//! so the layout computed here maps each position to its groups:
//!
//! | group | positions |
//! |---|---|
//! | `system` | everything before the video (bos, system text, user prefix) |
//! | `video`, `frame[i]` | the `F·h·w` video positions; frame i holds `h·w` consecutive ones; a prompt that writes text between frames (`prompt.frame_*`) has that text in `video` too |
//! | `video.sep` | the positions of `video` in no frame: trailing embeddings, text between frames |
//! | `question` | `question_prefix`, the question, `options_header` and all options (labels included) |
//! | `question.text` | the question's own text |
//! | `option[j]` | option j as rendered, label included: `(A) red car` |
//! | `option.true`, `option.false` | `option[answer]`, and the union of the other options |
//! | `template` | the rest after the video: `after_video`, instruction, assistant and answer prefixes |
//! | `last` | the final position, where the answer is read |
//!
//! `system`, `video`, `question`, `template` and `last` partition `0..S`; `frame[i]` partition
//! `video`; `question.text` and the `option[j]` are disjoint subsets of `question`. `last` is
//! exclusive: the final position is removed from whichever group its text belongs to.
//!
//! Option spans include their label, as the published reference marks them: it locates the true
//! option as `"(A) text"` and each false option as its rendered line. Only the option separators
//! and the options header belong to `question` alone.
//!
//! Groups come from the tokenizer's byte offsets into the rendered string, never from tokenizing
//! pieces separately (tokenization is not compositional); the offsets are each token's full
//! extent, spaces included (byte-level tokenizers' trimming of them is turned off, so that a token
//! made only of spaces keeps its place). Boundary rule: a token belongs to a span
//! when its characters overlap the span. A token that straddles a content span (question text or an
//! option text) and surrounding prompt text goes to the content span; one that straddles two
//! content spans goes to the one it shares more bytes with (the earlier one on a tie). A content
//! span left without any token is an error naming its text.

mod render;

use std::ops::Range;
use std::path::{Path, PathBuf};

use tokenizers::processors::PostProcessorWrapper;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::package::manifest::{Manifest, PromptSpec, SpecialTokens, VideoSpec};

pub use render::{
    frame_text, render, render_open, OptionSpan, RenderedPrompt, MAX_OPTIONS, MIN_OPTIONS,
};

/// Token groups as sorted index sets over spliced positions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenGroups {
    pub system: Vec<usize>,
    pub video: Vec<usize>,
    pub frames: Vec<Vec<usize>>,
    pub question: Vec<usize>,
    pub question_text: Vec<usize>,
    pub options: Vec<Vec<usize>>,
    /// Empty when no answer index was given.
    pub option_true: Vec<usize>,
    /// Empty when no answer index was given.
    pub option_false: Vec<usize>,
    pub template: Vec<usize>,
    pub last: Vec<usize>,
    /// The video's positions of no frame: embeddings after the last frame
    /// (`video.trailing_tokens`) and text written between frames (`prompt.frame_*`).
    pub video_sep: Vec<usize>,
}

/// A video placeholder of the prompt's token ids and the video rows that replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSlot {
    /// Index in `input_ids`.
    pub index: usize,
    pub rows: usize,
}

impl VideoSlot {
    /// The slots of token ids that already hold the placeholders (a golden's `input_ids`): every
    /// `video_token_id`, one for the whole video or one per frame.
    pub fn in_ids(ids: &[i64], m: &Manifest) -> Result<Vec<VideoSlot>> {
        let video_id = m.special_tokens.video_token_id;
        let at: Vec<usize> = (0..ids.len()).filter(|&k| ids[k] == video_id).collect();
        if at.is_empty() {
            return Err(Error::Input(format!(
                "the token ids hold no video placeholder (id {video_id})"
            )));
        }
        let v = &m.video;
        VideoSlot::of_placeholders(&at, v.num_frames, v.tokens_per_frame(), v.trailing_tokens)
    }

    /// The rows each placeholder (indices `at` into the token ids) takes: one placeholder takes
    /// the whole video, `num_frames` placeholders a frame each, the trailing rows after the last.
    pub fn of_placeholders(
        at: &[usize],
        num_frames: usize,
        tokens_per_frame: usize,
        trailing: usize,
    ) -> Result<Vec<VideoSlot>> {
        let n = at.len();
        if n != 1 && n != num_frames {
            return Err(Error::Prompt(format!(
                "{n} video placeholders; expected 1 (the whole video) or {num_frames} (one per \
                 frame)"
            )));
        }
        Ok(at
            .iter()
            .enumerate()
            .map(|(i, &index)| VideoSlot {
                index,
                rows: if n == 1 {
                    num_frames * tokens_per_frame + trailing
                } else {
                    tokens_per_frame + if i + 1 == n { trailing } else { 0 }
                },
            })
            .collect())
    }
}

/// The tokenized prompt and its spliced-sequence layout.
#[derive(Debug, Clone)]
pub struct PromptLayout {
    pub rendered: RenderedPrompt,
    /// Token ids as fed to the embed graph: bos (if the manifest sets one), then the prompt, with
    /// the single video placeholder token still in place.
    pub input_ids: Vec<i64>,
    /// Byte range in `rendered.text` of each entry of `input_ids` (`0..0` for bos): the token's
    /// full extent, spaces included (see [`PromptBuilder::with_tokenizer`]).
    pub input_offsets: Vec<Range<usize>>,
    /// Index of the first video placeholder in `input_ids`.
    pub placeholder_index: usize,
    /// Each placeholder of `input_ids` and the video rows that replace it, in order: one for the
    /// whole video, or one per frame when the prompt writes text between frames.
    pub slots: Vec<VideoSlot>,
    /// The frame times (seconds) the prompt's per-frame text shows; empty when it shows none.
    pub frame_times: Vec<f64>,
    pub num_frames: usize,
    pub tokens_per_frame: usize,
    /// Video embeddings after the frames (`video.trailing_tokens`).
    pub trailing_tokens: usize,
    /// S = `input_ids.len() - slots.len() + num_frames * tokens_per_frame + trailing_tokens`.
    pub seq_len: usize,
    pub groups: TokenGroups,
    /// Per option (in label order), the token id the model emits for that option's label right
    /// after the answer prefix; see [`PromptBuilder::layout`].
    pub option_token_ids: Vec<i64>,
    pub answer: Option<usize>,
}

impl PromptLayout {
    pub fn num_video_tokens(&self) -> usize {
        self.num_frames * self.tokens_per_frame + self.trailing_tokens
    }

    /// Spliced position of entry `k` of `input_ids` (not a placeholder).
    pub fn spliced_position(&self, k: usize) -> usize {
        let before: usize = self
            .slots
            .iter()
            .filter(|s| s.index < k)
            .map(|s| s.rows - 1)
            .sum();
        k + before
    }

    /// The token id at a spliced position, or `None` for video rows.
    pub fn token_id_at(&self, pos: usize) -> Option<i64> {
        let mut k = pos;
        for s in &self.slots {
            if k < s.index {
                break;
            }
            if k < s.index + s.rows {
                return None;
            }
            k -= s.rows - 1;
        }
        self.input_ids.get(k).copied()
    }

    /// The first position of the video (its first per-frame text token, or its first row).
    pub fn first_video(&self) -> usize {
        self.groups
            .video
            .first()
            .copied()
            .unwrap_or(self.placeholder_index)
    }

    /// The video's positions as one range (the group `video` is contiguous).
    pub fn video_range(&self) -> Range<usize> {
        let v = &self.groups.video;
        match (v.first(), v.last()) {
            (Some(&a), Some(&b)) => a..b + 1,
            _ => self.placeholder_index..self.placeholder_index,
        }
    }

    /// The spliced positions of a group by name: `system`, `video`, `video.sep`, `frame[i]`,
    /// `question`,
    /// `question.text`, `option[j]`, `option.true`, `option.false`, `template`, `last`.
    pub fn group(&self, name: &str) -> Result<&[usize]> {
        let g = &self.groups;
        let indexed = |prefix: &str, sets: &'_ [Vec<usize>]| -> Option<Result<usize>> {
            let inner = name.strip_prefix(prefix)?.strip_suffix(']')?;
            Some(match inner.parse::<usize>() {
                Ok(i) if i < sets.len() => Ok(i),
                _ => Err(Error::Input(format!(
                    "token group {name:?}: index must be 0..{} for this prompt",
                    sets.len()
                ))),
            })
        };
        if let Some(i) = indexed("frame[", &g.frames) {
            return Ok(&g.frames[i?]);
        }
        if let Some(j) = indexed("option[", &g.options) {
            return Ok(&g.options[j?]);
        }
        match name {
            "system" => Ok(&g.system),
            "video" => Ok(&g.video),
            "video.sep" => Ok(&g.video_sep),
            "question" => Ok(&g.question),
            "question.text" => Ok(&g.question_text),
            "template" => Ok(&g.template),
            "last" => Ok(&g.last),
            "option.true" | "option.false" if self.answer.is_none() => Err(Error::Input(format!(
                "token group {name:?} needs the answer index, and none was given"
            ))),
            "option.true" => Ok(&g.option_true),
            "option.false" => Ok(&g.option_false),
            _ => Err(Error::Input(format!(
                "unknown token group {name:?}; expected one of {}",
                self.group_names().join(", ")
            ))),
        }
    }

    /// Every group name this layout answers to.
    pub fn group_names(&self) -> Vec<String> {
        let mut names = vec![
            "system".to_string(),
            "video".to_string(),
            "video.sep".to_string(),
        ];
        names.extend((0..self.groups.frames.len()).map(|i| format!("frame[{i}]")));
        names.push("question".into());
        names.push("question.text".into());
        names.extend((0..self.groups.options.len()).map(|j| format!("option[{j}]")));
        if self.answer.is_some() {
            names.push("option.true".into());
            names.push("option.false".into());
        }
        names.push("template".into());
        names.push("last".into());
        names
    }
}

/// Renders and tokenizes prompts for one model package.
pub struct PromptBuilder {
    spec: PromptSpec,
    special: SpecialTokens,
    num_frames: usize,
    tokens_per_frame: usize,
    trailing_tokens: usize,
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    /// The model's positions (manifest `max_positions`): longer layouts are refused.
    max_positions: Option<usize>,
}

/// Prompt text longer than this many bytes per model position is refused before it is tokenized
/// (tokens average about 4 bytes; tokenizing megabytes of text costs gigabytes).
const MAX_BYTES_PER_POSITION: usize = 32;

impl std::fmt::Debug for PromptBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptBuilder")
            .field("tokenizer_path", &self.tokenizer_path)
            .field("num_frames", &self.num_frames)
            .field("tokens_per_frame", &self.tokens_per_frame)
            .finish_non_exhaustive()
    }
}

/// Reads a HF `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(Error::Tokenizer {
            path: path.to_path_buf(),
            msg: "file not found".into(),
        });
    }
    Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
        path: path.to_path_buf(),
        msg: format!("cannot load as a HF tokenizer.json: {e}"),
    })
}

/// Which content span a byte range belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    QuestionText,
    Option(usize),
    QuestionOther,
    Template,
}

fn overlap(a: &Range<usize>, b: &Range<usize>) -> usize {
    a.end.min(b.end).saturating_sub(a.start.max(b.start))
}

impl PromptBuilder {
    /// The builder for a package: the manifest's prompt, special tokens and video token grid, and
    /// the tokenizer file named by the manifest, relative to `package_dir`.
    pub fn new(manifest: &Manifest, package_dir: &Path) -> Result<PromptBuilder> {
        Ok(PromptBuilder::from_parts(
            &manifest.prompt,
            &manifest.special_tokens,
            &manifest.video,
            &package_dir.join(&manifest.tokenizer),
        )?
        .with_max_positions(manifest.max_positions))
    }

    /// Refuse layouts longer than `n` positions (the model's `max_positions`).
    pub fn with_max_positions(mut self, n: usize) -> PromptBuilder {
        self.max_positions = Some(n);
        self
    }

    pub fn from_parts(
        prompt: &PromptSpec,
        special: &SpecialTokens,
        video: &VideoSpec,
        tokenizer_path: &Path,
    ) -> Result<PromptBuilder> {
        let tokenizer = load_tokenizer(tokenizer_path)?;
        PromptBuilder::with_tokenizer(prompt, special, video, tokenizer, tokenizer_path)
    }

    /// As [`PromptBuilder::from_parts`] with a tokenizer already in memory; `tokenizer_path` only
    /// names it in error messages. The tokenizer's post-processor is set to keep each token's full
    /// byte extent as its offsets (byte-level ones trim spaces off by default); ids are unchanged.
    pub fn with_tokenizer(
        prompt: &PromptSpec,
        special: &SpecialTokens,
        video: &VideoSpec,
        tokenizer: Tokenizer,
        tokenizer_path: &Path,
    ) -> Result<PromptBuilder> {
        if video.num_frames == 0 || video.tokens_per_frame() == 0 {
            return Err(Error::Prompt(format!(
                "video has {} frames of {} tokens; both must be positive",
                video.num_frames,
                video.tokens_per_frame()
            )));
        }
        let mut tokenizer = tokenizer;
        keep_full_offsets(&mut tokenizer);
        Ok(PromptBuilder {
            spec: prompt.clone(),
            special: special.clone(),
            num_frames: video.num_frames,
            tokens_per_frame: video.tokens_per_frame(),
            trailing_tokens: video.trailing_tokens,
            tokenizer,
            tokenizer_path: tokenizer_path.to_path_buf(),
            max_positions: None,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn spec(&self) -> &PromptSpec {
        &self.spec
    }

    fn tok_err(&self, msg: String) -> Error {
        Error::Tokenizer {
            path: self.tokenizer_path.clone(),
            msg,
        }
    }

    fn encode(&self, text: &str) -> Result<tokenizers::Encoding> {
        // Special tokens (bos) are added from the manifest, not by the tokenizer's post-processor.
        self.tokenizer
            .encode(text, false)
            .map_err(|e| self.tok_err(format!("cannot tokenize the prompt: {e}")))
    }

    /// Renders the prompt (see [`render`]) with the default frame times.
    pub fn render(&self, question: &str, options: &[&str]) -> Result<RenderedPrompt> {
        render(&self.spec, question, options, &self.default_frame_times())
    }

    /// Frame i at i seconds: the times `{t}` takes when the video's own are not known (frames
    /// given without a rate, goldens), as HF processors fall back to 1 frame per second.
    pub fn default_frame_times(&self) -> Vec<f64> {
        (0..self.num_frames).map(|i| i as f64).collect()
    }

    /// Renders, tokenizes and lays out the prompt for `question` and `options`; `answer` is the
    /// 0-based index of the correct option, which fills `option.true` / `option.false`.
    /// Frames are timed by [`Self::default_frame_times`]; see [`Self::layout_at`].
    ///
    /// `option_token_ids[j]`: the prompt followed by label j is tokenized as one string; when the
    /// prompt's tokens are a prefix of the result, the next token is the one the model emits for
    /// that label (e.g. `A` after `Best option:(`). If the last prompt token merges with the label
    /// instead (a tokenizer with a `(A` piece), the label's own vocabulary entry is used, and when
    /// there is none that is an error. Labels that map to the same id are an error.
    pub fn layout(
        &self,
        question: &str,
        options: &[&str],
        answer: Option<usize>,
    ) -> Result<PromptLayout> {
        self.layout_at(question, options, answer, &self.default_frame_times())
    }

    /// [`Self::layout`] with the sampled frames' times in seconds (one per frame), which a
    /// prompt that writes `Time {t}s:` before each frame shows; other prompts ignore them.
    pub fn layout_at(
        &self,
        question: &str,
        options: &[&str],
        answer: Option<usize>,
        frame_times: &[f64],
    ) -> Result<PromptLayout> {
        if let Some(a) = answer {
            if a >= options.len() {
                return Err(Error::Prompt(format!(
                    "answer index {a} is out of range for {} options",
                    options.len()
                )));
            }
        }
        self.check_times(frame_times)?;
        let rendered = render(&self.spec, question, options, frame_times)?;
        self.lay_out(rendered, answer, frame_times)
    }

    /// The layout of the open-ended prompt for `question` ([`render_open`]): no options, so
    /// `option[j]`, `option.true` and `option.false` are empty and no option token ids exist;
    /// the model's reply is generated after the last position.
    /// `system` replaces the manifest's system text (a chat's system message).
    pub fn layout_open(&self, question: &str, system: Option<&str>) -> Result<PromptLayout> {
        self.layout_open_at(question, system, &self.default_frame_times())
    }

    /// [`Self::layout_open`] with the sampled frames' times (see [`Self::layout_at`]).
    pub fn layout_open_at(
        &self,
        question: &str,
        system: Option<&str>,
        frame_times: &[f64],
    ) -> Result<PromptLayout> {
        self.check_times(frame_times)?;
        let rendered = match system {
            Some(text) => {
                let mut spec = self.spec.clone();
                spec.system = text.to_string();
                render_open(&spec, question, frame_times)?
            }
            None => render_open(&self.spec, question, frame_times)?,
        };
        self.lay_out(rendered, None, frame_times)
    }

    fn check_times(&self, frame_times: &[f64]) -> Result<()> {
        if !self.spec.per_frame() {
            return Ok(());
        }
        if frame_times.len() != self.num_frames {
            return Err(Error::Prompt(format!(
                "{} frame times given for a prompt of {} frames",
                frame_times.len(),
                self.num_frames
            )));
        }
        if let Some(t) = frame_times.iter().find(|t| !t.is_finite() || **t < 0.0) {
            return Err(Error::Prompt(format!(
                "frame time {t} s; times must be finite and >= 0"
            )));
        }
        Ok(())
    }

    /// Tokenizes a rendered prompt and marks its token groups.
    fn lay_out(
        &self,
        rendered: RenderedPrompt,
        answer: Option<usize>,
        frame_times: &[f64],
    ) -> Result<PromptLayout> {
        let question = rendered.slice(&rendered.question_text).to_string();
        let options: Vec<String> = rendered
            .options
            .iter()
            .map(|o| rendered.slice(&o.text).to_string())
            .collect();
        if let Some(max) = self.max_positions {
            let limit = max.saturating_mul(MAX_BYTES_PER_POSITION);
            if rendered.text.len() > limit {
                return Err(Error::Prompt(format!(
                    "the prompt text is {} bytes (question {} bytes, options {} bytes); the model \
                     takes {max} positions, so at most {limit} bytes are accepted",
                    rendered.text.len(),
                    question.len(),
                    options.iter().map(|o| o.len()).sum::<usize>()
                )));
            }
        }
        let enc = self.encode(&rendered.text)?;
        let ids = enc.get_ids();
        let offsets: Vec<Range<usize>> = enc.get_offsets().iter().map(|&(s, e)| s..e).collect();
        let placeholders = self.find_placeholders(&rendered, ids, &offsets)?;

        let bos: usize = usize::from(self.special.bos_token_id.is_some());
        let mut input_ids = Vec::with_capacity(ids.len() + bos);
        let mut input_offsets = Vec::with_capacity(ids.len() + bos);
        if let Some(b) = self.special.bos_token_id {
            input_ids.push(b);
            input_offsets.push(0..0);
        }
        input_ids.extend(ids.iter().map(|&i| i as i64));
        input_offsets.extend(offsets.iter().cloned());
        let n_video = self.num_frames * self.tokens_per_frame + self.trailing_tokens;
        let at: Vec<usize> = placeholders.iter().map(|k| k + bos).collect();
        let slots = VideoSlot::of_placeholders(
            &at,
            self.num_frames,
            self.tokens_per_frame,
            self.trailing_tokens,
        )?;
        let placeholder_index = slots[0].index;
        let seq_len = input_ids.len() - slots.len() + n_video;
        if let Some(max) = self.max_positions {
            if seq_len > max {
                return Err(Error::Prompt(format!(
                    "the prompt is {seq_len} positions ({} text tokens and {n_video} video \
                     tokens); the model takes at most {max} (model.yaml max_positions): shorten \
                     the question or options, or use fewer frames",
                    input_ids.len() - slots.len()
                )));
            }
        }

        let mut g = TokenGroups {
            frames: vec![Vec::new(); self.num_frames],
            options: vec![Vec::new(); options.len()],
            ..TokenGroups::default()
        };
        let last = seq_len - 1;
        let mut pos = 0;
        let mut slot = slots.iter().peekable();
        let mut frame = 0;
        for (k, range) in input_offsets.iter().enumerate() {
            if let Some(sl) = slot.next_if(|sl| sl.index == k) {
                // Video rows: whole frames in order, then the trailing rows (no frame).
                for r in 0..sl.rows {
                    g.video.push(pos + r);
                }
                let mut r = 0;
                while r < sl.rows && frame < self.num_frames {
                    let n = self.tokens_per_frame.min(sl.rows - r);
                    g.frames[frame].extend(pos + r..pos + r + n);
                    r += n;
                    frame += 1;
                }
                g.video_sep.extend(pos + r..pos + sl.rows);
                pos += sl.rows;
                continue;
            }
            let here = pos;
            pos += 1;
            if here == last {
                continue;
            }
            // Per-frame text (`Time 1.0s:`, separators) is video, of no frame.
            if overlap(range, &rendered.video) > 0 {
                g.video.push(here);
                g.video_sep.push(here);
                continue;
            }
            if k < placeholder_index {
                g.system.push(here);
                continue;
            }
            match classify(&rendered, range) {
                Slot::QuestionText => {
                    g.question.push(here);
                    g.question_text.push(here);
                }
                Slot::Option(j) => {
                    g.question.push(here);
                    g.options[j].push(here);
                }
                Slot::QuestionOther => g.question.push(here),
                Slot::Template => g.template.push(here),
            }
        }
        debug_assert_eq!(pos, seq_len);
        g.video_sep.sort_unstable();
        g.last = vec![last];

        if g.question_text.is_empty() {
            return Err(Error::Prompt(format!(
                "no token of the tokenized prompt falls on the question text {:?} (it merged into a \
                 neighbouring token or is the final position)",
                rendered.slice(&rendered.question_text)
            )));
        }
        for (j, o) in rendered.options.iter().enumerate() {
            if g.options[j].is_empty() {
                return Err(Error::Prompt(format!(
                    "no token of the tokenized prompt falls on option {} {:?} (it merged into \
                     a neighbouring token or is the final position)",
                    o.label,
                    rendered.slice(&o.full)
                )));
            }
        }
        if let Some(a) = answer {
            g.option_true = g.options[a].clone();
            let mut f: Vec<usize> = (0..options.len())
                .filter(|&j| j != a)
                .flat_map(|j| g.options[j].iter().copied())
                .collect();
            f.sort_unstable();
            g.option_false = f;
        }

        let option_token_ids = self.option_token_ids(&rendered, ids)?;
        Ok(PromptLayout {
            rendered,
            input_ids,
            input_offsets,
            placeholder_index,
            slots,
            frame_times: if self.spec.per_frame() {
                frame_times.to_vec()
            } else {
                Vec::new()
            },
            num_frames: self.num_frames,
            tokens_per_frame: self.tokens_per_frame,
            trailing_tokens: self.trailing_tokens,
            seq_len,
            groups: g,
            option_token_ids,
            answer,
        })
    }

    /// Indices (in the tokenizer's output) of the video placeholder tokens, one per rendered
    /// placeholder.
    fn find_placeholders(
        &self,
        rendered: &RenderedPrompt,
        ids: &[u32],
        offsets: &[Range<usize>],
    ) -> Result<Vec<usize>> {
        let video_id = self.special.video_token_id;
        let hits: Vec<usize> = (0..ids.len())
            .filter(|&k| ids[k] as i64 == video_id)
            .collect();
        let placeholder = &self.spec.video_placeholder;
        let want = &rendered.placeholders;
        if hits.is_empty() {
            let pieces: Vec<u32> = (0..ids.len())
                .filter(|&k| overlap(&offsets[k], &want[0]) > 0)
                .map(|k| ids[k])
                .collect();
            return Err(self.tok_err(format!(
                "the video placeholder {placeholder:?} tokenizes to ids {pieces:?}, expected \
                 exactly one token with video_token_id {video_id} (is it an added token of this \
                 tokenizer?)"
            )));
        }
        if hits.len() != want.len() {
            let expected = match want.len() {
                1 => "once".to_string(),
                n => format!("{n} (one per frame)"),
            };
            return Err(Error::Prompt(format!(
                "video_token_id {video_id} appears {} times in the prompt, expected {expected}; \
                 the system text, question, options and frame text must not contain the \
                 placeholder {placeholder:?}",
                hits.len(),
            )));
        }
        for (&k, w) in hits.iter().zip(want) {
            if offsets[k] != *w {
                return Err(self.tok_err(format!(
                    "video_token_id {video_id} appears at bytes {:?} of the prompt, but the video \
                     placeholder {placeholder:?} is at bytes {w:?}",
                    offsets[k]
                )));
            }
        }
        Ok(hits)
    }

    /// The token id emitted for each option label after the answer prefix (see [`Self::layout`]).
    fn option_token_ids(&self, rendered: &RenderedPrompt, prompt_ids: &[u32]) -> Result<Vec<i64>> {
        let mut out: Vec<i64> = Vec::with_capacity(rendered.options.len());
        for o in &rendered.options {
            let enc = self.encode(&format!("{}{}", rendered.text, o.label))?;
            let ids = enc.get_ids();
            let id = if ids.len() > prompt_ids.len() && ids[..prompt_ids.len()] == *prompt_ids {
                ids[prompt_ids.len()]
            } else if let Some(id) = self.tokenizer.token_to_id(&o.label) {
                id
            } else {
                return Err(self.tok_err(format!(
                    "option label {:?} merges with the end of the answer prefix {:?} and is not \
                     itself a vocabulary entry; cannot tell which token answers {:?}",
                    o.label, self.spec.answer_prefix, o.label
                )));
            };
            if let Some(j) = out.iter().position(|&x| x == id as i64) {
                return Err(self.tok_err(format!(
                    "option labels {:?} and {:?} both start with token id {id} after the answer \
                     prefix; the answer could not be told apart",
                    rendered.options[j].label, o.label
                )));
            }
            out.push(id as i64);
        }
        Ok(out)
    }
}

/// Turns off the trimming of spaces off token offsets that byte-level (and RoBERTa) post-processors
/// do, so that every offset is its token's full extent, as the boundary rule needs: trimmed, a
/// token made only of spaces (the last space of `"blue  "`) comes back zero-width at the byte
/// after it and would be grouped by that byte (the template), not by its own. Ids never change.
fn keep_full_offsets(tokenizer: &mut Tokenizer) {
    fn untrim(p: &mut PostProcessorWrapper) {
        match p {
            PostProcessorWrapper::ByteLevel(b) => b.trim_offsets = false,
            PostProcessorWrapper::Roberta(r) => r.trim_offsets = false,
            PostProcessorWrapper::Sequence(s) => s.as_mut().iter_mut().for_each(untrim),
            PostProcessorWrapper::Bert(_) | PostProcessorWrapper::Template(_) => {}
        }
    }
    if let Some(mut p) = tokenizer.get_post_processor().cloned() {
        untrim(&mut p);
        tokenizer.with_post_processor(Some(p));
    }
}

/// The boundary rule of the module docs, for one token after the video placeholder.
fn classify(rendered: &RenderedPrompt, range: &Range<usize>) -> Slot {
    // A zero-width token (rare; e.g. inserted by a normalizer) is treated as covering the byte it
    // sits in front of.
    let r = if range.end > range.start {
        range.clone()
    } else {
        range.start..range.start + 1
    };
    let mut best: Option<(usize, Slot)> = None;
    let content = std::iter::once((&rendered.question_text, Slot::QuestionText)).chain(
        rendered
            .options
            .iter()
            .enumerate()
            .map(|(j, o)| (&o.full, Slot::Option(j))),
    );
    for (span, slot) in content {
        let ov = overlap(&r, span);
        if ov > 0 && best.map(|(b, _)| ov > b).unwrap_or(true) {
            best = Some((ov, slot));
        }
    }
    match best {
        Some((_, slot)) => slot,
        None if overlap(&r, &rendered.question_block) > 0 => Slot::QuestionOther,
        None => Slot::Template,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> RenderedPrompt {
        // "<v>Q: why?|(A) red|(B) car.": byte ranges written out by hand.
        RenderedPrompt {
            text: "<v>Q: why?|(A) red|(B) car.".into(),
            placeholders: std::iter::once(0..3).collect(),
            video: 0..3,
            question_block: 3..26,
            question_text: 6..10,
            options: vec![
                OptionSpan {
                    label: "A".into(),
                    full: 11..18,
                    text: 15..18,
                },
                OptionSpan {
                    label: "B".into(),
                    full: 19..26,
                    text: 23..26,
                },
            ],
        }
    }

    #[test]
    fn boundary_rule() {
        let r = rendered();
        assert!(classify(&r, &(3..5)) == Slot::QuestionOther);
        // Straddles prefix and question text: content wins.
        assert!(classify(&r, &(4..8)) == Slot::QuestionText);
        // Straddles two options: more shared bytes wins (2 with B, 1 with A).
        assert!(classify(&r, &(17..21)) == Slot::Option(1));
        // Tie (1 byte each): the earlier span.
        assert!(classify(&r, &(17..20)) == Slot::Option(0));
        // The label belongs to its option.
        assert!(classify(&r, &(11..13)) == Slot::Option(0));
        // Straddles the last option and the template: the option.
        assert!(classify(&r, &(25..27)) == Slot::Option(1));
        assert!(classify(&r, &(26..27)) == Slot::Template);
        // Zero-width token in front of an option byte.
        assert!(classify(&r, &(15..15)) == Slot::Option(0));
        // The separator between options is question text of neither.
        assert!(classify(&r, &(18..19)) == Slot::QuestionOther);
    }
}
