//! A flow made concrete for one sample: its blocked pairs as positions of the spliced sequence,
//! the first row whose attention it changes, and how many edges it removes per blocked layer.

use crate::error::{Error, Result};
use crate::mask::EdgeMask;
use crate::prompt::PromptLayout;

use super::flows::Flow;

/// One flow's blocked (source keys, target queries) position sets for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFlow {
    /// `(keys, queries)`: queries in the second set cannot read keys in the first.
    pub pairs: Vec<(Vec<usize>, Vec<usize>)>,
    /// The smallest query position that loses a key it could causally read. Rows before it see
    /// exactly the baseline in every layer, so a knockout recomputes only rows from here on.
    /// `None` when the flow blocks no causal edge (then it changes nothing).
    pub first_row: Option<usize>,
    /// Causal edges removed in each blocked layer.
    pub edges_blocked_per_layer: usize,
    /// Rows left without any open key in each blocked layer (they attend uniformly).
    pub rows_without_open_key_per_layer: usize,
}

fn union(layout: &PromptLayout, names: &[String], flow: &Flow) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for n in names {
        let g = layout
            .group(n)
            .map_err(|e| Error::Input(format!("flow {:?}: {e}", flow.name)))?;
        out.extend_from_slice(g);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl ResolvedFlow {
    /// Resolves `flow` against a sample's layout; a group the prompt lacks (e.g. `option[5]` with
    /// three options) is an error naming the flow and the group.
    pub fn new(flow: &Flow, layout: &PromptLayout) -> Result<ResolvedFlow> {
        let mut pairs = Vec::with_capacity(flow.blocks.len());
        for b in &flow.blocks {
            pairs.push((
                union(layout, &b.sources, flow)?,
                union(layout, &b.targets, flow)?,
            ));
        }
        let first_row = pairs
            .iter()
            .filter_map(|(keys, queries)| {
                let k0 = *keys.first()?;
                queries.iter().copied().find(|&q| q >= k0)
            })
            .min();
        let mut resolved = ResolvedFlow {
            pairs,
            first_row,
            edges_blocked_per_layer: 0,
            rows_without_open_key_per_layer: 0,
        };
        if let Some(first) = first_row {
            let s = layout.seq_len;
            let rows: Vec<usize> = (first..s).collect();
            let keys: Vec<usize> = (0..s).collect();
            let causal = EdgeMask::causal(1, &rows, &keys);
            let mut blocked = causal.clone();
            resolved.apply(&mut blocked, None)?;
            resolved.edges_blocked_per_layer = causal.open_edges()[0] - blocked.open_edges()[0];
            resolved.rows_without_open_key_per_layer = blocked.rows_without_open_key();
        }
        Ok(resolved)
    }

    /// Blocks the flow's pairs in `mask` (batch entry `b`, or all).
    pub fn apply(&self, mask: &mut EdgeMask, b: Option<usize>) -> Result<()> {
        for (keys, queries) in &self.pairs {
            mask.block(b, keys, queries)?;
        }
        Ok(())
    }
}
