//! Optimised knockout sweeps equal naive ones on the device: the optimised path reuses the
//! baseline's hidden states and K/V and batches suffixes, which exercises `past` inputs, batch
//! broadcasting and row gathers that a plain prefill never touches; the naive path runs one full
//! forward per knockout from the embeddings, so agreement checks the optimisations themselves.

use std::path::PathBuf;

use super::{failed, CheckResult, Diff};
use crate::answer::{Sample, SampleInputs};
use crate::bench::random_pixels;
use crate::error::{Error, Result};
use crate::knockout::{
    collect_flows, sweep_sample, Execution, KnockoutRecord, NamedTarget, SweepSettings, WindowStyle,
};
use crate::mask::MaskedRows;
use crate::package::Package;

const GROUP: &str = "knockout";
/// The sample the knockout and pruned checks run on: a prompt laid out by the package's own
/// tokenizer and template, with seeded pixels (no video decoding, so builds without FFmpeg check
/// the same way).
pub const QUESTION: &str = "What does the man do after the dog opens the door?";
pub const OPTIONS: [&str; 3] = ["The man closes the box", "It moves left", "Nothing happens"];
const PIXEL_SEED: u64 = 7;
/// At most this many sweep layers (evenly spaced): the naive path costs a full forward per
/// knockout, and the check must stay quick on real-size packages.
const MAX_SWEEP_LAYERS: usize = 8;

/// The check's sample: the built-in question with its first option true, and seeded pixels.
pub fn sample_inputs(pkg: &Package) -> Result<SampleInputs> {
    let layout = pkg.prompt_builder().layout(QUESTION, &OPTIONS, Some(0))?;
    let v = &pkg.manifest.video;
    Ok(SampleInputs {
        pixels: random_pixels(
            (v.input_frames(), 3, v.frame_height, v.frame_width),
            PIXEL_SEED,
        ),
        frame_indices: Vec::new(),
        seconds_per_frame: None,
        layout,
    })
}

/// Sweep layers: all of them on small models, else [`MAX_SWEEP_LAYERS`] spread over the stack.
fn sweep_layers(num_layers: usize) -> Vec<usize> {
    if num_layers <= MAX_SWEEP_LAYERS {
        return (0..num_layers).collect();
    }
    let n = MAX_SWEEP_LAYERS;
    (0..n).map(|i| i * (num_layers - 1) / (n - 1)).collect()
}

/// The first field two records of the same knockout disagree on, other than the probabilities.
fn structural_mismatch(f: &KnockoutRecord, n: &KnockoutRecord) -> Option<String> {
    let what = format!("{} layer {}", f.flow, f.layer);
    if (&f.flow, f.layer, &f.window_layers) != (&n.flow, n.layer, &n.window_layers) {
        return Some(format!("{what}: the runs swept different knockouts"));
    }
    if f.edges_blocked != n.edges_blocked || f.rows_without_open_key != n.rows_without_open_key {
        return Some(format!(
            "{what}: blocked edges {} vs {}, rows without an open key {} vs {}",
            f.edges_blocked, n.edges_blocked, f.rows_without_open_key, n.rows_without_open_key
        ));
    }
    if f.base_token != n.base_token {
        return Some(format!(
            "{what}: baseline answers {} vs {}",
            f.base_token, n.base_token
        ));
    }
    if f.new_token != n.new_token {
        return Some(format!(
            "{what}: argmax after the knockout {} (p {:.6}) vs {} (p {:.6})",
            f.new_token, f.new_prob, n.new_token, n.new_prob
        ));
    }
    None
}

/// One row per window style: optimised records against naive ones.
pub fn check(pkg: &Package, inputs: &SampleInputs, tol: f64) -> Vec<CheckResult> {
    let num_layers = pkg.num_layers();
    let flows = match collect_flows(&NamedTarget::ALL, &[], pkg.manifest.video.num_frames) {
        Ok(f) => f,
        Err(e) => return vec![failed(GROUP, "knockout flows", &e)],
    };
    let sample = Sample {
        id: "check".into(),
        task: None,
        video: PathBuf::new(),
        question: QUESTION.into(),
        options: OPTIONS.iter().map(|s| s.to_string()).collect(),
        answer: Some(0),
        window: None,
    };
    let window = (num_layers / 2 + 1).min(9);
    let layers = sweep_layers(num_layers);
    let tokenizer = pkg.prompt_builder().tokenizer();
    WindowStyle::ALL
        .iter()
        .map(|&style| {
            let name = format!(
                "knockout {style} (window {window}): optimised = naive, {} flows x {} layers",
                flows.len(),
                layers.len()
            );
            let run = |execution| {
                let settings = SweepSettings {
                    window,
                    style,
                    layers: layers.clone(),
                    all_samples: true,
                    execution,
                    masked_rows: MaskedRows::Uniform,
                };
                sweep_sample(
                    pkg,
                    tokenizer,
                    &sample,
                    inputs,
                    &flows,
                    &settings,
                    &mut |_| {},
                )
            };
            let compared = (|| -> Result<CheckResult> {
                let fast = run(Execution::Optimised { max_batch: 4 })?;
                let slow = run(Execution::Naive)?;
                if fast.knockouts.len() != slow.knockouts.len() || fast.knockouts.is_empty() {
                    return Err(Error::Input(format!(
                        "optimised sweep gave {} records, naive {}",
                        fast.knockouts.len(),
                        slow.knockouts.len()
                    )));
                }
                let mut d = Diff::default();
                let mut mismatch = None;
                for (f, n) in fast.knockouts.iter().zip(&slow.knockouts) {
                    d.add(f.p_base, n.p_base);
                    d.add(f.p_knock, n.p_knock);
                    d.add(f.p_true_knock, n.p_true_knock);
                    d.add(f.new_prob, n.new_prob);
                    if mismatch.is_none() {
                        mismatch = structural_mismatch(f, n);
                    }
                }
                let mut r = d.result(GROUP, name.clone(), tol);
                if let Some(m) = mismatch {
                    r.status = super::Status::Fail;
                    r.detail = Some(m);
                } else if r.detail.is_none() {
                    r.detail = Some(format!("{} records", fast.knockouts.len()));
                }
                Ok(r)
            })();
            compared.unwrap_or_else(|e| failed(GROUP, &name, &e))
        })
        .collect()
}
