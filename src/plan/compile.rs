//! Execution plans by liveness (design.md §4): walking from the last layer backwards, a row is
//! computed at layer l only if its output is read later, or if a row whose output is needed reads
//! its key at l. Everything else is dropped and never computed.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::pathway::MaskSchedule;

/// What one layer computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerPlan {
    /// Positions computed at this layer, sorted: the `needed` rows plus key-only rows (computed
    /// for their K/V; their own output is not read).
    pub rows: Vec<usize>,
    /// Positions whose output of this layer is read later: the next layer's rows, or the output
    /// positions at the last layer.
    pub needed: Vec<usize>,
    /// Distinct key positions the `needed` rows read through open edges.
    pub keys_read: usize,
    /// Open (query, key) pairs of the schedule in this layer, over all positions.
    pub open_edges: usize,
    /// `needed` rows with no open key. The reference gives such a row uniform attention over every
    /// position of the sequence, so the plan computes every position at that layer.
    pub rows_without_open_key: usize,
}

/// A compiled plan: per layer, the rows to compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub seq_len: usize,
    /// Positions whose final hidden state is wanted (the last position by default).
    pub outputs: Vec<usize>,
    /// The layers that run: the model's, or the first K of them for an early exit.
    pub layers: Vec<LayerPlan>,
    /// Layers of the model (the full run's cost counts all of them).
    pub model_layers: usize,
}

impl Plan {
    /// The plan for reading the last position's logits.
    pub fn compile(schedule: &MaskSchedule) -> Plan {
        let last = schedule.seq_len() - 1;
        Plan::compile_for(schedule, &[last]).expect("the last position exists")
    }

    /// The plan for reading the final hidden states of `outputs`.
    pub fn compile_for(schedule: &MaskSchedule, outputs: &[usize]) -> Result<Plan> {
        let s = schedule.seq_len();
        let mut outs = outputs.to_vec();
        outs.sort_unstable();
        outs.dedup();
        if outs.is_empty() || outs.iter().any(|&p| p >= s) {
            return Err(Error::Input(format!(
                "plan outputs {outputs:?} must be a non-empty set of positions below {s}"
            )));
        }
        let open = schedule.open_edges();
        let num_layers = schedule.num_layers();
        let mut layers: Vec<LayerPlan> = Vec::with_capacity(num_layers);
        let mut needed = outs.clone();
        for l in (0..num_layers).rev() {
            let blocked = schedule.layer(l).blocked().as_standard_layout();
            let blocked = blocked.as_slice().expect("standard layout");
            let mut read = vec![false; s];
            // Keys no needed row has read yet: after the first rows (mostly open masks) few are
            // left, so each further row checks only those, not its whole row. Plans are compiled
            // on every run, and this loop was most of the compile time.
            let mut unread: Vec<usize> = (0..s).collect();
            let mut without_key = 0;
            // Latest rows first: they read the most keys.
            for &q in needed.iter().rev() {
                // Causal keys of row q: 0..=q.
                let row = &blocked[q * s..q * s + q + 1];
                if row.iter().all(|&b| b) {
                    without_key += 1;
                    read.iter_mut().for_each(|r| *r = true);
                    unread.clear();
                    continue;
                }
                unread.retain(|&k| {
                    let open = k <= q && !row[k];
                    read[k] |= open;
                    !open
                });
            }
            let keys_read = read.iter().filter(|&&r| r).count();
            for &q in &needed {
                read[q] = true;
            }
            let rows: Vec<usize> = (0..s).filter(|&p| read[p]).collect();
            layers.push(LayerPlan {
                rows: rows.clone(),
                needed: std::mem::replace(&mut needed, rows),
                keys_read,
                open_edges: open[l],
                rows_without_open_key: without_key,
            });
        }
        layers.reverse();
        Ok(Plan {
            seq_len: s,
            outputs: outs,
            layers,
            model_layers: schedule.model_layers(),
        })
    }

    /// Every position at every layer: what a dense masked run executes.
    pub fn dense(schedule: &MaskSchedule) -> Plan {
        let s = schedule.seq_len();
        let all: Vec<usize> = (0..s).collect();
        let open = schedule.open_edges();
        Plan {
            seq_len: s,
            outputs: vec![s - 1],
            layers: open
                .iter()
                .enumerate()
                .map(|(l, &open_edges)| LayerPlan {
                    rows: all.clone(),
                    needed: all.clone(),
                    keys_read: s,
                    open_edges,
                    rows_without_open_key: schedule.layer(l).rows_without_open_key(),
                })
                .collect(),
            model_layers: schedule.model_layers(),
        }
    }

    /// Layers that run.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Rows computed, summed over layers.
    pub fn rows_computed(&self) -> usize {
        self.layers.iter().map(|l| l.rows.len()).sum()
    }

    /// Open edges, summed over layers.
    pub fn open_edges(&self) -> usize {
        self.layers.iter().map(|l| l.open_edges).sum()
    }
}
