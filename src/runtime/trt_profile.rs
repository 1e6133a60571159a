//! TensorRT shape profiles and engine-cache folders, derived from the package.
//!
//! TensorRT builds an engine for a range of input shapes (min, opt, max per input). Typed by hand
//! these drift from the package (a new frame count, another hidden size) and the engine is either
//! rebuilt on every call or refuses the shapes the runtime feeds. Here they follow from the
//! manifest and two run limits, with the inputs named as in [`crate::package::names`]. The
//! engine-cache folder is keyed by the package's content and by the profile, so a changed package
//! or profile never loads a stale engine.

use std::fmt;
use std::path::{Path, PathBuf};

use super::TensorRtOptions;
use crate::error::Result;
use crate::package::manifest::{Dtype, Manifest};
use crate::package::names;
use crate::report::identity::InputDigests;

/// The kinds of graph in a package; the layer kind covers the attention-weights variants, whose
/// inputs are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    Vision,
    Embed,
    Rope,
    Layer,
    Head,
}

impl fmt::Display for GraphKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GraphKind::Vision => "vision",
            GraphKind::Embed => "embed",
            GraphKind::Rope => "rope",
            GraphKind::Layer => "layer",
            GraphKind::Head => "head",
        })
    }
}

/// How large a run may get: the profile's maximum shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Sequences per call (B).
    pub max_batch: usize,
    /// Text tokens of a prompt besides the video tokens (system, question, options, template,
    /// generated tokens).
    pub max_text: usize,
}

/// Min, opt and max shapes in TensorRT's syntax (`name:1x2x3,name2:4x5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeProfile {
    pub min: String,
    pub opt: String,
    pub max: String,
}

/// The longest sequence: every video token plus `max_text`, but never past `max_positions`.
pub fn max_sequence(m: &Manifest, limits: &ProfileLimits) -> usize {
    (m.video.num_video_tokens() + limits.max_text).clamp(1, m.max_positions.max(1))
}

/// One input's name and its min, opt and max dims.
type InputDims = (&'static str, Vec<usize>, Vec<usize>, Vec<usize>);

/// The profile of one graph kind. Opt is a single-sequence prefill (the call that dominates
/// time): one video's frames, a full prompt with no past; min is one row, max is `max_batch`
/// sequences of the longest prompt (a layer's past at most one row short of it).
pub fn shape_profile(kind: GraphKind, m: &Manifest, limits: &ProfileLimits) -> ShapeProfile {
    let b = limits.max_batch.max(1);
    let s = max_sequence(m, limits);
    let (d, r, hkv, dh) = (m.hidden_size, m.rope_dim, m.num_kv_heads, m.head_dim);
    let v = &m.video;
    let inputs: Vec<InputDims> = match kind {
        GraphKind::Vision => {
            let frame = |f| vec![f, 3, v.frame_height, v.frame_width];
            vec![(
                names::VISION_IN_PIXELS,
                frame(1),
                frame(v.num_frames),
                frame(v.num_frames * b),
            )]
        }
        GraphKind::Embed | GraphKind::Rope => {
            let name = if kind == GraphKind::Embed {
                names::EMBED_IN_IDS
            } else {
                names::ROPE_IN_POSITIONS
            };
            vec![(name, vec![1, 1], vec![1, s], vec![b, s])]
        }
        GraphKind::Layer => {
            let rows = |w| (vec![1, 1, w], vec![1, s, w], vec![b, s, w]);
            let past = (
                vec![1, hkv, 0, dh],
                vec![1, hkv, 0, dh],
                vec![b, hkv, s - 1, dh],
            );
            let mask = (vec![1, 1, 1, 1], vec![1, 1, s, s], vec![b, 1, s, s]);
            let dims = [rows(d), rows(r), rows(r), past.clone(), past, mask];
            names::LAYER_INPUTS
                .iter()
                .zip(dims)
                .map(|(n, (lo, opt, hi))| (*n, lo, opt, hi))
                .collect()
        }
        GraphKind::Head => vec![(
            names::HEAD_IN_HIDDEN,
            vec![1, 1, d],
            vec![1, 1, d],
            vec![b, s, d],
        )],
    };
    let join = |pick: &dyn Fn(&InputDims) -> Vec<usize>| {
        inputs
            .iter()
            .map(|i| {
                let dims: Vec<String> = pick(i).iter().map(usize::to_string).collect();
                format!("{}:{}", i.0, dims.join("x"))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    ShapeProfile {
        min: join(&|i| i.1.clone()),
        opt: join(&|i| i.2.clone()),
        max: join(&|i| i.3.clone()),
    }
}

/// `blake3:<hex>` over every file of the package (graphs and their external weights included),
/// as run folders record it: any edited file changes it.
pub fn package_digest(dir: &Path) -> Result<String> {
    let mut d = InputDigests::new();
    d.add_package(dir)?;
    let text = serde_json::to_string(&d).expect("digests serialise");
    Ok(format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()))
}

/// `<cache root>/<package digest[..16]>-<profile digest[..16]>/`: the profile digest covers the
/// graph kind, the three shape strings and the precision, the things an engine is built for.
pub fn engine_cache_dir(
    cache_root: &Path,
    package_digest: &str,
    kind: GraphKind,
    profile: &ShapeProfile,
    fp16: bool,
) -> PathBuf {
    let key = format!(
        "{kind}\nmin={}\nopt={}\nmax={}\nfp16={fp16}\n",
        profile.min, profile.opt, profile.max
    );
    let profile_hex = blake3::hash(key.as_bytes()).to_hex();
    let pkg = package_digest
        .strip_prefix("blake3:")
        .unwrap_or(package_digest);
    let pkg: String = pkg.chars().take(16).collect();
    cache_root.join(format!("{pkg}-{}", &profile_hex[..16]))
}

/// Where engines are cached when no `--trt-cache` is given: `$XDG_CACHE_HOME/vidflow/tensorrt`,
/// else `$HOME/.cache/vidflow/tensorrt`, else `.vidflow-cache/tensorrt` in the working folder.
pub fn default_cache_root() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from(".vidflow-cache"));
    base.join("vidflow").join("tensorrt")
}

/// The options every graph of kind `kind` is opened with: `opts` itself unless the device is
/// TensorRT and no profile was typed, in which case the profile and the engine-cache folder are
/// derived from the package (digest computed once by the caller).
pub fn options_for_graph(
    opts: &super::RuntimeOptions,
    kind: GraphKind,
    manifest: &Manifest,
    package_digest: Option<&str>,
) -> super::RuntimeOptions {
    let t = &opts.tensorrt;
    match (opts.device, package_digest) {
        (super::Device::TensorRt, Some(digest)) if t.profile_min_shapes.is_none() => {
            let limits = t.limits.unwrap_or(DEFAULT_LIMITS);
            let root = t.engine_cache.clone().unwrap_or_else(default_cache_root);
            let mut derived = tensorrt_options_for(kind, manifest, &limits, digest, &root);
            derived.fp16 |= t.fp16;
            super::RuntimeOptions {
                tensorrt: derived,
                ..opts.clone()
            }
        }
        _ => opts.clone(),
    }
}

/// Limits used when none are given: batches of up to 8, 512 text tokens.
pub const DEFAULT_LIMITS: ProfileLimits = ProfileLimits {
    max_batch: 8,
    max_text: 512,
};

/// The TensorRT options for one graph kind of a package: its profile, fp16 when the package's
/// dtype is float16, and its own engine-cache folder under `cache_root`.
pub fn tensorrt_options_for(
    kind: GraphKind,
    manifest: &Manifest,
    limits: &ProfileLimits,
    package_digest: &str,
    cache_root: &Path,
) -> TensorRtOptions {
    let profile = shape_profile(kind, manifest, limits);
    let fp16 = manifest.dtype == Dtype::Float16;
    TensorRtOptions {
        fp16,
        engine_cache: Some(engine_cache_dir(
            cache_root,
            package_digest,
            kind,
            &profile,
            fp16,
        )),
        profile_min_shapes: Some(profile.min),
        profile_opt_shapes: Some(profile.opt),
        profile_max_shapes: Some(profile.max),
        limits: Some(*limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small model: D 64, 4 heads (2 kv) of 16, rope 16, 2 frames of 32x32 with 2x3 tokens each.
    fn manifest() -> Manifest {
        serde_yaml::from_str(
            r#"
format_version: 1
name: hand
family: llama
dtype: float32
num_layers: 1
hidden_size: 64
num_heads: 4
num_kv_heads: 2
head_dim: 16
rope_dim: 16
vocab_size: 100
intermediate_size: 128
max_positions: 40
graphs:
  vision: v.onnx
  embed: e.onnx
  rope: r.onnx
  layers: [l0.onnx]
  layers_attn: [l0a.onnx]
  head_norm: hn.onnx
  head_lm: hl.onnx
  head_embed: he.onnx
tokenizer: tokenizer.json
video:
  num_frames: 2
  frame_height: 32
  frame_width: 32
  resize_mode: stretch
  resize_filter: bilinear
  rescale_factor: 0.5
  image_mean: [0, 0, 0]
  image_std: [1, 1, 1]
  grid_h: 2
  grid_w: 3
  sampling: segment_middle
prompt:
  system: s
  user_prefix: u
  video_placeholder: <video>
  after_video: a
  question_prefix: q
  options_header: o
  option_format: ({label}) {text}
  option_separator: ' '
  option_labels: [A, B]
  instruction: i
  assistant_prefix: x
  answer_prefix: y
special_tokens:
  video_token_id: 3
  bos_token_id: null
  eos_token_id: null
  pad_token_id: null
"#,
        )
        .unwrap()
    }

    const LIMITS: ProfileLimits = ProfileLimits {
        max_batch: 4,
        max_text: 20,
    };

    #[test]
    fn the_longest_sequence_is_video_plus_text_capped_by_max_positions() {
        let m = manifest();
        assert_eq!(max_sequence(&m, &LIMITS), 12 + 20);
        let long = ProfileLimits {
            max_text: 1000,
            ..LIMITS
        };
        assert_eq!(max_sequence(&m, &long), 40);
    }

    #[test]
    fn profiles_of_every_graph_kind() {
        let m = manifest();
        let p = |k| shape_profile(k, &m, &LIMITS);
        assert_eq!(
            p(GraphKind::Vision),
            ShapeProfile {
                min: "pixel_values:1x3x32x32".into(),
                opt: "pixel_values:2x3x32x32".into(),
                max: "pixel_values:8x3x32x32".into(),
            }
        );
        assert_eq!(
            p(GraphKind::Embed),
            ShapeProfile {
                min: "input_ids:1x1".into(),
                opt: "input_ids:1x32".into(),
                max: "input_ids:4x32".into(),
            }
        );
        assert_eq!(
            p(GraphKind::Rope),
            ShapeProfile {
                min: "position_ids:1x1".into(),
                opt: "position_ids:1x32".into(),
                max: "position_ids:4x32".into(),
            }
        );
        assert_eq!(
            p(GraphKind::Layer),
            ShapeProfile {
                min: "hidden:1x1x64,cos:1x1x16,sin:1x1x16,past_key:1x2x0x16,\
                      past_value:1x2x0x16,mask:1x1x1x1"
                    .into(),
                opt: "hidden:1x32x64,cos:1x32x16,sin:1x32x16,past_key:1x2x0x16,\
                      past_value:1x2x0x16,mask:1x1x32x32"
                    .into(),
                max: "hidden:4x32x64,cos:4x32x16,sin:4x32x16,past_key:4x2x31x16,\
                      past_value:4x2x31x16,mask:4x1x32x32"
                    .into(),
            }
        );
        assert_eq!(
            p(GraphKind::Head),
            ShapeProfile {
                min: "hidden:1x1x64".into(),
                opt: "hidden:1x1x64".into(),
                max: "hidden:4x32x64".into(),
            }
        );
    }

    #[test]
    fn options_carry_the_profile_and_a_folder_keyed_by_package_and_profile() {
        let m = manifest();
        let root = Path::new("cache");
        let digest = "blake3:0123456789abcdef0123456789abcdef";
        let o = tensorrt_options_for(GraphKind::Head, &m, &LIMITS, digest, root);
        assert!(!o.fp16);
        assert_eq!(o.profile_min_shapes.as_deref(), Some("hidden:1x1x64"));
        assert_eq!(o.profile_opt_shapes.as_deref(), Some("hidden:1x1x64"));
        assert_eq!(o.profile_max_shapes.as_deref(), Some("hidden:4x32x64"));
        let dir = o.engine_cache.unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(dir.parent(), Some(root));
        assert!(name.starts_with("0123456789abcdef-"), "{name}");
        assert_eq!(name.len(), 16 + 1 + 16);
        let key = "head\nmin=hidden:1x1x64\nopt=hidden:1x1x64\nmax=hidden:4x32x64\nfp16=false\n";
        assert_eq!(&name[17..], &blake3::hash(key.as_bytes()).to_hex()[..16]);

        // Another package, another profile, another precision: each a different folder.
        let other_pkg = tensorrt_options_for(GraphKind::Head, &m, &LIMITS, "blake3:ff", root);
        assert_ne!(other_pkg.engine_cache.unwrap(), dir);
        let bigger = ProfileLimits {
            max_batch: 8,
            ..LIMITS
        };
        let other_profile = tensorrt_options_for(GraphKind::Head, &m, &bigger, digest, root);
        assert_ne!(other_profile.engine_cache.unwrap(), dir);
        let mut half = m.clone();
        half.dtype = Dtype::Float16;
        let fp16 = tensorrt_options_for(GraphKind::Head, &half, &LIMITS, digest, root);
        assert!(fp16.fp16);
        assert_ne!(fp16.engine_cache.unwrap(), dir);
    }

    #[test]
    fn the_package_digest_follows_the_graph_bytes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.yaml"), "x").unwrap();
        std::fs::write(d.path().join("v.onnx"), [1u8, 2]).unwrap();
        let a = package_digest(d.path()).unwrap();
        assert!(a.starts_with("blake3:") && a.len() == 7 + 64, "{a}");
        assert_eq!(package_digest(d.path()).unwrap(), a);
        std::fs::write(d.path().join("v.onnx"), [1u8, 3]).unwrap();
        assert_ne!(package_digest(d.path()).unwrap(), a);
    }
}
