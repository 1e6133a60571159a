//! `model.yaml`: the manifest of a model package (design.md §1).
//!
//! Parsing is strict (`deny_unknown_fields`) so that a typo in a field name is an error naming the
//! field instead of a silently ignored setting.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::prompt::{MAX_OPTIONS, MIN_OPTIONS};

/// The manifest format this build reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// How positions and rotary tables are computed; `llama`: position = token index.
    pub family: Family,
    /// Weight and compute dtype of the graphs (graph I/O is float32 in every package).
    pub dtype: Dtype,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Last dimension of the rotary tables `cos, sin`.
    pub rope_dim: usize,
    pub vocab_size: usize,
    pub intermediate_size: usize,
    /// The longest sequence the model takes, in positions (video tokens included): the HF config's
    /// `max_position_embeddings`. Longer prompts are refused ([`Manifest::check_sequence_length`])
    /// rather than run past the positions the model was trained on. At least 1.
    pub max_positions: usize,
    pub graphs: Graphs,
    pub tokenizer: String,
    pub video: VideoSpec,
    pub prompt: PromptSpec,
    pub special_tokens: SpecialTokens,
    /// Multi-axis rotary positions (family `qwen2_5_vl` only; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrope: Option<MropeSpec>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Position = token index; the rope graph takes `position_ids [B,T]`.
    Llama,
    /// Qwen2.5-VL's M-RoPE: (t, h, w) positions for video tokens from the frame grid and the
    /// time between frame groups; the rope graph takes `position_ids [3,B,T]`.
    #[serde(rename = "qwen2_5_vl")]
    Qwen25Vl,
}

impl Family {
    /// The name `model.yaml` uses.
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen25Vl => "qwen2_5_vl",
        }
    }
}

/// How a `qwen2_5_vl` package turns frames into temporal positions (engine::positions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MropeSpec {
    /// Input frames merged into one temporal token group; the vision graph takes
    /// `video.num_frames * temporal_patch_size` frames and `video.num_frames` is the number of
    /// groups (the prompt's `frame[i]`).
    pub temporal_patch_size: usize,
    /// The model's `vision_config.tokens_per_second`.
    pub tokens_per_second: f64,
    /// Seconds between two temporal groups, used for every video (the reference derives it from
    /// each video's sampling rate: docs/families/qwen2_5_vl.md).
    pub seconds_per_group: f64,
    /// `mrope_section` of the rotary tables (t, h, w frequency pairs); applied by the rope graph,
    /// checked here against `rope_dim`.
    pub sections: [usize; 3],
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    Float16,
    /// Runs on CUDA only: ONNX Runtime's CPU kernels have no bfloat16 matrix product.
    Bfloat16,
}

/// File names of every graph, relative to the package directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Graphs {
    pub vision: String,
    pub embed: String,
    pub rope: String,
    /// One extend-form graph per decoder layer, in layer order.
    pub layers: Vec<String>,
    /// The same layers with an extra `attn_weights` output (for attention maps).
    pub layers_attn: Vec<String>,
    /// Final norm + LM head (default logit lens).
    pub head_norm: String,
    /// LM head alone.
    pub head_lm: String,
    /// Projection through the input-embedding matrix (the published reference's lens).
    pub head_embed: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    Nearest,
    Bilinear,
    Bicubic,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Resize straight to `frame_height x frame_width`, ignoring aspect ratio.
    Stretch,
    /// Resize the shortest edge to the target, then centre-crop (CLIP processors).
    ShortestEdgeCrop,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FrameSampling {
    /// The middle frame of each of F equal segments (MVBench / TVBench convention).
    SegmentMiddle,
}

/// Video preprocessing: how frames become `pixel_values` and how many tokens each frame yields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    pub num_frames: usize,
    pub frame_height: usize,
    pub frame_width: usize,
    pub resize_mode: ResizeMode,
    pub resize_filter: ResizeFilter,
    pub rescale_factor: f32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Video tokens per frame, as a grid `grid_h x grid_w`.
    pub grid_h: usize,
    pub grid_w: usize,
    pub sampling: FrameSampling,
    /// Embeddings the vision graph appends after the last frame (LLaVA-OneVision's
    /// `image_newline`): part of `video`, of no `frame[i]`; the group `video.sep`. 0 when absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trailing_tokens: usize,
    /// Input frames per temporal token group: the video is decoded as `num_frames *
    /// frames_per_group` frames. Not a manifest field: set from `mrope.temporal_patch_size` when
    /// the manifest is read (1 for other families).
    #[serde(skip, default = "one")]
    pub frames_per_group: usize,
}

fn one() -> usize {
    1
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl VideoSpec {
    pub fn tokens_per_frame(&self) -> usize {
        self.grid_h * self.grid_w
    }
    /// Frames decoded per video: `num_frames` temporal groups of `frames_per_group` frames.
    pub fn input_frames(&self) -> usize {
        self.num_frames * self.frames_per_group
    }

    /// Every embedding the vision graph gives: the frames' grids and the trailing tokens.
    pub fn num_video_tokens(&self) -> usize {
        self.num_frames * self.tokens_per_frame() + self.trailing_tokens
    }
}

/// The multiple-choice prompt, rendered as the concatenation
/// `system, user_prefix, <video>, after_video, question_prefix, <question>,
///  options_header, <options joined by option_separator>, instruction, assistant_prefix,
///  answer_prefix`, where each option is `option_format` with `{label}` and `{text}` filled in.
///
/// `<video>` is `video_placeholder` once, or, when any of the `frame_*` fields is set (models
/// that write text between frames, VideoLLaMA3's `Time 1.0s:` and `,`), one placeholder per
/// frame: `frame_separator`-joined `frame_prefix + video_placeholder + frame_suffix`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub system: String,
    pub user_prefix: String,
    /// Literal text that tokenizes to exactly one `video_token_id`; replaced by all video tokens.
    pub video_placeholder: String,
    pub after_video: String,
    pub question_prefix: String,
    pub options_header: String,
    pub option_format: String,
    pub option_separator: String,
    pub option_labels: Vec<String>,
    pub instruction: String,
    pub assistant_prefix: String,
    pub answer_prefix: String,
    /// Text before each frame's placeholder: `{i}` is the frame number from 1, `{t}` the frame's
    /// time in seconds with one decimal (docs/video-and-prompts.md).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub frame_prefix: String,
    /// Text after each frame's placeholder.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub frame_suffix: String,
    /// Text between consecutive frames.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub frame_separator: String,
}

impl PromptSpec {
    /// Whether the video is written frame by frame, with text between frames.
    pub fn per_frame(&self) -> bool {
        !(self.frame_prefix.is_empty()
            && self.frame_suffix.is_empty()
            && self.frame_separator.is_empty())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    pub video_token_id: i64,
    /// Prepended to the prompt when set.
    pub bos_token_id: Option<i64>,
    pub eos_token_id: Option<i64>,
    pub pad_token_id: Option<i64>,
}

impl Manifest {
    /// Reads and parses `model.yaml`; errors name the file and the offending field.
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut manifest: Manifest = serde_yaml::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        manifest.check(path)?;
        manifest.video.frames_per_group = manifest.frames_per_group();
        Ok(manifest)
    }

    /// Internal consistency of the numbers, before any graph is opened.
    fn check(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Error::Manifest {
            path: path.to_path_buf(),
            msg,
        };
        if self.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format_version is {}, this vidflow reads version {FORMAT_VERSION}",
                self.format_version
            )));
        }
        // Sizes no graph port shows (intermediate_size, num_heads) would otherwise pass as 0.
        for (field, n) in [
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("head_dim", self.head_dim),
            ("rope_dim", self.rope_dim),
            ("vocab_size", self.vocab_size),
            ("intermediate_size", self.intermediate_size),
        ] {
            if n == 0 {
                return Err(bad(format!("{field} is 0; it must be > 0")));
            }
        }
        if self.graphs.layers.len() != self.num_layers {
            return Err(bad(format!(
                "graphs.layers lists {} files but num_layers is {}",
                self.graphs.layers.len(),
                self.num_layers
            )));
        }
        if self.graphs.layers_attn.len() != self.num_layers {
            return Err(bad(format!(
                "graphs.layers_attn lists {} files but num_layers is {}",
                self.graphs.layers_attn.len(),
                self.num_layers
            )));
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(bad(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.max_positions == 0 {
            return Err(bad(
                "max_positions is 0; it must be at least 1 (the HF config's \
                 max_position_embeddings)"
                    .into(),
            ));
        }
        self.check_video().map_err(bad)?;
        self.check_mrope().map_err(bad)?;
        self.check_frame_text().map_err(bad)?;
        self.check_special_tokens().map_err(bad)?;
        self.check_option_labels().map_err(bad)?;
        Ok(())
    }

    /// Per-frame prompt text: not with M-RoPE (its time positions assume one contiguous video),
    /// and only the `{i}` and `{t}` fields.
    fn check_frame_text(&self) -> Result<(), String> {
        let p = &self.prompt;
        if !p.per_frame() {
            return Ok(());
        }
        if self.family == Family::Qwen25Vl {
            return Err(
                "prompt.frame_prefix/frame_suffix/frame_separator are set, but family qwen2_5_vl \
                 places its video as one block of M-RoPE positions; per-frame text is not \
                 supported there"
                    .into(),
            );
        }
        for (field, text) in [
            ("frame_prefix", &p.frame_prefix),
            ("frame_suffix", &p.frame_suffix),
        ] {
            let rest = text.replace("{i}", "").replace("{t}", "");
            if rest.contains(['{', '}']) {
                return Err(format!(
                    "prompt.{field} {text:?} has a brace field other than {{i}} (frame number) \
                     and {{t}} (seconds)"
                ));
            }
        }
        let sep = &p.frame_separator;
        if sep.contains("{i}") || sep.contains("{t}") {
            return Err(format!(
                "prompt.frame_separator {sep:?} is literal text; {{i}} and {{t}} belong in \
                 frame_prefix or frame_suffix"
            ));
        }
        Ok(())
    }

    /// Sizes positive, rescale and std finite and > 0 (pixels are divided by the std), mean finite.
    fn check_video(&self) -> Result<(), String> {
        let v = &self.video;
        for (field, n) in [
            ("num_frames", v.num_frames),
            ("frame_height", v.frame_height),
            ("frame_width", v.frame_width),
            ("grid_h", v.grid_h),
            ("grid_w", v.grid_w),
        ] {
            if n == 0 {
                return Err(format!("video.{field} is 0; it must be > 0"));
            }
        }
        if !(v.rescale_factor.is_finite() && v.rescale_factor > 0.0) {
            return Err(format!(
                "video.rescale_factor is {}; it must be finite and > 0",
                v.rescale_factor
            ));
        }
        for (i, &x) in v.image_mean.iter().enumerate() {
            if !x.is_finite() {
                return Err(format!(
                    "video.image_mean[{i}] is {x}; every entry must be finite"
                ));
            }
        }
        for (i, &x) in v.image_std.iter().enumerate() {
            if !(x.is_finite() && x > 0.0) {
                return Err(format!(
                    "video.image_std[{i}] is {x}; every entry must be finite and > 0 (pixel \
                     values are divided by it)"
                ));
            }
        }
        Ok(())
    }

    /// `mrope` present exactly for the M-RoPE family, with sane numbers.
    fn check_mrope(&self) -> Result<(), String> {
        match (self.family, &self.mrope) {
            (Family::Llama, None) => Ok(()),
            (Family::Llama, Some(_)) => Err(
                "mrope is set but family is llama; only qwen2_5_vl takes an mrope section".into(),
            ),
            (Family::Qwen25Vl, None) => Err(
                "family qwen2_5_vl needs an mrope section (temporal_patch_size, \
                 tokens_per_second, seconds_per_group, sections)"
                    .into(),
            ),
            (Family::Qwen25Vl, Some(m)) => {
                if m.temporal_patch_size == 0 {
                    return Err("mrope.temporal_patch_size is 0; it must be >= 1".into());
                }
                for (field, x) in [
                    ("tokens_per_second", m.tokens_per_second),
                    ("seconds_per_group", m.seconds_per_group),
                ] {
                    if !(x.is_finite() && x >= 0.0) {
                        return Err(format!("mrope.{field} is {x}; it must be finite and >= 0"));
                    }
                }
                let pairs: usize = m.sections.iter().sum();
                if 2 * pairs != self.rope_dim {
                    return Err(format!(
                        "mrope.sections {:?} cover {} rotary dims, but rope_dim is {}",
                        m.sections,
                        2 * pairs,
                        self.rope_dim
                    ));
                }
                Ok(())
            }
        }
    }

    /// Input frames per temporal token group (`mrope.temporal_patch_size`, 1 for other
    /// families).
    pub fn frames_per_group(&self) -> usize {
        self.mrope.as_ref().map_or(1, |m| m.temporal_patch_size)
    }

    /// Every special token id set is a row of the vocabulary.
    fn check_special_tokens(&self) -> Result<(), String> {
        let t = &self.special_tokens;
        let ids = [
            ("video_token_id", Some(t.video_token_id)),
            ("bos_token_id", t.bos_token_id),
            ("eos_token_id", t.eos_token_id),
            ("pad_token_id", t.pad_token_id),
        ];
        for (field, id) in ids {
            if let Some(id) = id {
                if id < 0 || id as u64 >= self.vocab_size as u64 {
                    return Err(format!(
                        "special_tokens.{field} is {id}, outside the vocabulary: ids must be 0 to \
                         {} (vocab_size {})",
                        self.vocab_size.saturating_sub(1),
                        self.vocab_size
                    ));
                }
            }
        }
        Ok(())
    }

    /// As many labels as a question may have options, none empty, no two alike.
    fn check_option_labels(&self) -> Result<(), String> {
        let labels = &self.prompt.option_labels;
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&labels.len()) {
            return Err(format!(
                "prompt.option_labels has {} labels {labels:?}; a question has {MIN_OPTIONS} to \
                 {MAX_OPTIONS} options, so {MIN_OPTIONS} to {MAX_OPTIONS} labels are expected",
                labels.len()
            ));
        }
        for (j, label) in labels.iter().enumerate() {
            if label.trim().is_empty() {
                return Err(format!(
                    "prompt.option_labels[{j}] is {label:?}; a label must not be blank"
                ));
            }
            if let Some(i) = labels[..j].iter().position(|l| l == label) {
                return Err(format!(
                    "prompt.option_labels repeats {label:?} (entries {i} and {j}) in {labels:?}; \
                     every label must be distinct, or two options would share one answer"
                ));
            }
        }
        Ok(())
    }

    /// Refuses a sequence of `seq_len` positions (video tokens included) longer than the model
    /// takes (`max_positions`).
    pub fn check_sequence_length(&self, seq_len: usize) -> Result<()> {
        if seq_len > self.max_positions {
            return Err(Error::Input(format!(
                "the prompt is {seq_len} tokens; {} takes at most {} positions (model.yaml \
                 max_positions)",
                self.name, self.max_positions
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Manifest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/model.yaml");
        Manifest::from_file(&path).expect("the tiny manifest parses")
    }

    #[test]
    fn sequence_length_is_checked_against_max_positions() {
        let m = tiny();
        assert_eq!(m.max_positions, 512);
        m.check_sequence_length(1).unwrap();
        m.check_sequence_length(512).unwrap();
        let msg = m.check_sequence_length(120003).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid input: the prompt is 120003 tokens; tiny-llava-next-video takes at most 512 \
             positions (model.yaml max_positions)"
        );
        assert!(m.check_sequence_length(513).is_err());
    }

    #[test]
    fn max_positions_zero_is_refused() {
        let mut m = tiny();
        m.max_positions = 0;
        let msg = m.check(Path::new("model.yaml")).unwrap_err().to_string();
        assert!(msg.contains("max_positions is 0"), "{msg}");
    }

    #[test]
    fn option_label_counts_outside_the_option_range_are_refused() {
        for n in [1, MAX_OPTIONS + 1] {
            let mut m = tiny();
            m.prompt.option_labels = (0..n).map(|i| format!("L{i}")).collect();
            let msg = m.check(Path::new("model.yaml")).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("prompt.option_labels has {n} labels")),
                "{msg}"
            );
        }
    }
}
