//! Running a sample's knockouts, optimised or naive.
//!
//! Optimised (design.md §4, last paragraph): a knockout whose window starts at layer `s` starts
//! from the baseline's cached input of layer `s`; rows before the flow's first changed row `f`
//! are never recomputed (their attention is unchanged in every layer, so their K/V are the
//! baseline's and are passed as `past`); only rows `f..S` are computed, with the blocked mask
//! inside the window and the causal mask after it (those rows changed, so later layers must
//! recompute them). Knockouts that share `(s, f)` run as one batch (split into batches of at most
//! `max_batch` knockouts and [`MAX_BATCH_ROWS`] rows). A knockout that blocks no
//! causal edge, or no layer, is the baseline itself and costs nothing.
//!
//! Naive: every knockout is a full forward from the embeddings over all rows, batch 1 — the
//! check of the optimised path.

use std::collections::{BTreeMap, HashMap};

use ndarray::{concatenate, Array4, Axis};

use super::baseline::{last_position_logits, read_logits, Baseline, Readout};
use super::resolve::ResolvedFlow;
use super::window::{window_layers, WindowStyle};
use crate::engine::{self, ForwardSpec, Keep, LayerKv, Masks, Rotary};
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::Package;

/// One knockout: a flow blocked in the window of a sweep layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knockout {
    /// Index into the run's flows.
    pub flow: usize,
    /// The sweep layer `l` (0-based).
    pub layer: usize,
    /// The blocked layers, sorted (0-based).
    pub window: Vec<usize>,
}

/// The knockouts of a sweep, flow-major then layer, the order records are written in.
pub fn plan_knockouts(
    num_flows: usize,
    sweep_layers: &[usize],
    window: usize,
    style: WindowStyle,
    num_layers: usize,
) -> Vec<Knockout> {
    (0..num_flows)
        .flat_map(|flow| {
            sweep_layers.iter().map(move |&layer| Knockout {
                flow,
                layer,
                window: window_layers(style, layer, window, num_layers),
            })
        })
        .collect()
}

/// Most recomputed rows (batch × suffix rows) one optimised forward takes, unless a single
/// knockout's suffix is longer. ONNX Runtime keeps each layer session's peak working memory, so a
/// batch of B long suffixes would hold about B times the memory in every layer's session (a batch
/// of 5 cross-frame suffixes on the 30-layer SmolLM2 package at S = 1268 needs over 20 GB); long
/// suffixes are compute-bound, so batching them gains nothing anyway.
pub const MAX_BATCH_ROWS: usize = 1024;

/// Knockouts per forward for suffixes of `rows` rows: at most `max_batch`, and at most
/// [`MAX_BATCH_ROWS`] rows in all (but at least one knockout).
pub fn batch_size(rows: usize, max_batch: usize) -> usize {
    (MAX_BATCH_ROWS / rows.max(1)).clamp(1, max_batch.max(1))
}

/// How knockouts are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Cached prefix, suffix-only recomputation, batches of at most `max_batch` knockouts (fewer
    /// for long suffixes, see [`batch_size`]).
    Optimised { max_batch: usize },
    /// A full forward from the embeddings per knockout.
    Naive,
}

/// What a sweep computed: decoder forward calls and (row, layer) pairs, summed over the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepCost {
    pub forwards: usize,
    pub row_layers: usize,
}

/// Readouts of a sample's knockouts, in the order asked, and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOutput {
    pub readouts: Vec<Readout>,
    pub cost: SweepCost,
}

/// Runs `knockouts` of one sample. `progress` is told how many knockouts each step finished.
pub fn run_knockouts(
    pkg: &Package,
    baseline: &Baseline,
    flows: &[ResolvedFlow],
    knockouts: &[Knockout],
    execution: Execution,
    masked_rows: MaskedRows,
    progress: &mut dyn FnMut(usize),
) -> Result<SweepOutput> {
    for k in knockouts {
        if k.flow >= flows.len() {
            return Err(Error::Input(format!(
                "knockout names flow {} of {}",
                k.flow,
                flows.len()
            )));
        }
    }
    let mut cost = SweepCost::default();
    let readouts = match execution {
        Execution::Naive => knockouts
            .iter()
            .map(|k| {
                let r = run_naive(pkg, baseline, &flows[k.flow], &k.window, masked_rows);
                cost.forwards += 1;
                cost.row_layers += baseline.seq_len() * pkg.manifest.num_layers;
                progress(1);
                r
            })
            .collect::<Result<Vec<_>>>()?,
        Execution::Optimised { max_batch } => run_optimised(
            pkg,
            baseline,
            flows,
            knockouts,
            max_batch.max(1),
            masked_rows,
            progress,
            &mut cost,
        )?,
    };
    Ok(SweepOutput { readouts, cost })
}

fn run_naive(
    pkg: &Package,
    baseline: &Baseline,
    flow: &ResolvedFlow,
    window: &[usize],
    masked_rows: MaskedRows,
) -> Result<Readout> {
    let s = baseline.seq_len();
    let causal = EdgeMask::full_causal(1, s);
    let mut blocked = causal.clone();
    flow.apply(&mut blocked, None)?;
    let (causal, blocked) = (causal.additive(), blocked.additive());
    let masks = Masks::in_layers(window, &blocked, &causal);
    let out = engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &baseline.embeds,
            rotary: &baseline.rotary,
            past: None,
            masks: &masks,
            masked_rows,
            keep: Keep::default(),
        },
    )?;
    let logits = last_position_logits(pkg, &out)?;
    read_logits(
        logits.index_axis(Axis(0), 0),
        baseline.answer_token,
        baseline.truth_token,
    )
}

/// The baseline K/V of rows `0..first` in every layer: the `past` of suffix runs (cut on the
/// device, never re-uploaded).
fn prefix_kv(pkg: &Package, baseline: &Baseline, first: usize) -> Result<Vec<LayerKv>> {
    baseline
        .kv
        .iter()
        .map(|kv| kv.rows(pkg, 0, first))
        .collect()
}

// The sweep's state is passed whole rather than bundled for one caller.
#[allow(clippy::too_many_arguments)]
fn run_optimised(
    pkg: &Package,
    baseline: &Baseline,
    flows: &[ResolvedFlow],
    knockouts: &[Knockout],
    max_batch: usize,
    masked_rows: MaskedRows,
    progress: &mut dyn FnMut(usize),
    cost: &mut SweepCost,
) -> Result<Vec<Readout>> {
    let mut out: Vec<Option<Readout>> = vec![None; knockouts.len()];
    // (window start, first changed row) -> knockouts; BTreeMap keeps the run deterministic.
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let mut unchanged = 0;
    for (i, k) in knockouts.iter().enumerate() {
        match (k.window.first(), flows[k.flow].first_row) {
            (Some(&start), Some(first)) => groups.entry((start, first)).or_default().push(i),
            _ => {
                out[i] = Some(baseline.readout);
                unchanged += 1;
            }
        }
    }
    if unchanged > 0 {
        progress(unchanged);
    }
    let mut past_cache: HashMap<usize, Vec<LayerKv>> = HashMap::new();
    for ((start, first), members) in groups {
        if let std::collections::hash_map::Entry::Vacant(e) = past_cache.entry(first) {
            e.insert(prefix_kv(pkg, baseline, first)?);
        }
        let past = &past_cache[&first];
        let suffix = Suffix::new(pkg, baseline, first, masked_rows)?;
        for chunk in members.chunks(batch_size(suffix.rows.len(), max_batch)) {
            let batch: Vec<&Knockout> = chunk.iter().map(|&i| &knockouts[i]).collect();
            let readouts = suffix.run(pkg, baseline, flows, &batch, start, past)?;
            cost.forwards += 1;
            cost.row_layers += chunk.len() * suffix.rows.len() * (pkg.manifest.num_layers - start);
            for (&i, r) in chunk.iter().zip(readouts) {
                out[i] = Some(r);
            }
            progress(chunk.len());
        }
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every knockout ran"))
        .collect())
}

/// The recomputed rows `first..S` of one sample: positions, rotary tables, causal mask.
struct Suffix {
    rows: Vec<usize>,
    keys: Vec<usize>,
    rotary: Rotary,
    causal: EdgeMask,
    masked_rows: MaskedRows,
}

impl Suffix {
    fn new(
        pkg: &Package,
        baseline: &Baseline,
        first: usize,
        masked_rows: MaskedRows,
    ) -> Result<Suffix> {
        let s = baseline.seq_len();
        let rows: Vec<usize> = (first..s).collect();
        let keys: Vec<usize> = (0..s).collect();
        let causal = EdgeMask::causal(1, &rows, &keys);
        Ok(Suffix {
            rotary: baseline.rotary.rows(pkg, &rows)?,
            rows,
            keys,
            causal,
            masked_rows,
        })
    }

    fn run(
        &self,
        pkg: &Package,
        baseline: &Baseline,
        flows: &[ResolvedFlow],
        batch: &[&Knockout],
        start: usize,
        past: &[LayerKv],
    ) -> Result<Vec<Readout>> {
        let first = self.rows[0];
        debug_assert!(self.keys.len() == baseline.seq_len());
        let b = batch.len();
        let causal = self.causal.additive();
        let mut blocked: Vec<Array4<f32>> = Vec::with_capacity(b);
        for k in batch {
            let mut m = self.causal.clone();
            flows[k.flow].apply(&mut m, None)?;
            blocked.push(m.additive());
        }
        // Layers with the same in-window pattern over the batch share one mask.
        let pattern =
            |l: usize| -> Vec<bool> { batch.iter().map(|k| k.window.contains(&l)).collect() };
        let num_layers = pkg.manifest.num_layers;
        let keys: Vec<usize> = (0..num_layers)
            .map(|l| (0..=l).find(|&e| pattern(e) == pattern(l)).unwrap_or(l))
            .collect();
        let key = move |l: usize| keys[l];
        let build = |l: usize| -> Result<Array4<f32>> {
            let parts: Vec<_> = batch
                .iter()
                .zip(&blocked)
                .map(|(k, m)| {
                    if k.window.contains(&l) {
                        m.view()
                    } else {
                        causal.view()
                    }
                })
                .collect();
            Ok(concatenate(Axis(0), &parts).expect("masks of one suffix share their shape"))
        };
        let masks = Masks::new(key, build);
        let data = pkg.data();
        let rows = data.slice(&baseline.hidden[start], 1, first, baseline.seq_len())?;
        let hidden = if b > 1 {
            data.expand_batch(&rows, b)?
        } else {
            rows
        };
        let out = engine::forward(
            pkg,
            ForwardSpec {
                start_layer: start,
                hidden: &hidden,
                rotary: &self.rotary,
                past: Some(past),
                masks: &masks,
                masked_rows: self.masked_rows,
                keep: Keep::default(),
            },
        )?;
        let logits = last_position_logits(pkg, &out)?;
        logits
            .outer_iter()
            .map(|row| read_logits(row, baseline.answer_token, baseline.truth_token))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_suffixes_run_in_smaller_batches() {
        assert_eq!(batch_size(1, 8), 8);
        assert_eq!(batch_size(80, 8), 8);
        assert_eq!(batch_size(300, 8), 3);
        assert_eq!(batch_size(1090, 8), 1);
        assert_eq!(batch_size(5000, 8), 1);
        assert_eq!(batch_size(10, 0), 1);
    }
}
