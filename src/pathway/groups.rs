//! Token groups of one sequence by name, from a real prompt layout or from a shape-only layout
//! (`system=35,frames=8x12x12,question=60,template=20`) when only counting matters.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::prompt::PromptLayout;

/// Group names a pathway rule may use (plus `frame[i]`, `option[j]` and `cross-frame`).
/// `generated` holds the tokens a decoding run appends after the prompt; they also join `last`
/// (see [`SequenceGroups::with_generated`]), and the group is empty in a prompt-only sequence.
pub const GROUP_NAMES: [&str; 11] = [
    "system",
    "video",
    "video.sep",
    "question",
    "question.text",
    "option.true",
    "option.false",
    "template",
    "last",
    "generated",
    "cross-frame",
];

/// Sorted position sets of the groups of design.md §2 over a sequence of `seq_len` positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceGroups {
    seq_len: usize,
    first_video: usize,
    frames: Vec<Vec<usize>>,
    options: Vec<Vec<usize>>,
    named: BTreeMap<String, Vec<usize>>,
}

/// The longest shape-only layout built before the model's own `max_positions` is checked: the
/// spans are lists of positions, so a typed `frames=100000x12x12` must not allocate them.
pub const MAX_LAYOUT_POSITIONS: usize = 1 << 20;

fn span(start: usize, len: usize) -> Vec<usize> {
    (start..start + len).collect()
}

impl SequenceGroups {
    /// The groups of a tokenized prompt.
    pub fn from_prompt(layout: &PromptLayout) -> SequenceGroups {
        let g = &layout.groups;
        let mut named = BTreeMap::new();
        for (name, set) in [
            ("system", &g.system),
            ("video", &g.video),
            ("video.sep", &g.video_sep),
            ("question", &g.question),
            ("question.text", &g.question_text),
            ("template", &g.template),
            ("last", &g.last),
        ] {
            named.insert(name.to_string(), set.clone());
        }
        named.insert("generated".into(), Vec::new());
        if layout.answer.is_some() {
            named.insert("option.true".into(), g.option_true.clone());
            named.insert("option.false".into(), g.option_false.clone());
        }
        SequenceGroups {
            seq_len: layout.seq_len,
            first_video: layout.first_video(),
            frames: g.frames.clone(),
            options: g.options.clone(),
            named,
        }
    }

    /// A shape-only layout: comma-separated `key=value` fields, laid out in the order
    /// system, video, question, template, with the final position taken out of `template` as
    /// `last` (as in a real prompt, where the answer prefix ends the sequence).
    ///
    /// - `system=N`, `question=N`, `template=N` (template >= 1: it holds the last position);
    /// - `frames=FxHxW` (F frames of H·W tokens); when absent, `default_frames` is used;
    /// - `options=KxN` (optional): K options of N tokens each closing the question block; the
    ///   question positions before them are `question.text`;
    /// - `answer=J` (optional, needs `options`): fills `option.true` / `option.false`.
    pub fn from_shape_spec(
        spec: &str,
        default_frames: Option<(usize, usize, usize)>,
    ) -> Result<SequenceGroups> {
        let bad = |msg: String| Error::Input(format!("layout {spec:?}: {msg}"));
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("field {part:?} is not key=value")))?;
            if fields.insert(k.trim(), v.trim()).is_some() {
                return Err(bad(format!("field {k:?} is given twice")));
            }
        }
        const KNOWN: [&str; 6] = [
            "system", "frames", "question", "template", "options", "answer",
        ];
        if let Some(k) = fields.keys().find(|k| !KNOWN.contains(k)) {
            return Err(bad(format!(
                "unknown field {k:?}; expected {}",
                KNOWN.join(", ")
            )));
        }
        let count = |k: &str| -> Result<usize> {
            let v = fields
                .get(k)
                .ok_or_else(|| bad(format!("field {k}=N is missing")))?;
            v.parse::<usize>()
                .map_err(|_| bad(format!("{k}={v} is not a whole number")))
        };
        let dims = |k: &str, v: &str, n: usize| -> Result<Vec<usize>> {
            let parts: Vec<usize> = v
                .split('x')
                .map(|p| p.parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(format!("{k}={v}: expected {n} whole numbers joined by x")))?;
            if parts.len() != n || parts.contains(&0) {
                return Err(bad(format!(
                    "{k}={v}: expected {n} positive whole numbers joined by x"
                )));
            }
            Ok(parts)
        };
        let (num_frames, grid_h, grid_w) = match fields.get("frames") {
            Some(v) => {
                let d = dims("frames", v, 3)?;
                (d[0], d[1], d[2])
            }
            None => default_frames
                .ok_or_else(|| bad("field frames=FxHxW is missing (e.g. frames=8x12x12)".into()))?,
        };
        let system = count("system")?;
        let question = count("question")?;
        let template = count("template")?;
        if template == 0 {
            return Err(bad(
                "template must be at least 1: its final position is `last`".into(),
            ));
        }
        let options = match fields.get("options") {
            Some(v) => {
                let d = dims("options", v, 2)?;
                (d[0], d[1])
            }
            None => (0, 0),
        };
        // Checked: `options=4294967296x4294967296` must not wrap to a small count.
        let option_tokens = options.0.checked_mul(options.1);
        if option_tokens.is_none_or(|n| n >= question) {
            return Err(bad(format!(
                "question={question} must be longer than its {}x{} option tokens",
                options.0, options.1
            )));
        }
        let answer = match fields.get("answer") {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(j) if j < options.0 => Some(j),
                _ => {
                    return Err(bad(format!(
                        "answer={v} must be an option index 0..{} (set options=KxN)",
                        options.0
                    )))
                }
            },
        };

        // Checked: numbers typed on the command line can overflow the sum.
        let overflow = || bad("the layout's length overflows".into());
        let per_frame = grid_h.checked_mul(grid_w).ok_or_else(overflow)?;
        let first_video = system;
        let q0 = num_frames
            .checked_mul(per_frame)
            .and_then(|v| v.checked_add(first_video))
            .ok_or_else(overflow)?;
        let t0 = q0.checked_add(question).ok_or_else(overflow)?;
        let seq_len = t0.checked_add(template).ok_or_else(overflow)?;
        if seq_len > MAX_LAYOUT_POSITIONS {
            return Err(bad(format!(
                "{seq_len} positions; a layout holds at most {MAX_LAYOUT_POSITIONS} (more than \
                 any model's context, and its masks would not fit in memory)"
            )));
        }
        let opt0 = t0 - option_tokens.expect("checked above");
        let frames: Vec<Vec<usize>> = (0..num_frames)
            .map(|i| span(first_video + i * per_frame, per_frame))
            .collect();
        let option_sets: Vec<Vec<usize>> = (0..options.0)
            .map(|j| span(opt0 + j * options.1, options.1))
            .collect();
        let mut named = BTreeMap::new();
        named.insert("system".to_string(), span(0, system));
        named.insert("video".into(), span(first_video, num_frames * per_frame));
        named.insert("video.sep".into(), Vec::new());
        named.insert("question".into(), span(q0, question));
        named.insert("question.text".into(), span(q0, opt0 - q0));
        named.insert("template".into(), span(t0, template - 1));
        named.insert("last".into(), vec![seq_len - 1]);
        named.insert("generated".into(), Vec::new());
        if let Some(a) = answer {
            named.insert("option.true".into(), option_sets[a].clone());
            let rest: Vec<usize> = (0..options.0)
                .filter(|&j| j != a)
                .flat_map(|j| option_sets[j].iter().copied())
                .collect();
            named.insert("option.false".into(), rest);
        }
        Ok(SequenceGroups {
            seq_len,
            first_video,
            frames,
            options: option_sets,
            named,
        })
    }

    /// The groups of this sequence followed by `n` generated tokens (positions `S..S+n`): they
    /// form `generated` and join `last`, whose role they take over step by step (each new token
    /// is the query that reads the answer so far). A rule "X ↛ last" therefore also keeps every
    /// generated token from reading X, and "last ↛ last" keeps them from reading each other and
    /// the prompt's last position. Prompt rows never see generated keys (causality), so the
    /// prompt's masks are those of the prompt alone.
    pub fn with_generated(&self, n: usize) -> SequenceGroups {
        let mut out = self.clone();
        let new: Vec<usize> = (self.seq_len..self.seq_len + n).collect();
        out.named
            .get_mut("last")
            .expect("every sequence has a last position")
            .extend(&new);
        out.named.insert("generated".into(), new);
        out.seq_len += n;
        out
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Position of the first video token (random blocking draws from the edges at or after it).
    pub fn first_video(&self) -> usize {
        self.first_video
    }

    pub fn frames(&self) -> &[Vec<usize>] {
        &self.frames
    }

    /// Positions of a group: `system`, `video`, `frame[i]`, `question`, `question.text`,
    /// `option[j]`, `option.true`, `option.false`, `template`, `last`.
    pub fn group(&self, name: &str) -> Result<&[usize]> {
        let indexed = |prefix: &str, sets: &'_ [Vec<usize>]| -> Option<Result<usize>> {
            let inner = name.strip_prefix(prefix)?.strip_suffix(']')?;
            Some(match inner.parse::<usize>() {
                Ok(i) if i < sets.len() => Ok(i),
                _ => Err(Error::Input(format!(
                    "token group {name:?}: the index must be 0..{} for this sequence",
                    sets.len()
                ))),
            })
        };
        if let Some(i) = indexed("frame[", &self.frames) {
            return Ok(&self.frames[i?]);
        }
        if let Some(j) = indexed("option[", &self.options) {
            return Ok(&self.options[j?]);
        }
        if let Some(set) = self.named.get(name) {
            return Ok(set);
        }
        if name == "option.true" || name == "option.false" {
            return Err(Error::Input(format!(
                "token group {name:?} needs the answer index, and this sequence has none"
            )));
        }
        Err(Error::Input(format!(
            "unknown token group {name:?}; expected one of {}",
            group_name_list()
        )))
    }
}

/// Whether `name` can name a group in some sequence (syntax only; indices are checked later).
pub fn is_group_name(name: &str) -> bool {
    let indexed = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|i| i.parse::<usize>().is_ok())
    };
    GROUP_NAMES.contains(&name) || indexed("frame[") || indexed("option[")
}

/// The accepted names, for error messages.
pub fn group_name_list() -> String {
    let mut names: Vec<&str> = GROUP_NAMES.to_vec();
    names.insert(3, "frame[i]");
    names.insert(6, "option[j]");
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_layout_places_groups_in_order() {
        let g = SequenceGroups::from_shape_spec(
            "system=3,frames=2x1x2,question=5,template=2,options=2x1,answer=1",
            None,
        )
        .unwrap();
        // 0..3 system, 3..7 video, 7..12 question (options at 10, 11), 12 template, 13 last.
        assert_eq!(g.seq_len(), 14);
        assert_eq!(g.first_video(), 3);
        assert_eq!(g.group("frame[1]").unwrap(), &[5, 6]);
        assert_eq!(g.group("question.text").unwrap(), &[7, 8, 9]);
        assert_eq!(g.group("option[0]").unwrap(), &[10]);
        assert_eq!(g.group("option.true").unwrap(), &[11]);
        assert_eq!(g.group("option.false").unwrap(), &[10]);
        assert_eq!(g.group("template").unwrap(), &[12]);
        assert_eq!(g.group("last").unwrap(), &[13]);
        assert!(g.group("frame[2]").is_err());
    }

    #[test]
    fn shape_layout_errors_name_the_field() {
        let e = |s: &str| {
            SequenceGroups::from_shape_spec(s, None)
                .unwrap_err()
                .to_string()
        };
        assert!(e("system=3,question=5,template=2").contains("frames=FxHxW is missing"));
        assert!(e("system=3,frames=2x2,question=5,template=2").contains("frames=2x2: expected 3"));
        assert!(e("system=3,frames=1x1x1,question=5,template=0")
            .contains("template must be at least 1"));
        assert!(e("system=3,frames=1x1x1,question=5,template=1,video=3")
            .contains("unknown field \"video\""));
        let d = SequenceGroups::from_shape_spec("system=1,question=2,template=1", Some((2, 2, 2)))
            .unwrap();
        assert_eq!(d.seq_len(), 1 + 8 + 2 + 1);
    }

    #[test]
    fn group_names_are_recognised() {
        for n in [
            "video",
            "frame[3]",
            "option[0]",
            "cross-frame",
            "question.text",
        ] {
            assert!(is_group_name(n), "{n}");
        }
        for n in ["frames", "frame[x]", "option", "Video"] {
            assert!(!is_group_name(n), "{n}");
        }
    }
}
