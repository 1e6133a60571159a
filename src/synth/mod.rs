//! `vidflow synth`: small synthetic VideoQA datasets in the TVBench layout (design.md §5), for
//! training and checking the toy VideoLLM.
//!
//! `json/<task>.json` lists `{video, question, candidates, answer, question_id}`; the videos are
//! H.264 mp4 files under `video/<task>/`; `synth.json` records the settings. Everything depends
//! only on the seed: every sample draws from its own random stream (seed, task, index), and the
//! balancing permutations from (seed, task). Answers are balanced twice over: the content class
//! (e.g. each direction) and the position of the true option (A, B, ...) are each spread evenly.
//!
//! Two suites: `temporal` (five tasks that mirror TVBench's; no single frame gives the answer
//! away, see [`tasks`]) and `image` (stills whose answer one frame shows, for the image stage).
//!
//! With `dump_frames = Some(F)`, `frames/<task>.npy` holds the F frames of every sample as uint8
//! `[N, F, H, W, 3]`, decoded back from the written mp4 files by vidflow's own decoder and
//! segment-middle sampling, so training sees exactly the pixels `vidflow eval` sees.
//!
//! Needs the `video` cargo feature (FFmpeg) to write the mp4 files; without it `generate` refuses.

mod draw;
mod encode;
pub mod rng;
pub mod tasks;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::video::{sample_frames, FrameRequest};
use rng::Rng;
use tasks::{Geometry, TaskSpec};

pub use draw::{BACKGROUND, PALETTE};
pub use encode::{write_mp4, NO_VIDEO_ENCODING};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Temporal,
    Image,
}

impl std::str::FromStr for Suite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Suite> {
        match s {
            "temporal" => Ok(Suite::Temporal),
            "image" => Ok(Suite::Image),
            _ => Err(Error::Input(format!(
                "suite `{s}`: expected temporal or image"
            ))),
        }
    }
}

impl Suite {
    pub fn tasks(self) -> &'static [TaskSpec] {
        match self {
            Suite::Temporal => &tasks::TEMPORAL,
            Suite::Image => &tasks::IMAGE,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthConfig {
    pub seed: u64,
    pub per_task: usize,
    /// Frame width and height (square, even).
    pub size: u32,
    /// Frames per video.
    pub frames: usize,
    pub fps: u32,
    pub suite: Suite,
    /// Only these tasks (all of the suite when None).
    pub tasks: Option<Vec<String>>,
    /// Also write `frames/<task>.npy` with this many segment-middle frames per video.
    pub dump_frames: Option<usize>,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            seed: 0,
            per_task: 100,
            size: 64,
            frames: 16,
            fps: 8,
            suite: Suite::Temporal,
            tasks: None,
            dump_frames: None,
        }
    }
}

/// Largest frame side, frames per video, and bytes of frames held in memory at once.
const MAX_SIZE: u32 = 1024;
const MAX_FRAMES: usize = 4096;
const MAX_BUFFER_BYTES: u64 = 1 << 30;

impl SynthConfig {
    fn check(&self) -> Result<()> {
        if self.size < 32 || self.size > MAX_SIZE || self.size % 2 == 1 {
            return Err(Error::Input(format!(
                "frame size {}: expected an even size from 32 to {MAX_SIZE}",
                self.size
            )));
        }
        if self.frames > MAX_FRAMES {
            return Err(Error::Input(format!(
                "{} frames: at most {MAX_FRAMES} per video",
                self.frames
            )));
        }
        // One video's frames are held in memory while it is encoded, and --dump-frames holds every
        // dumped frame of a task: estimate both before anything is drawn.
        let frame = 3 * self.size as u64 * self.size as u64;
        let video = frame * self.frames as u64;
        let dump = self.dump_frames.map_or(0, |f| {
            (frame * f as u64).saturating_mul(self.per_task as u64)
        });
        if video.max(dump) > MAX_BUFFER_BYTES {
            let dumped = if dump > 0 {
                format!(", {} dumped per task", dump / frame)
            } else {
                String::new()
            };
            return Err(Error::Input(format!(
                "{} MB of frames would be held in memory ({}x{} pixels, {} per video{dumped}); \
                 at most {} MB: use fewer or smaller frames",
                video.max(dump) >> 20,
                self.size,
                self.size,
                self.frames,
                MAX_BUFFER_BYTES >> 20
            )));
        }
        if self.frames < 8 {
            return Err(Error::Input(format!(
                "{} frames: at least 8 are needed for the temporal events",
                self.frames
            )));
        }
        if self.fps == 0 {
            return Err(Error::Input(
                "--fps 0: the frame rate must be positive".into(),
            ));
        }
        if self.per_task == 0 {
            return Err(Error::Input(
                "--per-task 0: at least 1 sample per task is needed".into(),
            ));
        }
        if let Some(f) = self.dump_frames {
            if f == 0 || f > self.frames {
                return Err(Error::Input(format!(
                    "dump frames {f}: expected 1 to {} (the frames per video)",
                    self.frames
                )));
            }
        }
        Ok(())
    }

    /// The selected tasks of the suite, in name order; an unknown name is an error.
    pub fn selected(&self) -> Result<Vec<&'static TaskSpec>> {
        let all = self.suite.tasks();
        match &self.tasks {
            None => Ok(all.iter().collect()),
            Some(names) => names
                .iter()
                .map(|n| {
                    all.iter().find(|t| t.name == n).ok_or_else(|| {
                        Error::Input(format!(
                            "task `{n}` is not in the {:?} suite; its tasks are {:?}",
                            self.suite,
                            all.iter().map(|t| t.name).collect::<Vec<_>>()
                        ))
                    })
                })
                .collect(),
        }
    }
}

/// One sample, as written: the options in their shuffled order and the true one's index.
pub struct SynthSample {
    pub task: &'static str,
    pub index: usize,
    pub frames: Vec<RgbImage>,
    pub question: String,
    pub candidates: Vec<String>,
    pub answer: usize,
    /// The content class (e.g. the direction), whose canonical option is `canonical[class]`.
    pub class: usize,
    pub canonical: Vec<String>,
}

impl SynthSample {
    pub fn video_name(&self) -> String {
        format!("{:05}.mp4", self.index)
    }
}

/// Balanced assignments of one task: class and true-option position of each sample.
struct Balance {
    classes: Vec<usize>,
    positions: Vec<usize>,
}

fn balanced(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| i % k).collect();
    rng.shuffle(&mut v);
    v
}

impl Balance {
    fn new(seed: u64, spec: &TaskSpec, per_task: usize, options: usize) -> Balance {
        let mut rng = Rng::derive(seed, &format!("{}/balance", spec.name), 0);
        Balance {
            classes: balanced(&mut rng, per_task, spec.classes),
            positions: balanced(&mut rng, per_task, options),
        }
    }
}

/// Number of options of a task (every sample of a task has the same number).
fn option_count(spec: &TaskSpec) -> usize {
    let g = Geometry {
        size: 64,
        frames: 16,
    };
    (spec.make)(&mut Rng::new(0), 0, g).options.len()
}

/// Renders sample `index` of task `name` exactly as `generate` writes it (frames before encoding).
pub fn render_sample(cfg: &SynthConfig, name: &str, index: usize) -> Result<SynthSample> {
    cfg.check()?;
    let spec = cfg
        .suite
        .tasks()
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Input(format!("unknown synth task `{name}`")))?;
    if index >= cfg.per_task {
        return Err(Error::Input(format!(
            "sample {index} of {name}: only {} per task",
            cfg.per_task
        )));
    }
    let balance = Balance::new(cfg.seed, spec, cfg.per_task, option_count(spec));
    Ok(render_with(cfg, spec, &balance, index))
}

fn render_with(
    cfg: &SynthConfig,
    spec: &'static TaskSpec,
    b: &Balance,
    index: usize,
) -> SynthSample {
    let g = Geometry {
        size: cfg.size as i64,
        frames: cfg.frames,
    };
    let mut rng = Rng::derive(cfg.seed, spec.name, index as u64);
    let class = b.classes[index];
    let clip = (spec.make)(&mut rng, class, g);
    // The true option goes to its balanced position, the others in random order around it.
    let k = clip.options.len();
    let pos = b.positions[index] % k;
    let mut others: Vec<usize> = (0..k).filter(|&i| i != clip.class).collect();
    rng.shuffle(&mut others);
    let mut order = others;
    order.insert(pos, clip.class);
    SynthSample {
        task: spec.name,
        index,
        frames: clip.frames,
        question: clip.question,
        candidates: order.iter().map(|&i| clip.options[i].clone()).collect(),
        answer: pos,
        class,
        canonical: clip.options,
    }
}

#[derive(Serialize)]
struct Record {
    video: String,
    question: String,
    candidates: Vec<String>,
    answer: String,
    question_id: String,
}

/// What `generate` wrote, per task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    pub samples: usize,
    /// How often each option position (A, B, ...) holds the answer.
    pub answer_positions: Vec<usize>,
    /// How often each content class occurs.
    pub classes: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub generator: String,
    pub config: SynthConfig,
    pub tasks: BTreeMap<String, TaskSummary>,
}

/// Writes the dataset into `out` (which must not hold a dataset already).
///
/// Builds without the `video` feature refuse after checking the settings and before writing
/// anything, rather than leave a dataset without videos.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    mut progress: impl FnMut(&str, usize),
) -> Result<SynthSummary> {
    cfg.check()?;
    let specs = cfg.selected()?;
    if !cfg!(feature = "video") {
        return Err(Error::Video {
            path: out.to_path_buf(),
            msg: encode::NO_VIDEO_ENCODING.to_string(),
        });
    }
    let json_dir = out.join("json");
    if json_dir.exists() {
        return Err(Error::Input(format!(
            "{} already holds a dataset (json/ exists); choose a new folder",
            out.display()
        )));
    }
    let mkdir = |p: &PathBuf| std::fs::create_dir_all(p).map_err(|e| Error::io(p, e));
    mkdir(&json_dir)?;
    let mut summary = SynthSummary {
        generator: format!("vidflow synth {}", env!("CARGO_PKG_VERSION")),
        config: cfg.clone(),
        tasks: BTreeMap::new(),
    };
    for spec in specs {
        let video_dir = out.join("video").join(spec.name);
        mkdir(&video_dir)?;
        let options = option_count(spec);
        let balance = Balance::new(cfg.seed, spec, cfg.per_task, options);
        let mut records = Vec::with_capacity(cfg.per_task);
        let mut task_summary = TaskSummary {
            samples: 0,
            answer_positions: vec![0; options],
            classes: vec![0; spec.classes],
        };
        let mut dump: Vec<u8> = Vec::new();
        for i in 0..cfg.per_task {
            let s = render_with(cfg, spec, &balance, i);
            let path = video_dir.join(s.video_name());
            write_mp4(&path, &s.frames, cfg.fps)?;
            if let Some(f) = cfg.dump_frames {
                let sampled = sample_frames(&path, &FrameRequest::new(f))?;
                for img in &sampled.frames {
                    dump.extend_from_slice(img.as_raw());
                }
            }
            records.push(Record {
                video: s.video_name(),
                answer: s.candidates[s.answer].clone(),
                question: s.question,
                candidates: s.candidates,
                question_id: format!("{:05}", i),
            });
            task_summary.samples += 1;
            task_summary.answer_positions[s.answer] += 1;
            task_summary.classes[s.class] += 1;
            progress(spec.name, i + 1);
        }
        write_file(
            &json_dir.join(format!("{}.json", spec.name)),
            serde_json::to_string_pretty(&records)
                .expect("json")
                .as_bytes(),
        )?;
        if let Some(f) = cfg.dump_frames {
            let dir = out.join("frames");
            mkdir(&dir)?;
            let shape = [cfg.per_task, f, cfg.size as usize, cfg.size as usize, 3];
            write_npy_u8(&dir.join(format!("{}.npy", spec.name)), &shape, &dump)?;
        }
        summary.tasks.insert(spec.name.to_string(), task_summary);
    }
    write_file(
        &out.join("synth.json"),
        serde_json::to_string_pretty(&summary)
            .expect("json")
            .as_bytes(),
    )?;
    Ok(summary)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// A NumPy `.npy` file (format 1.0) of uint8 data in C order.
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy shape and data disagree"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    f.write_all(&bytes).map_err(|e| Error::io(path, e))
}
