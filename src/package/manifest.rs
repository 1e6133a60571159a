//! `model.yaml`: the manifest of a model package (design.md §1).
//!
//! Parsing is strict (`deny_unknown_fields`) so that a typo in a field name is an error naming the
//! field instead of a silently ignored setting.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    pub graphs: Graphs,
    pub tokenizer: String,
    pub video: VideoSpec,
    pub prompt: PromptSpec,
    pub special_tokens: SpecialTokens,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    Float16,
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
}

impl VideoSpec {
    pub fn tokens_per_frame(&self) -> usize {
        self.grid_h * self.grid_w
    }
    pub fn num_video_tokens(&self) -> usize {
        self.num_frames * self.tokens_per_frame()
    }
}

/// The multiple-choice prompt, rendered as the concatenation
/// `system, user_prefix, video_placeholder, after_video, question_prefix, <question>,
///  options_header, <options joined by option_separator>, instruction, assistant_prefix,
///  answer_prefix`, where each option is `option_format` with `{label}` and `{text}` filled in.
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
        let manifest: Manifest = serde_yaml::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        manifest.check(path)?;
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
        if self.video.num_frames == 0 || self.video.grid_h == 0 || self.video.grid_w == 0 {
            return Err(bad(
                "video.num_frames, video.grid_h and video.grid_w must be positive".into(),
            ));
        }
        if self.prompt.option_labels.is_empty() {
            return Err(bad("prompt.option_labels is empty".into()));
        }
        Ok(())
    }
}
