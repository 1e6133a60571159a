//! Running a mask schedule: `run_plan` computes only a compiled plan's rows at each layer
//! (dropped rows are gathered out, positions and rotary tables keep their original values), and
//! `run_dense` runs the same masks over every row, as the published reference does. Both give the
//! same logits at the plan's output positions.

use std::collections::HashMap;

use ndarray::{Array2, Array4, ArrayView1, Axis};

use super::forward::{forward_until, ForwardSpec, Keep};
use super::inputs::{project, Rotary};
use super::layer::{run_layer, LayerMask};
use super::masks::{schedule_keys, Masks};
use super::prefix::Prefix;
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows, BLOCKED};
use crate::package::{Package, Projection};
use crate::pathway::MaskSchedule;
use crate::plan::Plan;
use crate::runtime::{Tensor, Upload};

/// Logits at the output positions, and what was computed to get them.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    /// Positions whose logits are returned, sorted.
    pub positions: Vec<usize>,
    /// `[N,V]`, final norm + LM head, one row per entry of `positions`.
    pub logits: Array2<f32>,
    /// Rows computed at each layer.
    pub rows_per_layer: Vec<usize>,
}

impl PlanOutput {
    /// Logits of the last output position (the answer position for a default plan).
    pub fn last_logits(&self) -> ArrayView1<'_, f32> {
        self.logits.row(self.logits.nrows() - 1)
    }
}

/// The additive mask `[1,1,Q,Q]` of a schedule's layer mask (batch 1 over positions `0..S`)
/// restricted to query and key positions `rows` (sorted, distinct).
pub fn restricted_mask(mask: &EdgeMask, rows: &[usize]) -> Array4<f32> {
    if rows.len() == mask.keys().len() {
        return mask.additive();
    }
    restricted_keys(mask, rows, 0, rows)
}

/// The additive mask `[1,1,Q,P+K]` of query positions `rows` reading the prefix keys `0..p`
/// followed by key positions `keys`.
pub(crate) fn restricted_keys(
    mask: &EdgeMask,
    rows: &[usize],
    p: usize,
    keys: &[usize],
) -> Array4<f32> {
    let s = mask.keys().len();
    let blocked = mask.blocked().as_standard_layout();
    let blocked = blocked.as_slice().expect("standard layout");
    let n = p + keys.len();
    let mut out = vec![0.0f32; rows.len() * n];
    for (dst, &q) in out.chunks_exact_mut(n).zip(rows) {
        let src = &blocked[q * s..(q + 1) * s];
        for (d, &b) in dst[..p].iter_mut().zip(&src[..p]) {
            if b {
                *d = BLOCKED;
            }
        }
        for (d, &k) in dst[p..].iter_mut().zip(keys) {
            if src[k] {
                *d = BLOCKED;
            }
        }
    }
    Array4::from_shape_vec((1, 1, rows.len(), n), out).expect("q x n values")
}

/// `embeds` and `rotary` cover positions `start..S` (`start` = 0, or a prefix's length).
fn check_inputs(
    pkg: &Package,
    schedule: &MaskSchedule,
    start: usize,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<()> {
    let s = schedule.seq_len();
    if schedule.model_layers() != pkg.num_layers() {
        return Err(Error::Input(format!(
            "the mask schedule is for {} layers, the model has {}",
            schedule.model_layers(),
            pkg.num_layers()
        )));
    }
    let n = s - start;
    if embeds.shape() != [1, n, pkg.manifest.hidden_size] {
        return Err(Error::Input(format!(
            "input embeddings have shape {:?}, the schedule needs [1, {n}, {}]",
            embeds.shape(),
            pkg.manifest.hidden_size
        )));
    }
    if rotary.cos.shape()[..2] != [1, n] || rotary.sin.shape() != rotary.cos.shape() {
        return Err(Error::Input(format!(
            "rotary tables have shape {:?}, expected [1, {n}, R] for positions {start}..{s}",
            rotary.cos.shape()
        )));
    }
    Ok(())
}

/// Indices of `wanted` (sorted) inside `have` (sorted); an error names a missing position.
fn indices_in(have: &[usize], wanted: &[usize], what: &str) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|p| {
            have.binary_search(p).map_err(|_| {
                Error::Input(format!(
                    "plan: {what} needs position {p}, which was not computed"
                ))
            })
        })
        .collect()
}

/// Runs `plan` (compiled from `schedule`) on `embeds [1,S,D]` with rotary tables of positions
/// `0..S`: each layer computes only its planned rows, under the schedule's mask restricted to
/// them. Rows are dropped by device-side gathers; a layer whose rows and mask equal an earlier
/// layer's reuses that layer's uploaded mask and rotary rows.
pub fn run_plan(
    pkg: &Package,
    schedule: &MaskSchedule,
    plan: &Plan,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<PlanOutput> {
    run_plan_from(pkg, schedule, plan, None, embeds, rotary)
}

/// [`run_plan`] after a computed prefix (positions `0..P`, every row, under the same schedule):
/// `embeds` and `rotary` cover positions `P..S`, and each layer computes its planned rows from
/// `P` on, reading the prefix's K/V as `past`.
pub fn run_plan_after(
    pkg: &Package,
    schedule: &MaskSchedule,
    plan: &Plan,
    prefix: &Prefix,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<PlanOutput> {
    if prefix.num_layers() < plan.num_layers() || prefix.len >= plan.seq_len {
        return Err(Error::Input(format!(
            "a prefix of {} positions through {} layers cannot serve a plan of {} positions \
             through {} layers",
            prefix.len,
            prefix.num_layers(),
            plan.seq_len,
            plan.num_layers()
        )));
    }
    run_plan_from(pkg, schedule, plan, Some(prefix), embeds, rotary)
}

fn run_plan_from(
    pkg: &Package,
    schedule: &MaskSchedule,
    plan: &Plan,
    prefix: Option<&Prefix>,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<PlanOutput> {
    let start = prefix.map_or(0, |p| p.len);
    check_inputs(pkg, schedule, start, embeds, rotary)?;
    if plan.seq_len != schedule.seq_len() || plan.num_layers() != schedule.num_layers() {
        return Err(Error::Input(format!(
            "the plan covers {} positions and {} layers, the schedule {} and {}",
            plan.seq_len,
            plan.num_layers(),
            schedule.seq_len(),
            schedule.num_layers()
        )));
    }
    let m = &pkg.manifest;
    let data = pkg.data();
    let no_past = match prefix {
        Some(_) => None,
        None => {
            let z = Array4::<f32>::zeros((1, m.num_kv_heads, 0, m.head_dim));
            Some(data.upload(z.view().into_dyn(), Upload::Index)?)
        }
    };
    let mask_keys = schedule_keys(schedule);
    // Rows from `start` on; positions before it are the prefix's, all present as past K/V.
    let own = |rows: &[usize]| -> Vec<usize> {
        let from = rows.partition_point(|&r| r < start);
        rows[from..].to_vec()
    };
    // Everything the host prepares is prepared before the first layer runs: host work between
    // two ONNX Runtime calls lets its worker threads fall asleep, and waking them costs more.
    // Per layer: the gather that drops rows (if any), its row set (layers with equal rows share
    // rotary rows) and its mask (equal rows and mask, one upload).
    struct Step {
        gather: Option<Vec<usize>>,
        set: usize,
        mask: (usize, usize),
    }
    let mut row_sets: Vec<(Vec<usize>, Option<Rotary>)> = Vec::new();
    let mut masks: HashMap<(usize, usize), LayerMask> = HashMap::new();
    let mut steps = Vec::with_capacity(plan.layers.len());
    let mut have: Vec<usize> = (start..plan.seq_len).collect();
    for (l, lp) in plan.layers.iter().enumerate() {
        let rows = own(&lp.rows);
        let gather = if rows != have {
            Some(indices_in(&have, &rows, &format!("layer {l}"))?)
        } else {
            None
        };
        let set = match row_sets.iter().position(|(r, _)| *r == rows) {
            Some(i) => i,
            None => {
                // All rows: the caller's tables as they are.
                let rot = if rows.len() == plan.seq_len - start {
                    None
                } else {
                    let local: Vec<usize> = rows.iter().map(|r| r - start).collect();
                    Some(rotary.rows(pkg, &local)?)
                };
                row_sets.push((rows.clone(), rot));
                row_sets.len() - 1
            }
        };
        let key = (set, mask_keys[l]);
        if let std::collections::hash_map::Entry::Vacant(e) = masks.entry(key) {
            let host = if start == 0 {
                restricted_mask(schedule.layer(l), &rows)
            } else {
                restricted_keys(schedule.layer(l), &rows, start, &rows)
            };
            e.insert(LayerMask::upload_owned(pkg, host, MaskedRows::Uniform)?);
        }
        steps.push(Step {
            gather,
            set,
            mask: key,
        });
        have = rows;
    }
    let mut hidden: Option<Tensor> = None;
    for (l, step) in steps.iter().enumerate() {
        let input = hidden.as_ref().unwrap_or(embeds);
        let gathered = match &step.gather {
            Some(idx) => Some(data.gather(input, 1, idx)?),
            None => None,
        };
        let input = gathered.as_ref().unwrap_or(input);
        let rot = row_sets[step.set].1.as_ref().unwrap_or(rotary);
        let (pk, pv) = match prefix {
            Some(p) => (&p.kv[l].key, &p.kv[l].value),
            None => {
                let z = no_past.as_ref().expect("no prefix");
                (z, z)
            }
        };
        let out = run_layer(
            pkg,
            l,
            input,
            &rot.cos,
            &rot.sin,
            pk,
            pv,
            &masks[&step.mask],
            false,
        )?;
        hidden = Some(out.hidden);
    }
    let last = hidden.as_ref().unwrap_or(embeds);
    let idx = indices_in(&have, &plan.outputs, "the output")?;
    let out_rows = data.gather(last, 1, &idx)?;
    let logits = project(pkg, Projection::NormHead, &out_rows)?;
    Ok(PlanOutput {
        positions: plan.outputs.clone(),
        logits: logits.index_axis_move(Axis(0), 0),
        rows_per_layer: plan.layers.iter().map(|l| l.rows.len()).collect(),
    })
}

/// Runs the schedule's masks over every row (no dropping) and returns the last position's logits.
pub fn run_dense(
    pkg: &Package,
    schedule: &MaskSchedule,
    embeds: &Tensor,
    rotary: &Rotary,
) -> Result<PlanOutput> {
    run_dense_from(pkg, schedule, 0, embeds, rotary, false).map(|(out, _)| out)
}

/// [`run_dense`] from layer `start`, whose input (all S rows) is `hidden`: a caller that kept an
/// earlier run's residual stream reruns only the layers whose masks changed. With `keep_hidden`
/// the inputs of layers `start..=L` come back too (entry 0 = `hidden`), on the device.
pub fn run_dense_from(
    pkg: &Package,
    schedule: &MaskSchedule,
    start: usize,
    hidden: &Tensor,
    rotary: &Rotary,
    keep_hidden: bool,
) -> Result<(PlanOutput, Vec<Tensor>)> {
    check_inputs(pkg, schedule, 0, hidden, rotary)?;
    let s = schedule.seq_len();
    let masks = Masks::schedule(schedule);
    let out = forward_until(
        pkg,
        ForwardSpec {
            start_layer: start,
            hidden,
            rotary,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: keep_hidden,
                ..Keep::default()
            },
        },
        schedule.num_layers(),
    )?;
    let logits = project(pkg, Projection::NormHead, &out.last_row(pkg)?)?;
    let plan = PlanOutput {
        positions: vec![s - 1],
        logits: logits.index_axis_move(Axis(0), 0),
        rows_per_layer: vec![s; schedule.num_layers()],
    };
    Ok((plan, out.hidden_states))
}
