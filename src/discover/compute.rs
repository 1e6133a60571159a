//! Compute-aware discovery (`vidflow discover --objective compute`): pathway configs chosen for
//! the rows they let a plan drop, not for the edges they block. Edge-only configs save little,
//! because a row is dropped only when nothing later reads it (plan/compile.rs), and the template
//! rows read every video row to the end. Each candidate is three layers (1-based, "after layer"):
//!
//! - `video_cutoff` c: video ↛ question, template and last in layers c+1..L, so no row reads a
//!   video row after c and the plan drops all of them there;
//! - `last_only` d: system, video, question and template ↛ last in layers d+1..L (and last → last
//!   open there, even where a base config blocks it), so only the last row runs after d;
//! - `exit_layer` K: the answer is read after layer K and later layers never run.
//!
//! Every candidate (c ≤ d ≤ K on a layer grid, on top of an optional base config) runs whole on
//! validation samples; a candidate passes when no task's accuracy falls more than `max_drop`
//! points below full attention on the same samples. The chosen config is the passing candidate
//! of the highest predicted speedup (the plan's FLOPs against the full run's).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::answer::SampleInputs;
use crate::bench::{bench, BenchMode, BenchReport, BenchSettings};
use crate::error::{Error, Result};
use crate::eval::EvalMode;
use crate::package::Package;
use crate::pathway::{format_layer_set, PathwayConfig, Pathways, SequenceGroups};
use crate::plan::{FlopModel, ModelShape, Plan, PlanReport};

/// How candidates are drawn and judged.
#[derive(Debug, Clone, Copy)]
pub struct ComputeSettings {
    /// Largest accuracy drop (percentage points) any task may take against full attention.
    pub max_drop: f64,
    /// Layer grid of the cutoffs and exits: every `step`-th layer, and the last one.
    pub step: usize,
}

impl ComputeSettings {
    /// Refuses a zero grid step (named by `step_flag`, the caller's option) and a drop that is
    /// negative or not a number.
    pub fn validate(&self, step_flag: &str) -> Result<()> {
        if self.step == 0 {
            return Err(Error::Input(format!("{step_flag} must be at least 1")));
        }
        if !self.max_drop.is_finite() || self.max_drop < 0.0 {
            return Err(Error::Input(format!(
                "--max-drop {}: expected a non-negative number of accuracy points",
                self.max_drop
            )));
        }
        Ok(())
    }
}

/// One task's accuracy under a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAccuracy {
    pub samples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Points below full attention on the same samples (negative when better).
    pub drop_points: f64,
}

/// A candidate config and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    /// 1-based: nothing reads video after this layer.
    pub video_cutoff: Option<usize>,
    /// 1-based: only the last row runs after this layer.
    pub last_only: Option<usize>,
    /// 1-based: the answer is read after this layer (None: after the last).
    pub exit_layer: Option<usize>,
    pub accuracy: f64,
    pub tasks: BTreeMap<String, TaskAccuracy>,
    /// The largest drop over tasks, in points.
    pub worst_drop_points: f64,
    pub passes: bool,
    /// Share of the full run's causal edges left open, of its rows computed (on the first sample).
    pub edge_share: f64,
    pub row_share: f64,
    pub predicted_speedup: f64,
    /// Paired prefill speedup against full attention, where it was measured (see [`measure`]).
    pub measured_speedup: Option<f64>,
    #[serde(skip)]
    pub yaml: String,
}

/// The search's result: full attention's accuracy and every candidate, fastest predicted first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComputeDiscovery {
    pub model: String,
    pub base: Option<String>,
    pub samples: usize,
    pub max_drop: f64,
    pub step: usize,
    pub full: BTreeMap<String, TaskAccuracy>,
    pub full_accuracy: f64,
    pub candidates: Vec<Candidate>,
    /// Index into `candidates` of the chosen config; None when no candidate passes.
    pub chosen: Option<usize>,
}

/// Layers 1..=L of the grid: every `step`-th and the last.
fn grid(num_layers: usize, step: usize) -> Vec<usize> {
    let mut g: Vec<usize> = (1..=num_layers).filter(|l| l % step == 0).collect();
    if g.last() != Some(&num_layers) {
        g.push(num_layers);
    }
    g
}

/// The (c, d, K) triples searched: c < d < K on the grid, each of c and d optional, K = L meaning
/// no exit. (None, None, L) is the base config itself.
fn triples(num_layers: usize, step: usize) -> Vec<(Option<usize>, Option<usize>, usize)> {
    let g = grid(num_layers, step);
    let mut out = Vec::new();
    for &k in &g {
        let below = |x: usize| g.iter().copied().filter(move |&l| l < x);
        let ds: Vec<Option<usize>> = std::iter::once(None).chain(below(k).map(Some)).collect();
        for d in ds {
            let top = d.unwrap_or(k);
            for c in std::iter::once(None).chain(below(top).map(Some)) {
                out.push((c, d, k));
            }
        }
    }
    out
}

fn name_of(c: Option<usize>, d: Option<usize>, k: usize, num_layers: usize) -> String {
    let mut parts = Vec::new();
    if let Some(c) = c {
        parts.push(format!("video-cut{c}"));
    }
    if let Some(d) = d {
        parts.push(format!("last-only{d}"));
    }
    if k < num_layers {
        parts.push(format!("exit{k}"));
    }
    if parts.is_empty() {
        "base".into()
    } else {
        parts.join("-")
    }
}

/// The config of one candidate, as YAML a user can read and `vidflow eval` can run.
pub fn candidate_yaml(
    base: Option<&PathwayConfig>,
    num_layers: usize,
    c: Option<usize>,
    d: Option<usize>,
    k: usize,
    name: &str,
) -> String {
    let q = |s: &str| format!("\"{s}\"");
    let mut out = format!(
        "# Found by `vidflow discover --objective compute`{}\nname: {name}\nnum_layers: {num_layers}\n",
        base.map_or(String::new(), |b| format!(" on top of {}", b.name))
    );
    if k < num_layers {
        out.push_str(&format!("exit_layer: {k}\n"));
    }
    out.push_str("rules:\n");
    let after = |x: usize| format!("{}-{num_layers}", x + 1);
    let mut rules = Vec::new();
    if let Some(b) = base {
        for r in &b.rules {
            let mut blocked = r.blocked.clone();
            if let (Some(d), true) = (d, r.source == "last" && r.target == "last") {
                // The last row keeps its own key where it reads nothing else.
                blocked.iter_mut().skip(d).for_each(|x| *x = false);
            }
            if blocked.iter().any(|&x| x) {
                rules.push((
                    r.source.clone(),
                    r.target.clone(),
                    format_layer_set(&blocked),
                ));
            }
        }
    }
    if let Some(c) = c {
        for t in ["question", "template", "last"] {
            rules.push(("video".into(), t.into(), after(c)));
        }
    }
    if let Some(d) = d {
        for s in ["system", "video", "question", "template"] {
            rules.push((s.into(), "last".into(), after(d)));
        }
    }
    if rules.is_empty() {
        out.truncate(out.len() - "rules:\n".len());
        out.push_str("rules: []\n");
    }
    for (s, t, layers) in rules {
        out.push_str(&format!(
            "  - {{source: {}, target: {}, blocked: \"{layers}\"}}\n",
            q(&s),
            q(&t)
        ));
    }
    out
}

fn accuracy_by_task(
    results: &[(String, bool)],
    full: Option<&BTreeMap<String, TaskAccuracy>>,
) -> (BTreeMap<String, TaskAccuracy>, f64) {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (task, ok) in results {
        let e = counts.entry(task.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(*ok);
    }
    let total_ok: usize = counts.values().map(|c| c.1).sum();
    let tasks = counts
        .into_iter()
        .map(|(task, (n, ok))| {
            let accuracy = ok as f64 / n as f64;
            let drop_points = full
                .and_then(|f| f.get(&task))
                .map_or(0.0, |f| 100.0 * (f.accuracy - accuracy));
            let t = TaskAccuracy {
                samples: n,
                correct: ok,
                accuracy,
                drop_points,
            };
            (task, t)
        })
        .collect();
    (tasks, total_ok as f64 / results.len().max(1) as f64)
}

/// Whether `mode` answers each sample correctly, with its task.
fn correctness(
    pkg: &Package,
    inputs: &[(String, SampleInputs)],
    mode: &EvalMode,
) -> Result<Vec<(String, bool)>> {
    inputs
        .iter()
        .map(|(task, inp)| {
            let (scores, _, _) = mode.score(pkg, inp)?;
            let ok = scores.correct().ok_or_else(|| {
                Error::Input(format!(
                    "compute-aware discovery needs samples with a known answer (task {task:?})"
                ))
            })?;
            Ok((task.clone(), ok))
        })
        .collect()
}

/// Searches the candidates on `inputs` (validation samples with their tasks); `base` is a pathway
/// config the cutoffs are added to. `progress` gets (done, total) after each candidate.
pub fn discover_compute(
    pkg: &Package,
    inputs: &[(String, SampleInputs)],
    base: Option<&PathwayConfig>,
    settings: ComputeSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<ComputeDiscovery> {
    settings.validate("--step")?;
    if inputs.is_empty() {
        return Err(Error::Input(
            "compute-aware discovery needs at least one validation sample".into(),
        ));
    }
    let l = pkg.num_layers();
    let base = match base {
        Some(b) if b.num_layers != l => {
            return Err(Error::Input(format!(
                "{}: written for {} layers, the model has {l} (scale it first)",
                b.path.display(),
                b.num_layers
            )))
        }
        Some(b) if b.exit_layer.is_some() => {
            return Err(Error::Input(format!(
                "{}: a base config for compute-aware discovery has no exit_layer (the search \
                 chooses it)",
                b.path.display()
            )))
        }
        other => other,
    };
    let full_results = correctness(pkg, inputs, &EvalMode::Full { exit_layer: None })?;
    let (full, full_accuracy) = accuracy_by_task(&full_results, None);
    let cost = FlopModel::new(&ModelShape::from_manifest(&pkg.manifest));
    let groups = SequenceGroups::from_prompt(&inputs[0].1.layout);
    let triples = triples(l, settings.step);
    let mut candidates = Vec::with_capacity(triples.len());
    for (i, &(c, d, k)) in triples.iter().enumerate() {
        let name = name_of(c, d, k, l);
        let yaml = candidate_yaml(base, l, c, d, k, &name);
        let config = PathwayConfig::from_yaml(&yaml, Path::new(&format!("<candidate {name}>")))?;
        let schedule = config.resolve(&groups, l)?;
        let plan = Plan::compile(&schedule);
        let report = PlanReport::new(&pkg.manifest.name, &name, &plan, &cost);
        let mode = EvalMode::Pathways(Pathways::Config(config));
        let results = correctness(pkg, inputs, &mode)?;
        let (tasks, accuracy) = accuracy_by_task(&results, Some(&full));
        let worst = tasks
            .values()
            .map(|t| t.drop_points)
            .fold(f64::NEG_INFINITY, f64::max);
        candidates.push(Candidate {
            name,
            video_cutoff: c,
            last_only: d,
            exit_layer: (k < l).then_some(k),
            accuracy,
            passes: worst <= settings.max_drop + 1e-9,
            worst_drop_points: worst,
            tasks,
            edge_share: report.open_edges as f64 / report.total_edges as f64,
            row_share: report.rows_computed as f64 / report.full_rows as f64,
            predicted_speedup: report.predicted_speedup,
            measured_speedup: None,
            yaml,
        });
        progress(i + 1, triples.len());
    }
    // Fastest first; ties broken by accuracy, then by name: deterministic.
    candidates.sort_by(|a, b| {
        b.predicted_speedup
            .total_cmp(&a.predicted_speedup)
            .then(b.accuracy.total_cmp(&a.accuracy))
            .then_with(|| a.name.cmp(&b.name))
    });
    let chosen = candidates.iter().position(|c| c.passes);
    Ok(ComputeDiscovery {
        model: pkg.manifest.name.clone(),
        base: base.map(|b| b.name.clone()),
        samples: inputs.len(),
        max_drop: settings.max_drop,
        step: settings.step,
        full,
        full_accuracy,
        candidates,
        chosen,
    })
}

/// Measures candidates `which` against full attention on one sample (`vidflow bench`'s paired
/// speedup, modes taking turns run by run) and records it in `measured_speedup`.
pub fn measure(
    pkg: &Package,
    inputs: &SampleInputs,
    discovery: &mut ComputeDiscovery,
    which: &[usize],
    settings: BenchSettings,
    threads: usize,
) -> Result<BenchReport> {
    let modes = which
        .iter()
        .map(|&i| {
            let c = &discovery.candidates[i];
            let path = format!("<candidate {}>", c.name);
            PathwayConfig::from_yaml(&c.yaml, Path::new(&path))
                .map(|cfg| BenchMode::Pruned(Pathways::Config(cfg)))
        })
        .collect::<Result<Vec<_>>>()?;
    let report = bench(pkg, inputs, &modes, settings, threads, |_, _| {})?;
    // The report's first mode is full attention; the others follow in the order given.
    for (&i, m) in which.iter().zip(&report.modes[1..]) {
        discovery.candidates[i].measured_speedup = Some(m.paired_speedup);
    }
    Ok(report)
}

impl ComputeDiscovery {
    /// Reads a search written as JSON (`NAME.frontier.json`) for a model of `num_layers` layers
    /// and no base config, rebuilding each candidate's config from its layers.
    pub fn read(path: &Path, num_layers: usize) -> Result<ComputeDiscovery> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let fail = |msg: String| Error::Data {
            path: path.to_path_buf(),
            msg,
        };
        let mut d: ComputeDiscovery = serde_json::from_str(&text)
            .map_err(|e| fail(format!("not a compute-aware search: {e}")))?;
        if let Some(b) = &d.base {
            return Err(fail(format!(
                "the search ran on top of the config {b:?}; only searches without a base are read \
                 back"
            )));
        }
        if d.chosen.is_some_and(|c| c >= d.candidates.len()) {
            return Err(fail(format!(
                "chosen {:?} is not one of its {} candidates",
                d.chosen,
                d.candidates.len()
            )));
        }
        for c in &mut d.candidates {
            let k = c.exit_layer.unwrap_or(num_layers);
            let layers = [c.video_cutoff, c.last_only, Some(k)];
            if layers.iter().flatten().any(|&x| x == 0 || x > num_layers) {
                return Err(fail(format!(
                    "candidate {:?} names a layer outside 1..={num_layers}",
                    c.name
                )));
            }
            if name_of(c.video_cutoff, c.last_only, k, num_layers) != c.name {
                return Err(fail(format!(
                    "candidate {:?} does not match its layers {layers:?}",
                    c.name
                )));
            }
            c.yaml = candidate_yaml(None, num_layers, c.video_cutoff, c.last_only, k, &c.name);
        }
        Ok(d)
    }

    /// The speed/accuracy frontier: candidates no other one beats in both predicted speedup and
    /// worst-task drop, fastest first.
    pub fn frontier(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut best_drop = f64::INFINITY;
        // Sorted fastest first, so a candidate is on the frontier when it drops less than every
        // faster one.
        for (i, c) in self.candidates.iter().enumerate() {
            if c.worst_drop_points < best_drop - 1e-9 {
                out.push(i);
                best_drop = c.worst_drop_points;
            }
        }
        out
    }

    /// The fastest passing candidate that only exits early (no cutoff), if any.
    pub fn best_exit_only(&self) -> Option<usize> {
        self.candidates
            .iter()
            .position(|c| c.passes && c.video_cutoff.is_none() && c.last_only.is_none())
    }

    /// A table of the frontier (and the chosen candidate), for the terminal and the docs.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: {} validation samples, full attention {:.1}%; a candidate passes when no task \
             drops more than {} points\n",
            self.model,
            self.samples,
            100.0 * self.full_accuracy,
            self.max_drop
        );
        out.push_str(&format!(
            "{:<34} {:>7} {:>10} {:>7} {:>7} {:>10} {:>9}  {}\n",
            "candidate", "acc %", "worst drop", "edges", "rows", "predicted", "measured", ""
        ));
        let mut shown = self.frontier();
        if let Some(c) = self.chosen {
            if !shown.contains(&c) {
                shown.push(c);
                shown.sort_unstable();
            }
        }
        for i in shown {
            let c = &self.candidates[i];
            out.push_str(&format!(
                "{:<34} {:>7.1} {:>10.1} {:>6.1}% {:>6.1}% {:>9.2}x {:>9}  {}\n",
                c.name,
                100.0 * c.accuracy,
                c.worst_drop_points,
                100.0 * c.edge_share,
                100.0 * c.row_share,
                c.predicted_speedup,
                c.measured_speedup
                    .map_or("-".into(), |m| format!("{m:.2}x")),
                if Some(i) == self.chosen {
                    "chosen"
                } else if c.passes {
                    "passes"
                } else {
                    ""
                }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_are_ordered_and_cover_the_grid() {
        // L = 3, step 1: K in 1..=3; d < K; c < d (or < K without d).
        let t = triples(3, 1);
        assert!(t.contains(&(None, None, 3)));
        assert!(t.contains(&(Some(1), Some(2), 3)));
        assert!(t.contains(&(Some(1), None, 2)));
        assert!(!t.iter().any(|&(c, d, k)| c >= d.or(Some(k)) && c.is_some()));
        assert!(!t.iter().any(|&(_, d, k)| d.is_some_and(|d| d >= k)));
        // K=1: 1; K=2: (None|1 as c) x d None + d=1 with c None = 3; K=3: d None -> c None,1,2
        // (3), d=1 -> c None (1), d=2 -> c None,1 (2): 6. Total 10.
        assert_eq!(t.len(), 10);
        assert_eq!(grid(10, 4), vec![4, 8, 10]);
    }

    #[test]
    fn candidate_yaml_blocks_video_and_opens_last_to_itself() {
        let base = PathwayConfig::from_yaml(
            "name: b\nnum_layers: 6\nrules:\n  - {source: last, target: last, blocked: all}\n",
            Path::new("b.yaml"),
        )
        .unwrap();
        let y = candidate_yaml(Some(&base), 6, Some(2), Some(4), 5, "x");
        let c = PathwayConfig::from_yaml(&y, Path::new("x.yaml")).unwrap();
        assert_eq!(c.exit_layer, Some(5));
        let rule = |s: &str, t: &str| {
            c.rules
                .iter()
                .find(|r| r.source == s && r.target == t)
                .map(|r| r.blocked.clone())
        };
        let f = false;
        let t = true;
        assert_eq!(rule("last", "last"), Some(vec![t, t, t, t, f, f]));
        assert_eq!(rule("video", "template"), Some(vec![f, f, t, t, t, t]));
        assert_eq!(rule("question", "last"), Some(vec![f, f, f, f, t, t]));
        let plain = candidate_yaml(None, 6, None, None, 6, "base");
        let p = PathwayConfig::from_yaml(&plain, Path::new("p.yaml")).unwrap();
        assert!(p.rules.is_empty() && p.exit_layer.is_none());
    }
}
