//! `report.md` of a demo run: the summary table first (what the method claims), then the evidence
//! (per-task accuracy, the cross-frame knockout contrast, the discovered pathways, the benchmark)
//! and the plots, linked by paths relative to the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::DemoSummary;
use crate::error::{Error, Result};
use crate::eval::Summary;

pub const REPORT_FILE: &str = "report.md";

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn task_acc(s: &Summary, task: &str) -> String {
    s.tasks.get(task).map_or("–".into(), |t| {
        format!("{} ({}/{})", pct(t.accuracy), t.correct, t.scored)
    })
}

/// The speed/accuracy frontier on the held-out set, then the validation search behind it.
fn write_frontier(w: &mut String, s: &DemoSummary) {
    let _ = writeln!(w, "## Speed and accuracy\n");
    let _ = writeln!(
        w,
        "| run | accuracy | worst task drop | edges kept | rows computed | predicted | measured (paired) |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|");
    for r in &s.frontier {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {:.2}× | {:.2}× |",
            r.run,
            r.accuracy.map_or("= full (exact)".into(), pct),
            r.worst_drop_points
                .map_or("0 (exact)".into(), |d| format!("{d:+.1} pts")),
            pct(r.edge_share),
            pct(r.row_share),
            r.predicted_speedup,
            r.paired_speedup
        );
    }
    let c = &s.compute;
    let _ = writeln!(
        w,
        "\nHeld-out set, {} samples per task; speedups are of one sample's prefill against full \
         attention (FLOPs predicted by the plan; measured as the median of paired runs, load \
         average {} before). Prefix reuse runs only the question's rows against the cached \
         system and video rows: exact, so its accuracy is full attention's. The compute-aware \
         config (`{}`) is the candidate of the highest predicted speedup among those that kept \
         every task within {} points of full attention on a separate validation set ({} \
         samples, full attention {}); the early exit is the fastest such candidate without a \
         cutoff. Candidates on the validation frontier (`compute.frontier.json` has all {}):\n",
        s.per_task,
        s.bench
            .load_before
            .map_or("unknown".into(), |l| format!("{l:.2}")),
        s.compute_file,
        c.max_drop,
        c.samples,
        pct(c.full_accuracy),
        c.candidates.len()
    );
    let _ = writeln!(w, "```\n{}```\n", c.table());
}

/// Writes `out/report.md`; `plots` are image files under `out` (PNG ones are embedded).
pub fn write_report(out: &Path, s: &DemoSummary, plots: &[PathBuf]) -> Result<PathBuf> {
    let mut md = String::new();
    let w = &mut md;
    let full = &s.bench.modes[0];
    let pruned = s.bench.modes.get(1);
    let _ = writeln!(w, "# vidflow demo\n");
    let _ = writeln!(
        w,
        "Video model `{}`{}; held-out synthetic set `{}` ({} samples per task); knockout sweeps \
         and lens on the first {} samples of each task. Written by `vidflow demo`; every number \
         below is read from the run folders next to this file.\n",
        s.video_model,
        s.image_model
            .as_ref()
            .map_or(String::new(), |m| format!(", image-stage model `{m}`")),
        s.data,
        s.per_task,
        s.knockout_per_task
    );

    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(
        w,
        "| run | accuracy | edges kept | prefill speedup (paired / predicted) |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|");
    let _ = writeln!(
        w,
        "| full attention | {} | 100.0% | 1.00× |",
        pct(s.eval_full.overall.accuracy)
    );
    let _ = writeln!(
        w,
        "| effective pathways only | {} | {} | {} |",
        pct(s.eval_pathways.overall.accuracy),
        pct(s.pathways_edge_share),
        pruned.map_or("–".into(), |m| format!(
            "{:.2}× / {:.2}×",
            m.paired_speedup, m.predicted_speedup
        ))
    );
    let _ = writeln!(
        w,
        "| random blocking, same edge count | {} | {} | – |",
        pct(s.eval_random.overall.accuracy),
        pct(s.random_edge_share)
    );
    if let Some(img) = &s.eval_image {
        let _ = writeln!(
            w,
            "| image-stage model, full attention | {} | 100.0% | – |",
            pct(img.overall.accuracy)
        );
    }
    let _ = writeln!(
        w,
        "\nEdges kept: mean share of the causal attention edges of all layers left open. Random \
         blocking closes a share of {:.4} of each layer's edges at or after the first video token \
         (seed-drawn), which matches the number the pathways close. Speedup: prefill of one \
         sample, full run {:.1} ms (p50).\n",
        s.random_ratio, full.p50_ms
    );

    write_frontier(w, s);

    let _ = writeln!(w, "## Accuracy per task\n");
    let mut header = "| task | video, full | video, pathways | video, random |".to_string();
    let mut rule = "|---|---:|---:|---:|".to_string();
    if s.eval_image.is_some() {
        header += " image stage, full |";
        rule += "---:|";
    }
    let _ = writeln!(w, "{header}\n{rule}");
    let tasks: Vec<&String> = s.eval_full.tasks.keys().collect();
    for t in tasks
        .iter()
        .copied()
        .chain(std::iter::once(&"overall".to_string()))
    {
        let row = |sum: &Summary| {
            if t == "overall" {
                format!(
                    "{} ({}/{})",
                    pct(sum.overall.accuracy),
                    sum.overall.correct,
                    sum.overall.scored
                )
            } else {
                task_acc(sum, t)
            }
        };
        let mut line = format!(
            "| {t} | {} | {} | {} |",
            row(&s.eval_full),
            row(&s.eval_pathways),
            row(&s.eval_random)
        );
        if let Some(img) = &s.eval_image {
            line += &format!(" {} |", row(img));
        }
        let _ = writeln!(w, "{line}");
    }

    let _ = writeln!(w, "\n## Cross-frame attention\n");
    let _ = writeln!(
        w,
        "Mean %change of the true answer's probability when every frame is kept from attending \
         to earlier frames in a window of layers around the given one (video model: {}; \
         image-stage model: every sample, since it is near chance).\n",
        if s.knockout_all_samples {
            "every sample"
        } else {
            "the samples it answers correctly"
        }
    );
    let _ = writeln!(
        w,
        "| layer | video model | image-stage model |\n|---:|---:|---:|"
    );
    for (i, v) in s.cross_frame_video.iter().enumerate() {
        let img = s.cross_frame_image.get(i).map_or("–".into(), |c| {
            format!("{:+.1}% (n={})", c.mean_pct_change_true, c.samples)
        });
        let _ = writeln!(
            w,
            "| {} | {:+.1}% (n={}) | {img} |",
            v.layer, v.mean_pct_change_true, v.samples
        );
    }

    let _ = writeln!(w, "\n## Discovered pathways\n");
    let _ = writeln!(
        w,
        "Flows whose knockout lowers the prediction's probability by more than the threshold \
         stay open in those layers; when verified, the whole config then runs on the same \
         samples and, while it lowers that probability of some task by more than the threshold \
         on average, the closed interval whose reopening recovers that worst task most is \
         reopened (`{}`):\n",
        s.pathways_file
    );
    if let Some(v) = s.discovery_verified_pct_change {
        let _ = writeln!(
            w,
            "Worst task's mean change of the predicted answer's probability under the final \
             config: {v:+.1}%.\n"
        );
    }
    for f in &s.discovery {
        let open = f.open_ranges();
        let mut line = if open.is_empty() {
            "blocked in every layer".to_string()
        } else {
            format!("open in layers {open}")
        };
        let reopened: Vec<String> = f
            .intervals
            .iter()
            .filter(|i| i.reopened)
            .map(|i| format!("{}-{}", i.first, i.last))
            .collect();
        if !reopened.is_empty() {
            line += &format!(" (reopened by verification: {})", reopened.join(", "));
        }
        let _ = writeln!(w, "- {}: {line}", f.flow);
    }

    let _ = writeln!(w, "\n## Prefill benchmark\n");
    let _ = writeln!(w, "```\n{}```\n", s.bench.table());

    let _ = writeln!(w, "## Plots\n");
    for p in plots
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
    {
        let rel = p.strip_prefix(out).unwrap_or(p).display().to_string();
        let _ = writeln!(w, "![{rel}]({rel})\n");
    }

    let path = out.join(REPORT_FILE);
    std::fs::write(&path, md).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
