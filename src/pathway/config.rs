//! Pathway configs (YAML): per (source group -> target group) rule, the layers where that edge is
//! blocked. The schema is documented in docs/pathways.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

use super::groups::{group_name_list, is_group_name, SequenceGroups};
use super::layers::{format_layer_set, parse_layer_set, scale_layer_set};
use super::random::RandomBlocking;
use super::schedule::MaskSchedule;
use crate::error::{Error, Result};
use crate::mask::EdgeMask;

/// (sources, targets) position sets a rule blocks: one pair, or one per frame pair for cross-frame.
type SourceTargetPairs<'a> = Vec<(&'a [usize], &'a [usize])>;

/// The name that stands for every edge frame[j] -> frame[i], j < i.
pub const CROSS_FRAME: &str = "cross-frame";

/// The most layers a config may be written for: far more than any model has (the largest have
/// about 200), and each rule's layer set is allocated at this size before anything else is read.
pub const MAX_NUM_LAYERS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    description: Option<String>,
    num_layers: usize,
    exit_layer: Option<usize>,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    source: String,
    target: String,
    blocked: Option<Value>,
    except: Option<Value>,
}

/// "source ↛ target" in the layers where `blocked` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub source: String,
    pub target: String,
    /// Per 0-based layer: whether the edge is blocked there.
    pub blocked: Vec<bool>,
}

impl Rule {
    pub fn is_cross_frame(&self) -> bool {
        self.source == CROSS_FRAME
    }

    /// `video -> question`, for messages and reports.
    pub fn edge(&self) -> String {
        format!("{} -> {}", self.source, self.target)
    }

    /// The blocked layers in config notation (1-based), e.g. `1-5, 16-32`.
    pub fn blocked_layers(&self) -> String {
        format_layer_set(&self.blocked)
    }
}

/// A parsed pathway config, written for a model of `num_layers` layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathwayConfig {
    pub name: String,
    pub description: Option<String>,
    /// Where the config came from; errors name it.
    pub path: PathBuf,
    pub num_layers: usize,
    /// An early answer (1-based): the answer is read after this layer and later layers never run.
    pub exit_layer: Option<usize>,
    pub rules: Vec<Rule>,
}

impl PathwayConfig {
    pub fn from_file(path: &Path) -> Result<PathwayConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        PathwayConfig::from_yaml(&text, path)
    }

    /// Parses YAML text; `path` names the source in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<PathwayConfig> {
        let fail = |msg: String| Error::Data {
            path: path.to_path_buf(),
            msg,
        };
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| fail(format!("not a pathway config: {e}")))?;
        if raw.num_layers == 0 {
            return Err(fail("num_layers must be positive".into()));
        }
        if raw.num_layers > MAX_NUM_LAYERS {
            return Err(fail(format!(
                "num_layers {} is more than any model has (at most {MAX_NUM_LAYERS})",
                raw.num_layers
            )));
        }
        if let Some(k) = raw.exit_layer {
            if k == 0 || k > raw.num_layers {
                return Err(fail(format!(
                    "exit_layer {k}: expected a layer from 1 to num_layers ({})",
                    raw.num_layers
                )));
            }
        }
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let at = |msg: String| {
                    fail(format!("rule {} ({} -> {}): {msg}", i + 1, r.source, r.target))
                };
                for name in [&r.source, &r.target] {
                    if !is_group_name(name) {
                        return Err(at(format!(
                            "unknown group {name:?}; expected one of {}",
                            group_name_list()
                        )));
                    }
                }
                if (r.source == CROSS_FRAME) != (r.target == CROSS_FRAME) {
                    return Err(at(format!(
                        "`{CROSS_FRAME}` names the edges frame[j] -> frame[i] for j < i; write it as \
                         both source and target"
                    )));
                }
                let blocked = match (&r.blocked, &r.except) {
                    (Some(b), None) => parse_layer_set(b, raw.num_layers)
                        .map_err(|m| at(format!("blocked: {m}")))?,
                    (None, Some(x)) => parse_layer_set(x, raw.num_layers)
                        .map_err(|m| at(format!("except: {m}")))?
                        .into_iter()
                        .map(|open| !open)
                        .collect(),
                    _ => {
                        return Err(at(
                            "give exactly one of `blocked:` (layers where the edge is blocked) or \
                             `except:` (blocked in every layer but these)"
                                .into(),
                        ))
                    }
                };
                Ok(Rule {
                    source: r.source,
                    target: r.target,
                    blocked,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PathwayConfig {
            name: raw.name.unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            description: raw.description,
            path: path.to_path_buf(),
            num_layers: raw.num_layers,
            exit_layer: raw.exit_layer,
            rules,
        })
    }

    /// The same config mapped onto a model of `num_layers` layers (see
    /// [`super::scale_layer_set`]: each target layer follows the source layer holding its centre).
    pub fn scaled_to(&self, num_layers: usize) -> PathwayConfig {
        if num_layers == self.num_layers {
            return self.clone();
        }
        PathwayConfig {
            name: format!(
                "{} (scaled {} -> {num_layers} layers)",
                self.name, self.num_layers
            ),
            description: self.description.clone(),
            path: self.path.clone(),
            num_layers,
            exit_layer: self.exit_layer.map(|k| {
                let run: Vec<bool> = (0..self.num_layers).map(|l| l < k).collect();
                scale_layer_set(&run, num_layers)
                    .iter()
                    .filter(|&&r| r)
                    .count()
                    .max(1)
            }),
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    blocked: scale_layer_set(&r.blocked, num_layers),
                    ..r.clone()
                })
                .collect(),
        }
    }

    /// One mask per layer for a sequence with these groups, on a model of `num_layers` layers.
    pub fn resolve(&self, groups: &SequenceGroups, num_layers: usize) -> Result<MaskSchedule> {
        let fail = |msg: String| Error::Data {
            path: self.path.clone(),
            msg,
        };
        if num_layers != self.num_layers {
            return Err(fail(format!(
                "the config is written for {} layers (num_layers), the model has {num_layers}; \
                 scale it (`--scale`) or write one for {num_layers} layers",
                self.num_layers
            )));
        }
        // Resolve every rule's positions once: the rule and its (sources, targets) pairs.
        let mut resolved: Vec<(&Rule, SourceTargetPairs<'_>)> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let pairs = if r.is_cross_frame() {
                let f = groups.frames();
                (0..f.len())
                    .flat_map(|t| (0..t).map(move |s| (f[s].as_slice(), f[t].as_slice())))
                    .collect()
            } else {
                let get = |name: &str| {
                    groups
                        .group(name)
                        .map_err(|e| fail(format!("rule {} ({}): {e}", i + 1, r.edge())))
                };
                vec![(get(&r.source)?, get(&r.target)?)]
            };
            resolved.push((r, pairs));
        }
        // Layers with the same set of active rules share one mask, built once from a causal
        // template: a 30-layer config needs about 5 masks instead of 30.
        let causal = EdgeMask::full_causal(1, groups.seq_len());
        let mut signatures: HashMap<Vec<bool>, usize> = HashMap::new();
        let (mut masks, mut open) = (Vec::new(), Vec::new());
        let layer_mask = (0..num_layers)
            .map(|l| {
                let active: Vec<bool> = resolved.iter().map(|(r, _)| r.blocked[l]).collect();
                *signatures.entry(active).or_insert_with_key(|active| {
                    let mut m = causal.clone();
                    for ((_, pairs), _) in resolved.iter().zip(active).filter(|(_, &on)| on) {
                        for (sources, targets) in pairs {
                            m.block(None, sources, targets).expect("batch 1");
                        }
                    }
                    open.push(m.open_edges()[0]);
                    masks.push(m);
                    masks.len() - 1
                })
            })
            .collect();
        let schedule = MaskSchedule::from_shared(groups.seq_len(), masks, layer_mask, &open);
        match self.exit_layer {
            Some(k) => schedule.exit_after(k),
            None => Ok(schedule),
        }
    }
}

/// What to keep open: a pathway config, or random blocking as its control.
#[derive(Debug, Clone, PartialEq)]
pub enum Pathways {
    Config(PathwayConfig),
    Random(RandomBlocking),
}

impl Pathways {
    /// `random:RATIO[:SEED]` (seed 0 by default), or the path of a YAML config.
    pub fn parse(arg: &str) -> Result<Pathways> {
        if let Some(rest) = arg.strip_prefix("random:") {
            let (ratio, seed) = match rest.split_once(':') {
                Some((r, s)) => (r, Some(s)),
                None => (rest, None),
            };
            let ratio: f64 = ratio.parse().map_err(|_| {
                Error::Input(format!(
                    "{arg:?}: expected random:RATIO[:SEED] with RATIO in [0, 1], e.g. random:0.5:7"
                ))
            })?;
            let seed = match seed {
                None => 0,
                Some(s) => s.parse::<u64>().map_err(|_| {
                    Error::Input(format!("{arg:?}: the seed {s:?} is not a whole number"))
                })?,
            };
            return Ok(Pathways::Random(RandomBlocking::new(ratio, seed)?));
        }
        if arg.trim().is_empty() {
            return Err(Error::Input(
                "no pathway config named: expected the path of a YAML config (pathways:FILE) or \
                 random:RATIO[:SEED]"
                    .into(),
            ));
        }
        PathwayConfig::from_file(Path::new(arg)).map(Pathways::Config)
    }

    /// Maps a config onto `num_layers` layers; random blocking needs no scaling.
    pub fn scaled_to(&self, num_layers: usize) -> Pathways {
        match self {
            Pathways::Config(c) => Pathways::Config(c.scaled_to(num_layers)),
            r => r.clone(),
        }
    }

    pub fn resolve(&self, groups: &SequenceGroups, num_layers: usize) -> Result<MaskSchedule> {
        match self {
            Pathways::Config(c) => c.resolve(groups, num_layers),
            Pathways::Random(r) => Ok(r.schedule(groups, num_layers)),
        }
    }

    /// A short name for reports.
    pub fn describe(&self) -> String {
        match self {
            Pathways::Config(c) => c.name.clone(),
            Pathways::Random(r) => format!("random:{}:{}", r.ratio, r.seed),
        }
    }
}
