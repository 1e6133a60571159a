//! The summary of a knockout run: per flow and sweep layer, the mean %change (prediction and
//! ground truth) with its 95% interval, accuracy after the knockout, and sample counts.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::stats::{mean_interval, MeanInterval};
use crate::error::{Error, Result};
use crate::knockout::{KnockoutRecord, SampleRecord, SampleStatus};

/// The scope of rows over every task.
pub const ALL_TASKS: &str = "all";

/// One (task scope, flow, layer) row.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowLayerStats {
    /// [`ALL_TASKS`] or a task name (rows per task appear when the data holds several tasks).
    pub task: String,
    pub target: String,
    pub flow: String,
    /// 0-based sweep layer.
    pub layer: usize,
    pub pred: MeanInterval,
    pub truth: MeanInterval,
    /// % of the knocked-out samples whose new argmax is the ground-truth token.
    pub acc_knock: f64,
}

/// Sample counts of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleCounts {
    pub used: usize,
    pub skipped_wrong: usize,
    pub failed: usize,
    /// Samples the baseline answers correctly (among those that ran).
    pub base_correct: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KnockoutSummary {
    pub rows: Vec<FlowLayerStats>,
    /// Counts per scope, in the order scopes appear in `rows`.
    pub counts: Vec<(String, SampleCounts)>,
}

impl KnockoutSummary {
    pub fn counts_of(&self, task: &str) -> SampleCounts {
        self.counts
            .iter()
            .find(|(t, _)| t == task)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }
}

fn task_of(t: &Option<String>) -> String {
    t.clone().unwrap_or_default()
}

/// Summarises records; flows keep the order they first appear in, layers ascend.
pub fn summarise(records: &[KnockoutRecord], samples: &[SampleRecord]) -> KnockoutSummary {
    let tasks: BTreeSet<String> = samples.iter().map(|s| task_of(&s.task)).collect();
    let mut scopes = vec![ALL_TASKS.to_string()];
    if tasks.len() > 1 {
        scopes.extend(tasks);
    }
    let mut flows: Vec<(String, String)> = Vec::new();
    for r in records {
        if !flows.iter().any(|(f, _)| f == &r.flow) {
            flows.push((r.flow.clone(), r.target.clone()));
        }
    }
    let layers: BTreeSet<usize> = records.iter().map(|r| r.layer).collect();
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for scope in &scopes {
        let in_scope = |t: &Option<String>| scope == ALL_TASKS || &task_of(t) == scope;
        let mut c = SampleCounts::default();
        for s in samples.iter().filter(|s| in_scope(&s.task)) {
            match s.status {
                SampleStatus::Used => c.used += 1,
                SampleStatus::SkippedWrong => c.skipped_wrong += 1,
                SampleStatus::Failed => c.failed += 1,
            }
            if s.base_correct == Some(true) {
                c.base_correct += 1;
            }
        }
        counts.push((scope.clone(), c));
        for (flow, target) in &flows {
            for &layer in &layers {
                let sel: Vec<&KnockoutRecord> = records
                    .iter()
                    .filter(|r| &r.flow == flow && r.layer == layer && in_scope(&r.task))
                    .collect();
                let pred: Vec<f64> = sel.iter().map(|r| r.pct_change_pred).collect();
                let truth: Vec<f64> = sel.iter().map(|r| r.pct_change_true).collect();
                let (Some(pred), Some(truth)) = (mean_interval(&pred), mean_interval(&truth))
                else {
                    continue;
                };
                let correct = sel.iter().filter(|r| r.new_correct).count();
                rows.push(FlowLayerStats {
                    task: scope.clone(),
                    target: target.clone(),
                    flow: flow.clone(),
                    layer,
                    pred,
                    truth,
                    acc_knock: 100.0 * correct as f64 / sel.len() as f64,
                });
            }
        }
    }
    KnockoutSummary { rows, counts }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(x: f64) -> String {
    format!("{x:.6}")
}

fn interval(m: &MeanInterval) -> (String, String) {
    m.interval
        .map(|(lo, hi)| (num(lo), num(hi)))
        .unwrap_or_default()
}

pub const SUMMARY_HEADER: &str = "task,target,flow,layer,layer_1,n,mean_pct_change_pred,\
ci95_low_pred,ci95_high_pred,mean_pct_change_true,ci95_low_true,ci95_high_true,acc_knock,\
samples_used,samples_skipped_wrong,samples_failed";

/// The summary as CSV text (intervals empty where fewer than two samples).
pub fn summary_csv(summary: &KnockoutSummary) -> String {
    let mut out = String::from(SUMMARY_HEADER);
    out.push('\n');
    for r in &summary.rows {
        let c = summary.counts_of(&r.task);
        let (pl, ph) = interval(&r.pred);
        let (tl, th) = interval(&r.truth);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.task),
            csv_field(&r.target),
            csv_field(&r.flow),
            r.layer,
            r.layer + 1,
            r.pred.n,
            num(r.pred.mean),
            pl,
            ph,
            num(r.truth.mean),
            tl,
            th,
            num(r.acc_knock),
            c.used,
            c.skipped_wrong,
            c.failed
        );
    }
    out
}

pub fn write_summary_csv(path: &Path, summary: &KnockoutSummary) -> Result<()> {
    std::fs::write(path, summary_csv(summary)).map_err(|e| Error::io(path, e))
}

pub const SAMPLES_HEADER: &str = "task,samples,used,skipped_wrong,failed,base_accuracy";

/// Sample counts per scope as CSV; `base_accuracy` is % correct among the samples that ran.
pub fn samples_csv(summary: &KnockoutSummary) -> String {
    let mut out = String::from(SAMPLES_HEADER);
    out.push('\n');
    for (task, c) in &summary.counts {
        let ran = c.used + c.skipped_wrong;
        let acc = if ran > 0 {
            num(100.0 * c.base_correct as f64 / ran as f64)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            csv_field(task),
            ran + c.failed,
            c.used,
            c.skipped_wrong,
            c.failed,
            acc
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knockout::WindowStyle;

    fn rec(
        sample: &str,
        task: &str,
        flow: &str,
        layer: usize,
        pred: f64,
        new_correct: bool,
    ) -> KnockoutRecord {
        KnockoutRecord {
            sample_id: sample.into(),
            task: Some(task.into()),
            flow: flow.into(),
            target: "t".into(),
            layer,
            layer_1: layer + 1,
            window: 1,
            window_style: WindowStyle::Center,
            window_layers: vec![layer],
            p_base: 0.5,
            p_knock: 0.5,
            pct_change_pred: pred,
            p_true_base: 0.5,
            p_true_knock: 0.5,
            pct_change_true: -pred,
            base_token: 1,
            base_answer: "A".into(),
            true_token: 1,
            true_answer: "A".into(),
            new_token: 1,
            new_answer: "A".into(),
            new_prob: 0.5,
            base_correct: true,
            new_correct,
            edges_blocked: 1,
            rows_without_open_key: 0,
        }
    }

    fn status(
        sample: &str,
        task: &str,
        status: SampleStatus,
        correct: Option<bool>,
    ) -> SampleRecord {
        SampleRecord {
            sample_id: sample.into(),
            task: Some(task.into()),
            status,
            error: None,
            base_answer: None,
            true_answer: None,
            p_base: None,
            base_correct: correct,
            knockouts: 0,
        }
    }

    #[test]
    fn rows_per_scope_flow_and_layer_with_counts() {
        let records = vec![
            rec("s1", "x", "b ↛ c", 0, -10.0, true),
            rec("s1", "x", "a, b", 0, 1.0, true),
            rec("s2", "y", "b ↛ c", 0, -30.0, false),
            rec("s2", "y", "a, b", 0, 3.0, false),
        ];
        let samples = vec![
            status("s1", "x", SampleStatus::Used, Some(true)),
            status("s2", "y", SampleStatus::Used, Some(true)),
            status("s3", "y", SampleStatus::SkippedWrong, Some(false)),
            status("s4", "y", SampleStatus::Failed, None),
        ];
        let s = summarise(&records, &samples);
        // all + two tasks, two flows, one layer; flows in first-seen order.
        assert_eq!(s.rows.len(), 6);
        let r = &s.rows[0];
        assert_eq!(
            (r.task.as_str(), r.flow.as_str(), r.pred.n),
            ("all", "b ↛ c", 2)
        );
        assert_eq!(
            (r.pred.mean, r.truth.mean, r.acc_knock),
            (-20.0, 20.0, 50.0)
        );
        assert_eq!(s.rows[1].flow, "a, b");
        let c = s.counts_of("y");
        assert_eq!(
            (c.used, c.skipped_wrong, c.failed, c.base_correct),
            (1, 1, 1, 1)
        );
        let csv = summary_csv(&s);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], SUMMARY_HEADER);
        assert!(
            lines[2].starts_with("all,t,\"a, b\",0,1,2,2.000000,"),
            "{}",
            lines[2]
        );
        assert!(lines[1].ends_with(",50.000000,2,1,1"), "{}", lines[1]);
        let samples = samples_csv(&s);
        assert_eq!(samples.lines().nth(1), Some("all,4,2,1,1,66.666667"));
        assert_eq!(samples.lines().nth(3), Some("y,3,1,1,1,50.000000"));
    }
}
