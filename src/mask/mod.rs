//! Attention masks (design.md §3): which (query, key) edges are open in a layer, and their
//! additive form for the layer graphs. Edges are addressed by original sequence positions, so
//! the same code serves full prefills, extend calls over a suffix, and dropped-row plans.

use std::fmt;
use std::str::FromStr;

use ndarray::{s, Array3, Array4, ArrayView4, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The additive value of a blocked edge: float32's minimum finite value, as the published
/// reference uses. A row whose keys are all blocked then softmaxes to a uniform row.
pub const BLOCKED: f32 = f32::MIN;

/// Additive values at or below this count as blocked when a mask is inspected (masks built
/// here use [`BLOCKED`]; `-inf` from elsewhere counts too).
const BLOCKED_BELOW: f32 = -1.0e30;

/// What a query row whose keys are all blocked attends to (design.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskedRows {
    /// Uniform over the whole row, future columns included: what the published reference's
    /// minimum-value mask gives. The default, so results match the reference.
    #[default]
    Uniform,
    /// Zero attention output: the row keeps only its residual (and MLP) update.
    Zero,
}

impl MaskedRows {
    pub fn name(self) -> &'static str {
        match self {
            MaskedRows::Uniform => "uniform",
            MaskedRows::Zero => "zero",
        }
    }
}

impl fmt::Display for MaskedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MaskedRows {
    type Err = Error;
    fn from_str(s: &str) -> Result<MaskedRows> {
        match s {
            "uniform" => Ok(MaskedRows::Uniform),
            "zero" => Ok(MaskedRows::Zero),
            _ => Err(Error::Input(format!(
                "unknown masked-rows policy {s:?}; expected uniform or zero"
            ))),
        }
    }
}

/// For the `zero` policy: the mask with one extra key column in front, a "sink" whose key and
/// value the caller sets to zero, open exactly for the rows that have no open key. Such a row
/// then puts all its weight on a zero value (output exactly zero) and every other row is
/// unchanged (the sink is blocked for it, and a blocked key adds nothing). `None` when no row
/// is fully blocked, so the common case costs nothing.
pub fn with_zero_sink(mask: ArrayView4<'_, f32>) -> Option<Array4<f32>> {
    let (b, h, q, k) = mask.dim();
    let empty = |bb: usize, hh: usize, r: usize| {
        mask.slice(s![bb, hh, r, ..])
            .iter()
            .all(|&x| x <= BLOCKED_BELOW)
    };
    let mut any = false;
    let mut out = Array4::<f32>::from_elem((b, h, q, k + 1), BLOCKED);
    for bb in 0..b {
        for hh in 0..h {
            for r in 0..q {
                if empty(bb, hh, r) {
                    any = true;
                    out[[bb, hh, r, 0]] = 0.0;
                }
            }
        }
    }
    if !any {
        return None;
    }
    out.slice_mut(s![.., .., .., 1..]).assign(&mask);
    Some(out)
}

/// Blocked edges of one layer for a batch: `blocked[b, q, k]` over query positions `queries[q]`
/// and key positions `keys[k]`. Future keys (key position > query position) are always blocked.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeMask {
    queries: Vec<usize>,
    keys: Vec<usize>,
    blocked: Array3<bool>,
}

/// `idx` as half-open runs of consecutive values, in order.
fn runs_of(idx: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in idx {
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end += 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// How many flags are set, summed in 32-bit lanes (wide enough for any chunk here, and twice as
/// many lanes per vector as `usize`).
fn count_true(flags: &[bool]) -> usize {
    flags
        .chunks(1 << 20)
        .map(|c| c.iter().map(|&x| u32::from(x)).sum::<u32>() as usize)
        .sum()
}

/// Where each of `wanted` sits in `positions` (absent ones left out). Masks over `0..S` in
/// order (every schedule's) map positions to themselves, found without a lookup table: masks are
/// blocked rule by rule on every run.
fn indices(positions: &[usize], wanted: &[usize]) -> Vec<usize> {
    if positions.iter().enumerate().all(|(i, &p)| i == p) {
        return wanted
            .iter()
            .copied()
            .filter(|&p| p < positions.len())
            .collect();
    }
    let idx = index_of(positions);
    wanted
        .iter()
        .filter_map(|&p| idx.get(p).copied().flatten())
        .collect()
}

fn index_of(positions: &[usize]) -> Vec<Option<usize>> {
    let max = positions.iter().copied().max().map_or(0, |m| m + 1);
    let mut idx = vec![None; max];
    for (i, &p) in positions.iter().enumerate() {
        idx[p] = Some(i);
    }
    idx
}

impl EdgeMask {
    /// The causal mask of `batch` identical rows: queries at `queries`, keys at `keys` (for an
    /// extend call: the past rows' positions, then the computed rows' positions).
    pub fn causal(batch: usize, queries: &[usize], keys: &[usize]) -> EdgeMask {
        // Row by row over a flat buffer: masks are built on every run, and an indexed
        // `from_shape_fn` costs several times more.
        let mut flat = Vec::with_capacity(batch * queries.len() * keys.len());
        for _ in 0..batch {
            for &q in queries {
                flat.extend(keys.iter().map(|&k| k > q));
            }
        }
        let blocked = Array3::from_shape_vec((batch, queries.len(), keys.len()), flat)
            .expect("batch x queries x keys flags");
        EdgeMask {
            queries: queries.to_vec(),
            keys: keys.to_vec(),
            blocked,
        }
    }

    /// The plain causal mask over positions `0..len`.
    pub fn full_causal(batch: usize, len: usize) -> EdgeMask {
        let pos: Vec<usize> = (0..len).collect();
        EdgeMask::causal(batch, &pos, &pos)
    }

    pub fn batch(&self) -> usize {
        self.blocked.shape()[0]
    }
    pub fn queries(&self) -> &[usize] {
        &self.queries
    }
    pub fn keys(&self) -> &[usize] {
        &self.keys
    }
    /// `[B,Q,K]`, true = blocked.
    pub fn blocked(&self) -> &Array3<bool> {
        &self.blocked
    }

    /// Blocks "sources ↛ targets": queries at positions in `targets` cannot read keys at positions
    /// in `sources`, for batch entry `b` (or all entries). Positions absent from this mask's
    /// queries or keys are ignored: they are not part of this call.
    pub fn block(&mut self, b: Option<usize>, sources: &[usize], targets: &[usize]) -> Result<()> {
        let batches: Vec<usize> = match b {
            Some(b) if b < self.batch() => vec![b],
            Some(b) => {
                return Err(Error::Input(format!(
                    "batch entry {b} does not exist (batch {})",
                    self.batch()
                )))
            }
            None => (0..self.batch()).collect(),
        };
        let rows = indices(&self.queries, targets);
        // Groups are mostly spans of consecutive positions: fill runs, not single flags.
        let runs = runs_of(&indices(&self.keys, sources));
        for &bb in &batches {
            let mut m = self.blocked.index_axis_mut(Axis(0), bb);
            for &r in &rows {
                let mut row = m.index_axis_mut(Axis(0), r);
                let row = row.as_slice_mut().expect("rows of a standard-layout mask");
                for &(a, b) in &runs {
                    row[a..b].fill(true);
                }
            }
        }
        Ok(())
    }

    /// `[B,1,Q,K]` additive mask: 0 for open edges, [`BLOCKED`] for blocked ones.
    pub fn additive(&self) -> Array4<f32> {
        let (b, q, k) = self.blocked.dim();
        let flags = self.blocked.as_standard_layout();
        let values: Vec<f32> = flags
            .as_slice()
            .expect("standard layout")
            .iter()
            .map(|&x| if x { BLOCKED } else { 0.0 })
            .collect();
        Array4::from_shape_vec((b, 1, q, k), values).expect("b x 1 x q x k values")
    }

    /// Open edges per batch entry.
    pub fn open_edges(&self) -> Vec<usize> {
        let per_entry = self.queries.len() * self.keys.len();
        let flags = self.blocked.as_standard_layout();
        let flags = flags.as_slice().expect("standard layout");
        if per_entry == 0 {
            return vec![0; self.batch()];
        }
        // Over the flat flags: counted on every run, and ndarray's element iterator is slower.
        flags
            .chunks_exact(per_entry)
            .map(|m| per_entry - count_true(m))
            .collect()
    }

    /// Rows with no open key, summed over the batch: they attend uniformly (reference policy).
    pub fn rows_without_open_key(&self) -> usize {
        self.blocked
            .outer_iter()
            .map(|m| m.outer_iter().filter(|row| row.iter().all(|&x| x)).count())
            .sum()
    }

    /// Stacks single-entry masks over the same positions into one batch.
    pub fn stack(masks: &[EdgeMask]) -> Result<EdgeMask> {
        let first = masks
            .first()
            .ok_or_else(|| Error::Input("no masks to stack".into()))?;
        if masks
            .iter()
            .any(|m| m.queries != first.queries || m.keys != first.keys)
        {
            return Err(Error::Input(
                "masks stacked into one batch must cover the same query and key positions".into(),
            ));
        }
        let views: Vec<_> = masks.iter().map(|m| m.blocked.view()).collect();
        Ok(EdgeMask {
            queries: first.queries.clone(),
            keys: first.keys.clone(),
            blocked: ndarray::concatenate(Axis(0), &views).expect("same shapes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sink_opens_only_for_rows_without_an_open_key() {
        // Row 1 of entry 0 reads nothing; every other row keeps its mask.
        let mut m = EdgeMask::full_causal(2, 3);
        m.block(Some(0), &[0, 1], &[1]).unwrap();
        let add = m.additive();
        assert!(with_zero_sink(EdgeMask::full_causal(2, 3).additive().view()).is_none());
        let sunk = with_zero_sink(add.view()).unwrap();
        assert_eq!(sunk.shape(), [2, 1, 3, 4]);
        for b in 0..2 {
            for q in 0..3 {
                let open_sink = b == 0 && q == 1;
                assert_eq!(sunk[[b, 0, q, 0]], if open_sink { 0.0 } else { BLOCKED });
                for k in 0..3 {
                    assert_eq!(
                        sunk[[b, 0, q, k + 1]],
                        add[[b, 0, q, k]],
                        "b={b} q={q} k={k}"
                    );
                }
            }
        }
        assert_eq!("zero".parse::<MaskedRows>().unwrap(), MaskedRows::Zero);
        let err = "none".parse::<MaskedRows>().unwrap_err().to_string();
        assert!(
            err.contains("\"none\"") && err.contains("uniform or zero"),
            "{err}"
        );
    }

    #[test]
    fn causal_mask_opens_s_times_s_plus_one_over_two_edges() {
        for s in [1, 2, 7, 40] {
            assert_eq!(
                EdgeMask::full_causal(1, s).open_edges(),
                vec![s * (s + 1) / 2]
            );
        }
    }

    #[test]
    fn blocking_sources_from_targets_matches_a_hand_built_mask() {
        // Positions 0..6; video = {1,2,3}, last = {5}. Block video -> last.
        let mut m = EdgeMask::full_causal(1, 6);
        m.block(None, &[1, 2, 3], &[5]).unwrap();
        let b = m.blocked();
        for q in 0..6 {
            for k in 0..6 {
                let expected = k > q || (q == 5 && (1..=3).contains(&k));
                assert_eq!(b[[0, q, k]], expected, "q={q} k={k}");
            }
        }
        assert_eq!(m.open_edges(), vec![21 - 3]);
        let add = m.additive();
        assert_eq!(add.shape(), [1, 1, 6, 6]);
        assert_eq!(add[[0, 0, 5, 2]], BLOCKED);
        assert_eq!(add[[0, 0, 5, 4]], 0.0);
    }

    #[test]
    fn extend_masks_address_keys_by_position_past_first() {
        // Past rows 0..3, computed rows 3..5: keys are [0,1,2,3,4], queries [3,4].
        let keys: Vec<usize> = (0..5).collect();
        let mut m = EdgeMask::causal(1, &[3, 4], &keys);
        assert_eq!(m.open_edges(), vec![4 + 5]);
        m.block(None, &[0, 1], &[4]).unwrap();
        assert!(m.blocked()[[0, 1, 0]] && m.blocked()[[0, 1, 1]]);
        assert!(!m.blocked()[[0, 0, 0]]);
        // Positions outside the call are ignored, not errors.
        m.block(None, &[0], &[1]).unwrap();
        assert_eq!(m.open_edges(), vec![7]);
    }

    #[test]
    fn rows_with_no_open_key_are_counted() {
        let mut m = EdgeMask::full_causal(2, 3);
        assert_eq!(m.rows_without_open_key(), 0);
        m.block(Some(1), &[0, 1], &[1]).unwrap();
        assert_eq!(m.rows_without_open_key(), 1);
        assert_eq!(m.open_edges(), vec![6, 4]);
    }

    #[test]
    fn stacking_requires_the_same_positions() {
        let a = EdgeMask::full_causal(1, 3);
        let b = EdgeMask::full_causal(1, 4);
        assert!(EdgeMask::stack(&[a.clone(), b]).is_err());
        assert_eq!(EdgeMask::stack(&[a.clone(), a]).unwrap().batch(), 2);
    }
}
