//! Flows: what one knockout curve blocks. "A ↛ B" means queries in group B cannot read keys in
//! group A (design.md §3). A flow is one or more such (source, target) pairs blocked together;
//! the reference's named targets expand to several flows (one curve each).
//!
//! Custom flows come from YAML (a file given with `--flows`, e.g. `configs/knockout/*.yaml`):
//!
//! ```yaml
//! targets: [cross-frame, vql-to-ql]   # optional: named targets, as --targets
//! window: 9                           # optional: as --window (the command line wins)
//! window_style: center                # optional: as --window-style
//! layers: 0-32                        # optional: as --layers (0-based, end exclusive)
//! flows:                              # optional: custom flows
//!   - source: video                   # a group name or a list of names (their union)
//!     target: template
//!   - name: early frames ↛ last       # optional label (default "<source> ↛ <target>")
//!     block:                          # several pairs blocked together in one knockout
//!       - {source: ["frame[0]", "frame[1]"], target: last}
//!       - {source: "frame[0]", target: "frame[1]"}
//! ```
//!
//! Group names are those of [`crate::prompt::PromptLayout::group`]. Inside YAML's `[...]` and
//! `{...}` forms, indexed names must be quoted (`"frame[0]"`): brackets are YAML syntax there.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::window::{LayerRange, WindowStyle};
use crate::error::{Error, Result};

/// One blocked pair: queries in any of `targets` cannot read keys in any of `sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub sources: Vec<String>,
    pub targets: Vec<String>,
}

impl Block {
    pub fn new(source: &str, target: &str) -> Block {
        Block {
            sources: vec![source.to_string()],
            targets: vec![target.to_string()],
        }
    }
}

/// One knockout curve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Label in records, the summary and plot legends, e.g. `video ↛ last`.
    pub name: String,
    /// The named target the flow belongs to, or `custom`; plots draw one figure per target.
    pub target: String,
    pub blocks: Vec<Block>,
}

/// The flows' group for flows read from YAML.
pub const CUSTOM_TARGET: &str = "custom";

fn arrow(sources: &[String], targets: &[String]) -> String {
    format!("{} ↛ {}", sources.join("+"), targets.join("+"))
}

/// The four targets of the published reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedTarget {
    /// frame[j] ↛ frame[i] for all j < i, as one curve.
    CrossFrame,
    /// video ↛ question, video ↛ last, question ↛ last, last ↛ last.
    VqlToQl,
    /// question.text ↛ last, option.true ↛ last, option.false ↛ last.
    QuestionAndOptionsToLast,
    /// video ↛ question.text, question.text ↛ option.true, video ↛ option.true.
    VqToTrueOpt,
}

impl NamedTarget {
    pub const ALL: [NamedTarget; 4] = [
        NamedTarget::CrossFrame,
        NamedTarget::VqlToQl,
        NamedTarget::QuestionAndOptionsToLast,
        NamedTarget::VqToTrueOpt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NamedTarget::CrossFrame => "cross-frame",
            NamedTarget::VqlToQl => "vql-to-ql",
            NamedTarget::QuestionAndOptionsToLast => "question-and-options-to-last",
            NamedTarget::VqToTrueOpt => "vq-to-true-opt",
        }
    }

    /// The target's flows for a model with `num_frames` frames per video.
    pub fn flows(self, num_frames: usize) -> Vec<Flow> {
        let simple = |pairs: &[(&str, &str)]| -> Vec<Flow> {
            pairs
                .iter()
                .map(|&(s, t)| Flow {
                    name: format!("{s} ↛ {t}"),
                    target: self.name().to_string(),
                    blocks: vec![Block::new(s, t)],
                })
                .collect()
        };
        match self {
            NamedTarget::CrossFrame => vec![Flow {
                name: "cross-frame".into(),
                target: self.name().into(),
                blocks: (1..num_frames)
                    .map(|i| Block {
                        sources: (0..i).map(|j| format!("frame[{j}]")).collect(),
                        targets: vec![format!("frame[{i}]")],
                    })
                    .collect(),
            }],
            NamedTarget::VqlToQl => simple(&[
                ("video", "question"),
                ("video", "last"),
                ("question", "last"),
                ("last", "last"),
            ]),
            NamedTarget::QuestionAndOptionsToLast => simple(&[
                ("question.text", "last"),
                ("option.true", "last"),
                ("option.false", "last"),
            ]),
            NamedTarget::VqToTrueOpt => simple(&[
                ("video", "question.text"),
                ("question.text", "option.true"),
                ("video", "option.true"),
            ]),
        }
    }
}

impl fmt::Display for NamedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NamedTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<NamedTarget> {
        NamedTarget::ALL
            .into_iter()
            .find(|t| t.name() == s.trim())
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown knockout target {s:?}; expected one of cross-frame, vql-to-ql, \
                     question-and-options-to-last, vq-to-true-opt (or custom flows in YAML)"
                ))
            })
    }
}

/// Parses a comma-separated target list, e.g. `cross-frame,vql-to-ql`.
pub fn parse_targets(list: &str) -> Result<Vec<NamedTarget>> {
    list.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Checks the form of a group name (whether `frame[i]` / `option[j]` exist depends on the sample).
pub fn check_group_name(name: &str) -> Result<()> {
    const FIXED: [&str; 10] = [
        "system",
        "video",
        "video.sep",
        "question",
        "question.text",
        "option.true",
        "option.false",
        "template",
        "last",
        "frame[0]",
    ];
    let indexed = ["frame[", "option["].iter().any(|p| {
        name.strip_prefix(p)
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    });
    if indexed || FIXED.contains(&name) {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "unknown token group {name:?}; expected system, video, video.sep, frame[i], \
             question, question.text, option[j], option.true, option.false, template or last"
        )))
    }
}

/// Every flow of a run, in order, with unique names.
pub fn collect_flows(
    targets: &[NamedTarget],
    custom: &[Flow],
    num_frames: usize,
) -> Result<Vec<Flow>> {
    let mut flows: Vec<Flow> = targets.iter().flat_map(|t| t.flows(num_frames)).collect();
    flows.extend(custom.iter().cloned());
    for (i, f) in flows.iter().enumerate() {
        if flows[..i].iter().any(|g| g.name == f.name) {
            return Err(Error::Input(format!(
                "flow {:?} is asked for twice (targets and custom flows must not repeat a flow)",
                f.name
            )));
        }
    }
    if flows.is_empty() {
        return Err(Error::Input(
            "no flows to knock out: give --targets and/or --flows".into(),
        ));
    }
    Ok(flows)
}

// ---- YAML ------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(untagged)]
enum GroupList {
    One(String),
    Many(Vec<String>),
}

impl GroupList {
    fn into_vec(self) -> Vec<String> {
        match self {
            GroupList::One(s) => vec![s],
            GroupList::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairEntry {
    source: GroupList,
    target: GroupList,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowEntry {
    name: Option<String>,
    source: Option<GroupList>,
    target: Option<GroupList>,
    block: Option<Vec<PairEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsYaml {
    #[serde(default)]
    targets: Vec<String>,
    window: Option<usize>,
    window_style: Option<String>,
    layers: Option<String>,
    #[serde(default)]
    flows: Vec<FlowEntry>,
}

/// A flows / preset file: named targets, custom flows and optional sweep settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowsFile {
    pub targets: Vec<NamedTarget>,
    pub flows: Vec<Flow>,
    pub window: Option<usize>,
    pub window_style: Option<WindowStyle>,
    pub layers: Option<LayerRange>,
}

/// Reads a flows file; errors name the file, the flow and the field.
pub fn load_flows_file(path: &Path) -> Result<FlowsFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_flows_yaml(&text).map_err(|msg| Error::Data {
        path: path.to_path_buf(),
        msg,
    })
}

/// Parses the text of a flows file (see the module docs); errors name the flow and the field.
pub fn parse_flows_yaml(text: &str) -> std::result::Result<FlowsFile, String> {
    let y: FlowsYaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let targets = y
        .targets
        .iter()
        .map(|t| {
            t.parse::<NamedTarget>()
                .map_err(|e| format!("targets: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let window_style = y
        .window_style
        .map(|s| {
            s.parse::<WindowStyle>()
                .map_err(|e| format!("window_style: {e}"))
        })
        .transpose()?;
    let layers = y
        .layers
        .map(|s| s.parse::<LayerRange>().map_err(|e| format!("layers: {e}")))
        .transpose()?;
    if y.window == Some(0) {
        return Err("window: must be at least 1".into());
    }
    let mut flows = Vec::new();
    for (i, entry) in y.flows.into_iter().enumerate() {
        let what = format!("flows[{i}]");
        let pairs: Vec<(Vec<String>, Vec<String>)> = match (entry.source, entry.target, entry.block)
        {
            (Some(s), Some(t), None) => vec![(s.into_vec(), t.into_vec())],
            (None, None, Some(b)) if !b.is_empty() => b
                .into_iter()
                .map(|p| (p.source.into_vec(), p.target.into_vec()))
                .collect(),
            _ => {
                return Err(format!(
                    "{what}: give either `source` and `target`, or a non-empty `block` list of \
                     {{source, target}} pairs"
                ))
            }
        };
        for (sources, targets) in &pairs {
            for (field, names) in [("source", sources), ("target", targets)] {
                if names.is_empty() {
                    return Err(format!("{what}: `{field}` names no group"));
                }
                for n in names {
                    check_group_name(n).map_err(|e| format!("{what}: {field}: {e}"))?;
                }
            }
        }
        let name = entry.name.unwrap_or_else(|| {
            pairs
                .iter()
                .map(|(s, t)| arrow(s, t))
                .collect::<Vec<_>>()
                .join(", ")
        });
        flows.push(Flow {
            name,
            target: CUSTOM_TARGET.into(),
            blocks: pairs
                .into_iter()
                .map(|(sources, targets)| Block { sources, targets })
                .collect(),
        });
    }
    Ok(FlowsFile {
        targets,
        flows,
        window: y.window,
        window_style,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_targets_expand_like_the_reference() {
        let cf = NamedTarget::CrossFrame.flows(3);
        assert_eq!(cf.len(), 1);
        assert_eq!(
            cf[0].blocks,
            vec![
                Block {
                    sources: vec!["frame[0]".into()],
                    targets: vec!["frame[1]".into()]
                },
                Block {
                    sources: vec!["frame[0]".into(), "frame[1]".into()],
                    targets: vec!["frame[2]".into()]
                },
            ]
        );
        let names: Vec<String> = NamedTarget::VqlToQl
            .flows(3)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "video ↛ question",
                "video ↛ last",
                "question ↛ last",
                "last ↛ last"
            ]
        );
        let q = NamedTarget::QuestionAndOptionsToLast.flows(3);
        assert_eq!(q[1].blocks, vec![Block::new("option.true", "last")]);
        let v = NamedTarget::VqToTrueOpt.flows(3);
        assert_eq!(
            v[1].blocks,
            vec![Block::new("question.text", "option.true")]
        );
    }

    #[test]
    fn yaml_flows_with_short_and_block_forms() {
        let f = parse_flows_yaml(
            "targets: [cross-frame]\nwindow: 5\nwindow_style: top_down\nlayers: 2-4\nflows:\n  \
             - {source: video, target: template}\n  - name: mine\n    block:\n      \
             - {source: [\"frame[0]\", \"frame[1]\"], target: last}\n",
        )
        .unwrap();
        assert_eq!(f.targets, vec![NamedTarget::CrossFrame]);
        assert_eq!(f.window, Some(5));
        assert_eq!(f.window_style, Some(WindowStyle::TopDown));
        assert_eq!(f.layers, Some(LayerRange { start: 2, end: 4 }));
        assert_eq!(f.flows[0].name, "video ↛ template");
        assert_eq!(f.flows[0].target, CUSTOM_TARGET);
        assert_eq!(f.flows[1].name, "mine");
        assert_eq!(f.flows[1].blocks[0].sources, vec!["frame[0]", "frame[1]"]);
    }

    #[test]
    fn yaml_errors_name_the_flow_and_field() {
        let e = parse_flows_yaml("flows:\n  - {source: vidoe, target: last}\n").unwrap_err();
        assert!(e.contains("flows[0]: source") && e.contains("vidoe"), "{e}");
        let e = parse_flows_yaml("flows:\n  - {source: video}\n").unwrap_err();
        assert!(e.contains("flows[0]"), "{e}");
        let e = parse_flows_yaml("targets: [cross_frame]\n").unwrap_err();
        assert!(e.contains("targets") && e.contains("cross_frame"), "{e}");
        assert!(parse_flows_yaml("flows: []\nextra: 1\n").is_err());
    }

    #[test]
    fn duplicate_flows_are_an_error() {
        let custom = parse_flows_yaml("flows:\n  - {source: video, target: last}\n").unwrap();
        let e = collect_flows(&[NamedTarget::VqlToQl], &custom.flows, 4).unwrap_err();
        assert!(e.to_string().contains("video ↛ last"), "{e}");
        assert!(collect_flows(&[], &[], 4).is_err());
    }

    #[test]
    fn group_names() {
        for ok in ["video", "frame[12]", "option[0]", "option.true", "last"] {
            check_group_name(ok).unwrap();
        }
        for bad in ["frame[]", "frame[x]", "options", "Video"] {
            assert!(check_group_name(bad).is_err(), "{bad}");
        }
    }
}
