//! Model packages (design.md §1): the manifest, the graph I/O contract, validation and sessions.

pub mod graph;
pub mod manifest;
pub mod names;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use graph::Graph;
pub use manifest::Manifest;
pub use validate::PromptCheck;

use crate::error::{Error, Result};
use crate::prompt::PromptBuilder;
use crate::runtime::trt_profile::{self, GraphKind};
use crate::runtime::{DataPath, Device, RuntimeOptions};

/// Which projection turns a hidden state into logits (the logit-lens modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Projection {
    /// Final norm, then the LM head: what the model itself does at the last layer.
    #[default]
    NormHead,
    /// The LM head alone, without the final norm.
    Head,
    /// The input-embedding matrix (the published reference's lens).
    Embed,
}

impl std::str::FromStr for Projection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Projection> {
        match s {
            "norm+head" | "norm-head" => Ok(Projection::NormHead),
            "head" => Ok(Projection::Head),
            "embed" => Ok(Projection::Embed),
            other => Err(Error::Input(format!(
                "unknown projection `{other}`: expected norm+head, head or embed"
            ))),
        }
    }
}

/// An opened, validated model package.
pub struct Package {
    dir: PathBuf,
    pub manifest: Manifest,
    /// Options of the layer graphs (the attention-weights variants open lazily with them).
    opts: RuntimeOptions,
    pub vision: Graph,
    pub embed: Graph,
    pub rope: Graph,
    pub layers: Vec<Graph>,
    layers_attn: Vec<OnceLock<Graph>>,
    pub head_norm: Graph,
    pub head_lm: Graph,
    pub head_embed: Graph,
    /// Where tensors live and what crosses between host and device.
    data: DataPath,
    /// Computed video prefixes, reused across questions (engine::prefix).
    prefixes: crate::engine::PrefixCache,
    /// The prompt builder of the deep check (its tokenizer loaded once, at open).
    prompt: PromptBuilder,
    /// What the deep check at open verified.
    pub prompt_check: PromptCheck,
}

impl Package {
    /// Checks the manifest, runs the deep check (the tokenizer loads and the prompt template
    /// renders and tokenizes: [`validate::prompt`]), then opens every graph (the attention-weights
    /// variants lazily) and checks each one against the manifest.
    pub fn open(dir: &Path, opts: &RuntimeOptions) -> Result<Package> {
        let manifest_path = dir.join("model.yaml");
        if !dir.is_dir() {
            let (kind, msg) = if dir.exists() {
                (
                    std::io::ErrorKind::NotADirectory,
                    "not a directory: a model package is the folder holding model.yaml",
                )
            } else {
                (
                    std::io::ErrorKind::NotFound,
                    "model package directory not found",
                )
            };
            return Err(Error::io(dir, std::io::Error::new(kind, msg)));
        }
        let manifest = Manifest::from_file(&manifest_path)?;
        if manifest.dtype == manifest::Dtype::Bfloat16 && opts.device == Device::Cpu {
            return Err(Error::Manifest {
                path: manifest_path,
                msg: "dtype bfloat16: ONNX Runtime's CPU kernels have no bfloat16 matrix product; \
                      run this package with --device cuda, or export it with --dtype float32 \
                      (or float16) for the CPU"
                    .into(),
            });
        }
        let tokenizer = dir.join(&manifest.tokenizer);
        if !tokenizer.is_file() {
            return Err(Error::Manifest {
                path: manifest_path,
                msg: format!("tokenizer file {} does not exist", tokenizer.display()),
            });
        }
        let (prompt, prompt_check) = validate::prompt(&manifest, &manifest_path, &tokenizer)?;
        // TensorRT without typed profiles: each graph kind gets a profile derived from the
        // manifest and an engine cache keyed by the package's content.
        let digest = match (opts.device, &opts.tensorrt.profile_min_shapes) {
            (Device::TensorRt, None) => Some(trt_profile::package_digest(dir)?),
            _ => None,
        };
        let kind_opts =
            |kind| trt_profile::options_for_graph(opts, kind, &manifest, digest.as_deref());
        let open = |file: &str, kind, expected| -> Result<Graph> {
            let g = Graph::open(&dir.join(file), &kind_opts(kind))?;
            validate::check(&g, expected)?;
            Ok(g)
        };
        let m = &manifest;
        let vision = open(&m.graphs.vision, GraphKind::Vision, validate::vision(m))?;
        let embed = open(&m.graphs.embed, GraphKind::Embed, validate::embed(m))?;
        let rope = open(&m.graphs.rope, GraphKind::Rope, validate::rope(m))?;
        let layers = m
            .graphs
            .layers
            .iter()
            .map(|f| open(f, GraphKind::Layer, validate::layer(m, false)))
            .collect::<Result<Vec<_>>>()?;
        for f in &m.graphs.layers_attn {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(Error::Manifest {
                    path: manifest_path.clone(),
                    msg: format!("graphs.layers_attn: {} does not exist", p.display()),
                });
            }
        }
        let head_norm = open(&m.graphs.head_norm, GraphKind::Head, validate::head(m))?;
        let head_lm = open(&m.graphs.head_lm, GraphKind::Head, validate::head(m))?;
        let head_embed = open(&m.graphs.head_embed, GraphKind::Head, validate::head(m))?;
        let layer_opts = kind_opts(GraphKind::Layer);
        let layers_attn = (0..m.num_layers).map(|_| OnceLock::new()).collect();
        Ok(Package {
            dir: dir.to_path_buf(),
            opts: layer_opts,
            vision,
            embed,
            rope,
            layers,
            layers_attn,
            head_norm,
            head_lm,
            head_embed,
            data: DataPath::new(opts)?,
            prefixes: crate::engine::PrefixCache::new(opts.prefix_cache_bytes),
            prompt,
            prompt_check,
            manifest,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data path of this package's tensors: uploads, downloads, device-side row moves and
    /// the transfer counters.
    pub fn data(&self) -> &DataPath {
        &self.data
    }

    /// The package's cache of computed video prefixes.
    pub fn prefixes(&self) -> &crate::engine::PrefixCache {
        &self.prefixes
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.tokenizer)
    }

    pub fn num_layers(&self) -> usize {
        self.manifest.num_layers
    }

    /// The package's prompt builder, as the deep check at open built and verified it.
    pub fn prompt_builder(&self) -> &PromptBuilder {
        &self.prompt
    }

    /// Refuses a sequence longer than the model takes (see [`Manifest::check_sequence_length`]).
    pub fn check_sequence_length(&self, seq_len: usize) -> Result<()> {
        self.manifest.check_sequence_length(seq_len)
    }

    pub fn head(&self, projection: Projection) -> &Graph {
        match projection {
            Projection::NormHead => &self.head_norm,
            Projection::Head => &self.head_lm,
            Projection::Embed => &self.head_embed,
        }
    }

    /// The attention-weights variant of layer `l`, opened and validated on first use.
    pub fn layer_attn(&self, l: usize) -> Result<&Graph> {
        if let Some(g) = self.layers_attn[l].get() {
            return Ok(g);
        }
        let g = Graph::open(
            &self.dir.join(&self.manifest.graphs.layers_attn[l]),
            &self.opts,
        )?;
        validate::check(&g, validate::layer(&self.manifest, true))?;
        Ok(self.layers_attn[l].get_or_init(|| g))
    }
}
