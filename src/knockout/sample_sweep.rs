//! The whole sweep of one prepared sample: baseline, the wrong-answer rule, every knockout, and
//! its records.

use tokenizers::Tokenizer;

use super::baseline::{run_baseline, Baseline, Readout};
use super::flows::Flow;
use super::record::{pct_change, KnockoutRecord, SampleRecord, SampleStatus};
use super::resolve::ResolvedFlow;
use super::sweep::{plan_knockouts, run_knockouts, Execution, Knockout, SweepCost};
use super::window::WindowStyle;
use crate::answer::{Sample, SampleInputs};
use crate::error::Result;
use crate::mask::MaskedRows;
use crate::package::Package;

/// How every sample of a run is swept.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSettings {
    /// Window size k.
    pub window: usize,
    pub style: WindowStyle,
    /// Sweep layers, 0-based.
    pub layers: Vec<usize>,
    /// Also knock out samples the baseline answers wrongly.
    pub all_samples: bool,
    pub execution: Execution,
    /// What rows left with no open key attend to (design.md §3).
    pub masked_rows: MaskedRows,
}

impl SweepSettings {
    /// The knockouts of one sample for `num_flows` flows.
    pub fn knockouts(&self, num_flows: usize, num_layers: usize) -> Vec<Knockout> {
        plan_knockouts(num_flows, &self.layers, self.window, self.style, num_layers)
    }
}

/// A sample's status line and its knockout records (empty unless used).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOutcome {
    pub sample: SampleRecord,
    pub knockouts: Vec<KnockoutRecord>,
    /// What the knockouts computed (zero when the sample was skipped).
    pub cost: SweepCost,
}

/// The status line of a sample that could not be run.
pub fn failed_sample(sample: &Sample, error: &str) -> SampleRecord {
    SampleRecord {
        sample_id: sample.id.clone(),
        task: sample.task.clone(),
        status: SampleStatus::Failed,
        error: Some(error.to_string()),
        base_answer: None,
        true_answer: None,
        p_base: None,
        base_correct: None,
        knockouts: 0,
    }
}

fn token_text(tokenizer: &Tokenizer, token: i64) -> String {
    u32::try_from(token)
        .ok()
        .and_then(|t| tokenizer.decode(&[t], false).ok())
        .unwrap_or_else(|| format!("<{token}>"))
}

/// Runs the baseline and, unless the sample is skipped, every knockout of `flows`.
/// `progress` is told how many knockouts each step finished (all of them at once when skipped).
pub fn sweep_sample(
    pkg: &Package,
    tokenizer: &Tokenizer,
    sample: &Sample,
    inputs: &SampleInputs,
    flows: &[Flow],
    settings: &SweepSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<SampleOutcome> {
    let num_layers = pkg.manifest.num_layers;
    let knockouts = settings.knockouts(flows.len(), num_layers);
    // Resolve first: a flow naming a group this prompt lacks fails before any model work.
    let resolved: Vec<ResolvedFlow> = flows
        .iter()
        .map(|f| ResolvedFlow::new(f, &inputs.layout))
        .collect::<Result<_>>()?;
    let baseline = run_baseline(pkg, inputs)?;
    let truth = inputs
        .layout
        .answer
        .expect("run_baseline checked the answer");
    let true_answer = pkg.manifest.prompt.option_labels[truth].clone();
    let base_answer = token_text(tokenizer, baseline.answer_token);
    let used = baseline.correct() || settings.all_samples;
    let mut sample_record = SampleRecord {
        sample_id: sample.id.clone(),
        task: sample.task.clone(),
        status: if used {
            SampleStatus::Used
        } else {
            SampleStatus::SkippedWrong
        },
        error: None,
        base_answer: Some(base_answer.clone()),
        true_answer: Some(true_answer.clone()),
        p_base: Some(baseline.readout.p_answer),
        base_correct: Some(baseline.correct()),
        knockouts: 0,
    };
    if !used {
        progress(knockouts.len());
        return Ok(SampleOutcome {
            sample: sample_record,
            knockouts: Vec::new(),
            cost: SweepCost::default(),
        });
    }
    let swept = run_knockouts(
        pkg,
        &baseline,
        &resolved,
        &knockouts,
        settings.execution,
        settings.masked_rows,
        progress,
    )?;
    let readouts = swept.readouts;
    let records: Vec<KnockoutRecord> = knockouts
        .iter()
        .zip(&readouts)
        .map(|(k, r)| {
            record(
                sample,
                &flows[k.flow],
                &resolved[k.flow],
                k,
                settings,
                &baseline,
                r,
                RecordText {
                    base_answer: &base_answer,
                    true_answer: &true_answer,
                    new_answer: token_text(tokenizer, r.argmax_token),
                },
            )
        })
        .collect();
    sample_record.knockouts = records.len();
    Ok(SampleOutcome {
        sample: sample_record,
        knockouts: records,
        cost: swept.cost,
    })
}

struct RecordText<'a> {
    base_answer: &'a str,
    true_answer: &'a str,
    new_answer: String,
}

#[allow(clippy::too_many_arguments)]
fn record(
    sample: &Sample,
    flow: &Flow,
    resolved: &ResolvedFlow,
    k: &Knockout,
    settings: &SweepSettings,
    baseline: &Baseline,
    r: &Readout,
    text: RecordText<'_>,
) -> KnockoutRecord {
    let b = &baseline.readout;
    let blocked_layers = if resolved.first_row.is_some() {
        k.window.len()
    } else {
        0
    };
    KnockoutRecord {
        sample_id: sample.id.clone(),
        task: sample.task.clone(),
        flow: flow.name.clone(),
        target: flow.target.clone(),
        layer: k.layer,
        layer_1: k.layer + 1,
        window: settings.window,
        window_style: settings.style,
        window_layers: k.window.clone(),
        p_base: b.p_answer,
        p_knock: r.p_answer,
        pct_change_pred: pct_change(b.p_answer, r.p_answer),
        p_true_base: b.p_truth,
        p_true_knock: r.p_truth,
        pct_change_true: pct_change(b.p_truth, r.p_truth),
        base_token: baseline.answer_token,
        base_answer: text.base_answer.to_string(),
        true_token: baseline.truth_token,
        true_answer: text.true_answer.to_string(),
        new_token: r.argmax_token,
        new_answer: text.new_answer,
        new_prob: r.argmax_prob,
        base_correct: baseline.correct(),
        new_correct: r.argmax_token == baseline.truth_token,
        edges_blocked: resolved.edges_blocked_per_layer * blocked_layers,
        rows_without_open_key: resolved.rows_without_open_key_per_layer * blocked_layers,
    }
}
