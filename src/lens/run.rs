//! `vidflow lens` over a sample list: per (sample, layer) the option probabilities at the last
//! position (design.md §3, layer-wise answer probability) and, with a keyword list, how many video
//! tokens' top-1 lens token falls in each keyword category; then a summary CSV and plots.
//!
//! Files in the output folder (rewritten by each run): `lens.jsonl`, `lens_samples.jsonl`,
//! `lens_summary.csv`, `plots/lens_option_prob.{png,svg}`, `plots/lens_concepts.{png,svg}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::keywords::KeywordSet;
use super::trace::{last_position_lens, top1_tokens};
use crate::answer::{prefetch_ordered, prepare, Sample, SampleInputs};
use crate::error::{Error, Result};
use crate::knockout::{run_baseline, SampleStatus};
use crate::package::{Package, Projection};
use crate::prompt::PromptBuilder;
use crate::report::{
    clear_finished, mark_finished, mean_interval, read_settings, select_shard, write_line_plot,
    write_settings, FolderLock, InputDigests, JsonlWriter, LinePlot, Progress, Series, Shard,
};

pub const LENS_FILE: &str = "lens.jsonl";
pub const LENS_SAMPLES_FILE: &str = "lens_samples.jsonl";
pub const LENS_SUMMARY_FILE: &str = "lens_summary.csv";

/// One (sample, layer) of the lens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensRecord {
    pub sample_id: String,
    pub task: Option<String>,
    pub layer: usize,
    pub layer_1: usize,
    pub projection: String,
    /// Probability (softmax over the vocabulary) of the true option's label token.
    pub p_true: f64,
    /// Probabilities of the false options' label tokens, in option order.
    pub p_false: Vec<f64>,
    /// Probability of the model's final prediction token.
    pub p_pred: f64,
    pub top1_token: i64,
    pub top1_answer: String,
    pub top1_prob: f64,
    pub base_correct: bool,
    /// Video tokens whose top-1 token is in each keyword category (empty without keywords).
    pub concept_counts: BTreeMap<String, usize>,
    /// The most frequent top-1 tokens over the video (at most five), with their counts.
    pub top_video_tokens: Vec<(String, usize)>,
}

/// One line of `lens_samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensSample {
    pub sample_id: String,
    pub task: Option<String>,
    pub status: SampleStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LensSettings {
    pub projection: Projection,
    pub keywords: Option<KeywordSet>,
    pub all_samples: bool,
    pub out_dir: PathBuf,
    pub workers: usize,
    pub progress: bool,
    /// What the run reads (package, data, keyword list), recorded in `lens_run.json`.
    pub inputs: InputDigests,
    /// Run only shard `(k, n)` of the samples.
    pub shard: Option<Shard>,
}

pub const LENS_RUN_FILE: &str = "lens_run.json";

/// `lens_run.json`: what a lens folder was made with, so that `vidflow merge` can join shards of
/// one run (and write their reports) and refuse shards of different ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensRun {
    pub model: String,
    pub num_layers: usize,
    pub projection: String,
    pub all_samples: bool,
    /// Keyword categories, in report order.
    pub categories: Vec<String>,
    pub inputs: InputDigests,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<usize>,
}

impl LensRun {
    pub fn read(dir: &Path) -> Result<Option<LensRun>> {
        read_settings(&dir.join(LENS_RUN_FILE), "a lens run record")
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_settings(&dir.join(LENS_RUN_FILE), self)
    }

    /// The title of the run's plots.
    pub fn title(&self) -> String {
        format!("{}, {}", self.model, self.projection)
    }
}

fn projection_name(p: Projection) -> &'static str {
    match p {
        Projection::NormHead => "norm+head",
        Projection::Head => "head",
        Projection::Embed => "embed",
    }
}

fn text_of(builder: &PromptBuilder, t: i64) -> String {
    u32::try_from(t)
        .ok()
        .and_then(|t| builder.tokenizer().decode(&[t], false).ok())
        .unwrap_or_else(|| format!("<{t}>"))
}

/// The lens records of one prepared sample, or `None` when it is skipped (answered wrongly).
pub fn lens_sample(
    pkg: &Package,
    builder: &PromptBuilder,
    sample: &Sample,
    inputs: &SampleInputs,
    settings: &LensSettings,
) -> Result<Option<Vec<LensRecord>>> {
    let baseline = run_baseline(pkg, inputs)?;
    if !baseline.correct() && !settings.all_samples {
        return Ok(None);
    }
    let layout = &inputs.layout;
    let truth = layout.answer.expect("run_baseline checked the answer");
    let outputs = &baseline.hidden[1..];
    let lens = last_position_lens(
        pkg,
        outputs,
        settings.projection,
        &layout.option_token_ids,
        baseline.answer_token,
    )?;
    let video = layout.video_range();
    let top1 = top1_tokens(pkg, outputs, settings.projection, video.clone())?;
    let mut texts: BTreeMap<i64, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(lens.len());
    for (l, tokens) in lens.iter().zip(&top1) {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for &t in tokens {
            *counts.entry(t).or_default() += 1;
        }
        for &t in counts.keys() {
            texts.entry(t).or_insert_with(|| text_of(builder, t));
        }
        let mut concept_counts = BTreeMap::new();
        if let Some(k) = &settings.keywords {
            for name in k.category_names() {
                concept_counts.insert(name, 0);
            }
            for (t, n) in &counts {
                for c in k.categories_of(&texts[t]) {
                    *concept_counts
                        .get_mut(&k.categories[c].0)
                        .expect("category") += n;
                }
            }
        }
        let mut ranked: Vec<(String, usize)> =
            counts.iter().map(|(t, &n)| (texts[t].clone(), n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(5);
        out.push(LensRecord {
            sample_id: sample.id.clone(),
            task: sample.task.clone(),
            layer: l.layer,
            layer_1: l.layer + 1,
            projection: projection_name(settings.projection).into(),
            p_true: l.option_probs[truth],
            p_false: l
                .option_probs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != truth)
                .map(|(_, &p)| p)
                .collect(),
            p_pred: l.pred_prob,
            top1_token: l.top1_token,
            top1_answer: text_of(builder, l.top1_token),
            top1_prob: l.top1_prob,
            base_correct: baseline.correct(),
            concept_counts,
            top_video_tokens: ranked,
        });
    }
    Ok(Some(out))
}

/// Runs the lens over every sample and writes the folder's files.
pub fn run_lens(
    pkg: &Package,
    builder: Arc<PromptBuilder>,
    samples: Vec<Sample>,
    settings: &LensSettings,
) -> Result<Vec<LensRecord>> {
    let out = &settings.out_dir;
    let _lock = FolderLock::acquire(out)?;
    clear_finished(out)?;
    LensRun {
        model: pkg.manifest.name.clone(),
        num_layers: pkg.manifest.num_layers,
        projection: projection_name(settings.projection).into(),
        all_samples: settings.all_samples,
        categories: settings
            .keywords
            .as_ref()
            .map(|k| k.category_names())
            .unwrap_or_default(),
        inputs: settings.inputs.clone(),
        shard: settings.shard,
        missing_shards: Vec::new(),
    }
    .write(out)?;
    let samples = select_shard(samples, settings.shard);
    let total = samples.len();
    let mut failures = 0usize;
    let mut rec_w = JsonlWriter::create(&out.join(LENS_FILE))?;
    let mut sample_w = JsonlWriter::create(&out.join(LENS_SAMPLES_FILE))?;
    let progress = Progress::new(samples.len() as u64, "lens", settings.progress);
    let spec = pkg.manifest.video.clone();
    let prep = Arc::clone(&builder);
    let mut all = Vec::new();
    prefetch_ordered(
        samples,
        settings.workers,
        settings.workers + 1,
        move |s: &Sample| prepare(&prep, &spec, s),
        |sample, prepared: Result<SampleInputs>| -> Result<()> {
            let result =
                prepared.and_then(|inp| lens_sample(pkg, &builder, &sample, &inp, settings));
            let (status, error) = match result {
                Ok(Some(records)) => {
                    for r in &records {
                        rec_w.write(r)?;
                    }
                    all.extend(records);
                    (SampleStatus::Used, None)
                }
                Ok(None) => (SampleStatus::SkippedWrong, None),
                Err(e) => {
                    let msg = e.to_string();
                    progress.println(&format!("sample {:?} failed: {msg}", sample.id));
                    if !settings.progress {
                        eprintln!("sample {:?} failed: {msg}", sample.id);
                    }
                    failures += 1;
                    (SampleStatus::Failed, Some(msg))
                }
            };
            sample_w.write(&LensSample {
                sample_id: sample.id.clone(),
                task: sample.task.clone(),
                status,
                error,
            })?;
            progress.inc(1);
            rec_w.flush()?;
            sample_w.flush()
        },
    )?;
    progress.finish();
    mark_finished(out, total)?;
    if all.is_empty() {
        return Err(Error::NothingScored(if total == 0 {
            "no sample to run: the list is empty, or every record in it is bad (each is named above)"
                .into()
        } else if failures > 0 {
            format!(
                "{failures} of {total} samples failed (reasons in {})",
                out.join(LENS_SAMPLES_FILE).display()
            )
        } else {
            format!(
                "the model answered all {total} samples wrongly and the lens reads only correctly \
                 answered ones (--all-samples reads every sample)"
            )
        }));
    }
    Ok(all)
}

fn num(x: f64) -> String {
    format!("{x:.6}")
}

/// Per layer: mean (95% interval) of the true option's probability, of the false options'
/// probabilities (pooled over options, as the reference's plot does), and mean concept counts.
pub fn lens_summary_csv(records: &[LensRecord], categories: &[String]) -> String {
    let mut out = String::from(
        "layer,layer_1,n,mean_p_true,ci95_low_true,ci95_high_true,mean_p_false,ci95_low_false,ci95_high_false",
    );
    for c in categories {
        out.push_str(&format!(",mean_count_{c}"));
    }
    out.push('\n');
    let layers: std::collections::BTreeSet<usize> = records.iter().map(|r| r.layer).collect();
    for l in layers {
        let at: Vec<&LensRecord> = records.iter().filter(|r| r.layer == l).collect();
        let t: Vec<f64> = at.iter().map(|r| r.p_true).collect();
        let f: Vec<f64> = at.iter().flat_map(|r| r.p_false.iter().copied()).collect();
        // Probabilities: intervals clipped to [0, 1].
        let cell = |v: &[f64]| -> [String; 3] {
            match mean_interval(v).map(|m| m.clipped(0.0, 1.0)) {
                Some(m) => {
                    let (lo, hi) = m
                        .interval
                        .map(|(a, b)| (num(a), num(b)))
                        .unwrap_or_default();
                    [num(m.mean), lo, hi]
                }
                None => Default::default(),
            }
        };
        let [tm, tl, th] = cell(&t);
        let [fm, fl, fh] = cell(&f);
        out.push_str(&format!(
            "{l},{},{},{tm},{tl},{th},{fm},{fl},{fh}",
            l + 1,
            at.len()
        ));
        for c in categories {
            let total: usize = at
                .iter()
                .map(|r| r.concept_counts.get(c).copied().unwrap_or(0))
                .sum();
            out.push_str(&format!(",{}", num(total as f64 / at.len() as f64)));
        }
        out.push('\n');
    }
    out
}

/// Writes `lens_summary.csv` and the plots; returns the files written.
pub fn write_lens_reports(
    out: &Path,
    records: &[LensRecord],
    categories: &[String],
    title: &str,
    num_layers: usize,
) -> Result<Vec<PathBuf>> {
    let summary = out.join(LENS_SUMMARY_FILE);
    std::fs::write(&summary, lens_summary_csv(records, categories))
        .map_err(|e| Error::io(&summary, e))?;
    let mut files = vec![summary];
    if records.is_empty() {
        return Ok(files);
    }
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| Error::io(&plots, e))?;
    let layers: Vec<usize> = (0..num_layers).collect();
    // `bound`: the largest value a series can take (probabilities in %), to clip its intervals.
    let series =
        |name: &str, values: &dyn Fn(&LensRecord) -> Vec<f64>, scale: f64, bound: f64| Series {
            name: name.to_string(),
            points: layers
                .iter()
                .filter_map(|&l| {
                    let v: Vec<f64> = records
                        .iter()
                        .filter(|r| r.layer == l)
                        .flat_map(values)
                        .map(|x| x * scale)
                        .collect();
                    mean_interval(&v)
                        .map(|m| m.clipped(0.0, bound))
                        .map(|m| ((l + 1) as f64, m.mean, m.interval))
                })
                .collect(),
        };
    let prob = LinePlot {
        title: format!("layer-wise answer probability ({title})"),
        x_label: "layer".into(),
        y_label: "% probability at the last position".into(),
        x_range: (0.5, num_layers as f64 + 0.5),
        hline: Some(0.0),
        series: vec![
            series("true option", &|r| vec![r.p_true], 100.0, 100.0),
            series("false option", &|r| r.p_false.clone(), 100.0, 100.0),
        ],
    };
    let (png, svg) = write_line_plot(&plots.join("lens_option_prob"), &prob)?;
    files.extend([png, svg]);
    if !categories.is_empty() {
        let concepts = LinePlot {
            title: format!("logit-lens concepts over video tokens ({title})"),
            x_label: "layer".into(),
            y_label: "video tokens whose top-1 token is a keyword".into(),
            x_range: (0.5, num_layers as f64 + 0.5),
            hline: Some(0.0),
            series: categories
                .iter()
                .map(|c| {
                    let c2 = c.clone();
                    series(
                        c,
                        &move |r| vec![r.concept_counts.get(&c2).copied().unwrap_or(0) as f64],
                        1.0,
                        f64::INFINITY,
                    )
                })
                .collect(),
        };
        let (png, svg) = write_line_plot(&plots.join("lens_concepts"), &concepts)?;
        files.extend([png, svg]);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(p_true: f64, p_false: f64) -> LensRecord {
        LensRecord {
            sample_id: "s".into(),
            task: None,
            layer: 0,
            layer_1: 1,
            projection: "norm_head".into(),
            p_true,
            p_false: vec![p_false],
            p_pred: p_true,
            top1_token: 0,
            top1_answer: "A".into(),
            top1_prob: p_true,
            base_correct: true,
            concept_counts: BTreeMap::new(),
            top_video_tokens: Vec::new(),
        }
    }

    #[test]
    fn probability_intervals_stay_inside_0_and_1() {
        // Mean 0.3, sd 0.52 over 3 values: the t interval (t = 4.303) is 0.3 ± 1.29.
        let recs = [record(0.0, 1.0), record(0.0, 1.0), record(0.9, 0.999)];
        let csv = lens_summary_csv(&recs, &[]);
        let row: Vec<f64> = csv
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|c| c.parse().unwrap())
            .collect();
        let (mean_t, lo_t, hi_t, mean_f, lo_f, hi_f) =
            (row[3], row[4], row[5], row[6], row[7], row[8]);
        assert!((mean_t - 0.3).abs() < 1e-6, "{csv}");
        assert_eq!((lo_t, hi_t), (0.0, 1.0), "{csv}");
        assert!(
            (mean_f - 0.999667).abs() < 1e-6 && hi_f == 1.0 && lo_f < mean_f,
            "{csv}"
        );
    }
}
