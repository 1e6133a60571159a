//! A pruned plan gives the dense masked run's logits on the device: the plan gathers rows out
//! layer by layer and restricts masks to them, while the dense run keeps every row under the
//! same masks, so the two agree only if gathering, restricted masks and original positions all
//! work on this device.

use super::{failed, CheckResult, Diff};
use crate::answer::{self, SampleInputs};
use crate::engine;
use crate::error::Result;
use crate::package::Package;
use crate::pathway::{MaskSchedule, PathwayConfig, RandomBlocking, SequenceGroups};
use crate::plan::Plan;

const GROUP: &str = "pruned";
/// Random blocking as a second schedule: it drops rows in other places than any config does.
const RANDOM_RATIO: f64 = 0.5;
const RANDOM_SEED: u64 = 0;

fn compare(
    pkg: &Package,
    inputs: &SampleInputs,
    schedule: &MaskSchedule,
    name: &str,
    tol: f64,
) -> Result<CheckResult> {
    let (embeds, rotary) = answer::embed(pkg, inputs)?;
    let plan = Plan::compile(schedule);
    let pruned = engine::run_plan(pkg, schedule, &plan, &embeds, &rotary)?;
    let dense = engine::run_dense(pkg, schedule, &embeds, &rotary)?;
    let mut d = Diff::default();
    d.arrays(
        pruned.last_logits(),
        dense.last_logits(),
        "last-position logits",
    )?;
    let mut r = d.result(GROUP, name.to_string(), tol);
    let all = plan.num_layers() * schedule.seq_len();
    let computed = plan.rows_computed();
    r.detail.get_or_insert_with(|| {
        if computed < all {
            format!("{computed} of {all} layer rows computed")
        } else {
            format!("the plan dropped no row ({all} layer rows): only the masks were compared")
        }
    });
    Ok(r)
}

/// The published config (scaled to the package's layers) and random blocking, each pruned vs dense.
pub fn check(
    pkg: &Package,
    inputs: &SampleInputs,
    config: &PathwayConfig,
    tol: f64,
) -> Vec<CheckResult> {
    let num_layers = pkg.num_layers();
    let groups = SequenceGroups::from_prompt(&inputs.layout);
    let mut out = Vec::new();
    let name = format!(
        "pathways {} (scaled to {num_layers} layers): pruned plan = dense masks",
        config.name
    );
    out.push(
        config
            .scaled_to(num_layers)
            .resolve(&groups, num_layers)
            .and_then(|s| compare(pkg, inputs, &s, &name, tol))
            .unwrap_or_else(|e| failed(GROUP, &name, &e)),
    );
    let name = format!("random:{RANDOM_RATIO}:{RANDOM_SEED}: pruned plan = dense masks");
    out.push(
        RandomBlocking::new(RANDOM_RATIO, RANDOM_SEED)
            .map(|r| r.schedule(&groups, num_layers))
            .and_then(|s| compare(pkg, inputs, &s, &name, tol))
            .unwrap_or_else(|e| failed(GROUP, &name, &e)),
    );
    out
}
