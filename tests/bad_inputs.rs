//! The bad-input battery: hundreds of broken packages, data sets, files and flag values, each run
//! through the `vidflow` binary. Every case states the exit status (1 for an error, 2 for a run
//! that could score nothing and for clap's usage errors) and the words of the message that show
//! it names the file, field or value at fault and what was expected. A case that panics, runs past
//! its watchdog, exits 0 or says something else fails; each table prints all its failures at once.
//!
//! Everything is generated in a temporary folder at test time: package copies (graphs linked,
//! manifest and tokenizer copied, one thing broken per case), tiny videos (ffmpeg), data sets in
//! the TVBench, TOMATO and JSON-list layouts, and real run folders (eval shards, a knockout run)
//! that the merge and discover cases then break. docs/testing.md ("Bad-input battery") lists
//! what each table covers.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

// ---------------------------------------------------------------------------------------------
// Cases and the runner

/// A case that runs longer than this is killed and fails.
const WATCHDOG: Duration = Duration::from_secs(30);

macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$(AsRef::<OsStr>::as_ref(&$a).to_os_string()),*]
    };
}

macro_rules! kw {
    ($($k:expr),* $(,)?) => {
        vec![$(($k).to_string()),*]
    };
}

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// One bad input: the command line, the exit status it must end with and the words its message
/// must contain (stderr; stderr and stdout for a case that exits 0), plus an optional check of
/// what the run wrote.
struct Case {
    name: String,
    args: Vec<OsString>,
    code: i32,
    keywords: Vec<String>,
    check: Option<Check>,
}

fn case(name: impl Into<String>, code: i32, keywords: Vec<String>, args: Vec<OsString>) -> Case {
    let keywords: Vec<String> = keywords;
    assert!(
        !keywords.is_empty() && keywords.len() <= 4,
        "a case names 1 to 4 keywords"
    );
    Case {
        name: name.into(),
        args,
        code,
        keywords,
        check: None,
    }
}

impl Case {
    fn then(mut self, check: Check) -> Case {
        self.check = Some(check);
        self
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
    secs: f64,
}

fn run_vidflow(args: &[OsString]) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(args)
        .env("VIDFLOW_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vidflow");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vidflow") {
            break status;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            timed_out = true;
            break child.wait().expect("wait for the killed vidflow");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        timed_out,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Why the outcome does not meet the case (None: it does).
fn judge(c: &Case, o: &Outcome) -> Option<String> {
    if o.timed_out {
        return Some(format!("hung: killed after {} s", WATCHDOG.as_secs()));
    }
    if o.stderr.contains("panicked") || o.code == Some(101) {
        return Some("panicked".into());
    }
    if o.code != Some(c.code) {
        return Some(format!("exit status {:?}, expected {}", o.code, c.code));
    }
    let text = if c.code == 0 {
        format!("{}\n{}", o.stderr, o.stdout)
    } else {
        if !o.stderr.contains("error") {
            return Some("no error message on stderr".into());
        }
        o.stderr.clone()
    };
    let missing: Vec<&String> = c.keywords.iter().filter(|k| !text.contains(*k)).collect();
    if !missing.is_empty() {
        return Some(format!("message lacks {missing:?}"));
    }
    c.check.as_ref().and_then(|f| f().err())
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            let s = if s.chars().count() > 120 {
                format!(
                    "{}…({} chars)",
                    s.chars().take(60).collect::<String>(),
                    s.len()
                )
            } else {
                s.into_owned()
            };
            if s.is_empty() || s.contains([' ', '"', '\'']) {
                format!("{s:?}")
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n      ")
}

/// Runs every case of a table on a few workers, prints the failures, then fails if any.
fn run_table(category: &str, cases: Vec<Case>) {
    let mut names = HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.as_str()),
            "{category}: two cases are named {:?}",
            c.name
        );
    }
    let workers: usize = std::env::var("BAD_INPUTS_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // BAD_INPUTS_SHOW=1 prints every case's last line of stderr, to review the messages.
    let show = std::env::var_os("BAD_INPUTS_SHOW").is_some();
    let shown = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                let o = run_vidflow(&c.args);
                if show {
                    let line = o.stderr.lines().rev().find(|l| !l.trim().is_empty());
                    shown
                        .lock()
                        .unwrap()
                        .push((i, line.unwrap_or("").to_string()));
                }
                if let Some(why) = judge(c, &o) {
                    failures.lock().unwrap().push((i, why, o));
                }
            });
        }
    });
    let mut shown = shown.into_inner().unwrap();
    shown.sort();
    for (i, line) in shown {
        eprintln!("{category}/{}: {line}", cases[i].name);
    }
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|f| f.0);
    eprintln!(
        "bad-input battery: {category}: {} cases in {:.1} s, {} failed",
        cases.len(),
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    for (i, why, o) in &failures {
        let c = &cases[*i];
        eprintln!(
            "--- FAIL {category}/{}: {why}\n    $ vidflow {}\n    expected exit {} with {:?}; got {:?} in {:.1} s\n    stderr: {}\n    stdout: {}",
            c.name,
            show_args(&c.args),
            c.code,
            c.keywords,
            o.code,
            o.secs,
            tail(&o.stderr, 8),
            tail(&o.stdout, 4),
        );
    }
    assert!(
        failures.is_empty(),
        "{category}: {} of {} bad-input cases failed (listed above)",
        failures.len(),
        cases.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Scratch space, videos, package copies

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn tiny() -> PathBuf {
    repo("tests/fixtures/tiny")
}

/// A temporary folder handing out fresh paths.
struct Scratch {
    tmp: tempfile::TempDir,
    n: AtomicUsize,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            tmp: tempfile::tempdir().unwrap(),
            n: AtomicUsize::new(0),
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A path that does not exist yet.
    fn fresh(&self, stem: &str) -> PathBuf {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        self.root().join(format!("{n:03}-{stem}"))
    }

    /// A new empty folder.
    fn dir(&self, stem: &str) -> PathBuf {
        let d = self.fresh(stem);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A new file holding `bytes`.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.fresh(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Writes a video of `seconds` at 8 fps (64x48, H.264), or of exactly one frame.
fn ffmpeg(path: &Path, seconds: Option<f64>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=64x48:rate=8");
    match seconds {
        Some(s) => cmd.args(["-t", &s.to_string()]),
        None => cmd.args(["-frames:v", "1"]),
    };
    let out = cmd
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The videos a table uses, all in one folder (sample lists name them relative to it).
struct Videos {
    dir: PathBuf,
    /// 2 s at 8 fps: 16 frames.
    good: PathBuf,
    /// One frame: fewer than the 4 the tiny package samples.
    one_frame: PathBuf,
    /// The first kilobyte of `good`.
    truncated: PathBuf,
    /// Text with a video's name.
    text: PathBuf,
    empty: PathBuf,
    /// A frame folder without any image.
    no_frames: PathBuf,
}

impl Videos {
    fn make(s: &Scratch) -> Videos {
        let dir = s.dir("videos");
        let good = dir.join("good.mp4");
        ffmpeg(&good, Some(2.0));
        let one_frame = dir.join("one_frame.mp4");
        ffmpeg(&one_frame, None);
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.join("truncated.mp4");
        write(&truncated, &bytes[..1000.min(bytes.len() / 2)]);
        let text = dir.join("text.mp4");
        write(&text, "this is not a video\n");
        let empty = dir.join("empty.mp4");
        write(&empty, "");
        let no_frames = dir.join("no_frames");
        std::fs::create_dir_all(&no_frames).unwrap();
        write(&no_frames.join("notes.txt"), "no images here");
        Videos {
            dir,
            good,
            one_frame,
            truncated,
            text,
            empty,
            no_frames,
        }
    }

    /// A sample list in the videos' folder.
    fn list(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.join(format!("{name}.json"));
        assert!(!p.exists(), "two lists named {name}");
        write(&p, text);
        p
    }
}

/// A copy of the tiny package: manifest and tokenizer copied, graphs linked to the fixture's.
fn package_copy(s: &Scratch, name: &str) -> PathBuf {
    package_copy_of(s, name, &tiny())
}

/// [`package_copy`] of the package at `src`.
fn package_copy_of(s: &Scratch, name: &str, src: &Path) -> PathBuf {
    let dir = s.dir(name);
    let link_all = |from: &Path, to: &Path| {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if p.is_file() {
                let dest = to.join(entry.file_name());
                let name = entry.file_name();
                if name == "model.yaml" || name == "tokenizer.json" {
                    std::fs::copy(&p, dest).unwrap();
                } else {
                    std::os::unix::fs::symlink(&p, dest).unwrap();
                }
            }
        }
    };
    link_all(src, &dir);
    std::fs::create_dir_all(dir.join("layers")).unwrap();
    link_all(&src.join("layers"), &dir.join("layers"));
    dir
}

/// Replaces one file of a package copy (a link to the fixture) by `bytes`.
fn replace_file(pkg: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = pkg.join(rel);
    if p.exists() || p.is_symlink() {
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    write(&p, bytes);
}

fn read_manifest(pkg: &Path) -> Yaml {
    serde_yaml::from_str(&std::fs::read_to_string(pkg.join("model.yaml")).unwrap()).unwrap()
}

/// The node at `a.b[2].c` (created as null when missing).
fn yaml_at<'a>(doc: &'a mut Yaml, path: &str) -> &'a mut Yaml {
    let mut v = doc;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
            None => (part, None),
        };
        v = &mut v[key];
        if let Some(i) = index {
            v = &mut v[i];
        }
    }
    v
}

fn yaml_remove(doc: &mut Yaml, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (yaml_at(doc, p), l),
        None => (doc, path),
    };
    parent
        .as_mapping_mut()
        .unwrap()
        .remove(last)
        .unwrap_or_else(|| panic!("no field {path} to remove"));
}

fn yaml(text: &str) -> Yaml {
    serde_yaml::from_str(text).unwrap()
}

/// A package copy whose manifest has `path` set to the YAML value `value` (`None`: removed).
fn package_with(s: &Scratch, path: &str, value: Option<&str>) -> PathBuf {
    let pkg = package_copy(s, "pkg");
    let mut doc = read_manifest(&pkg);
    match value {
        Some(v) => *yaml_at(&mut doc, path) = yaml(v),
        None => yaml_remove(&mut doc, path),
    }
    std::fs::write(pkg.join("model.yaml"), serde_yaml::to_string(&doc).unwrap()).unwrap();
    pkg
}

// ---------------------------------------------------------------------------------------------
// Data sets

const QUESTION: &str = "What is in the video?";
const OPTIONS: [&str; 2] = ["a red square", "a blue circle"];

fn nine_options() -> Json {
    json!((1..=9).map(|i| format!("option {i}")).collect::<Vec<_>>())
}

/// A good sample-list record; `edit` breaks it.
fn list_record(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> Json {
    let mut r = json!({"id": "good", "video": "good.mp4", "question": QUESTION,
                       "options": OPTIONS, "answer": 0});
    edit(r.as_object_mut().unwrap());
    r
}

/// A good TVBench record; `edit` breaks it.
fn tv_record(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> Json {
    let mut r = json!({"video": "good.mp4", "question": QUESTION, "candidates": OPTIONS,
                       "answer": OPTIONS[0], "question_id": "q1"});
    edit(r.as_object_mut().unwrap());
    r
}

/// A good TOMATO record (key `good`, demonstration type `human`); `edit` breaks it.
fn tomato_record(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> Json {
    let mut r = json!({"question": QUESTION, "options": OPTIONS, "answer": 0, "key": "good",
                       "demonstration_type": "human"});
    edit(r.as_object_mut().unwrap());
    r
}

/// A TVBench folder: `json/<name>` files holding the given texts, the table's videos under
/// `video/t1/`.
fn tvbench_dir(s: &Scratch, v: &Videos, files: &[(&str, String)]) -> PathBuf {
    let dir = s.dir("tvbench");
    for (name, text) in files {
        write(&dir.join("json").join(name), text);
    }
    std::fs::create_dir_all(dir.join("video/t1")).unwrap();
    for src in [&v.good, &v.truncated] {
        std::fs::copy(src, dir.join("video/t1").join(src.file_name().unwrap())).unwrap();
    }
    dir
}

/// A TOMATO folder: `data/<name>` files holding the given texts, videos under `videos/human/`.
fn tomato_dir(s: &Scratch, v: &Videos, files: &[(&str, String)]) -> PathBuf {
    let dir = s.dir("tomato");
    for (name, text) in files {
        write(&dir.join("data").join(name), text);
    }
    std::fs::create_dir_all(dir.join("videos/human")).unwrap();
    std::fs::copy(&v.good, dir.join("videos/human/good.mp4")).unwrap();
    std::fs::copy(&v.truncated, dir.join("videos/human/truncated.mp4")).unwrap();
    dir
}

fn eval_args(data: &str, out: &Path) -> Vec<OsString> {
    args![
        "eval",
        "--model",
        tiny(),
        "--data",
        data,
        "--out",
        out,
        "--quiet",
        "--threads",
        "1"
    ]
}

/// A check that `out/summary.json` scored `scored` samples and lists `id` as not scored, for a
/// reason containing every keyword.
fn not_scored(out: PathBuf, scored: u64, id: &str, keywords: &[&str]) -> Check {
    let id = id.to_string();
    let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
    Box::new(move || {
        let path = out.join("summary.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if s["overall"]["scored"] != json!(scored) {
            return Err(format!(
                "summary.json scored {}, expected {scored}",
                s["overall"]["scored"]
            ));
        }
        let list = s["not_scored"].as_array().cloned().unwrap_or_default();
        let entry = list
            .iter()
            .find(|b| b["id"] == json!(id))
            .ok_or_else(|| format!("summary.json not_scored lacks {id:?}: {list:?}"))?;
        let reason = entry["reason"].as_str().unwrap_or_default();
        match keywords.iter().find(|k| !reason.contains(k.as_str())) {
            Some(k) => Err(format!("not_scored reason of {id} lacks {k:?}: {reason}")),
            None => Ok(()),
        }
    })
}

type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Json>)>;

fn edit(f: impl FnOnce(&mut serde_json::Map<String, Json>) + 'static) -> Edit {
    Box::new(f)
}

fn set(k: &'static str, val: Json) -> Edit {
    edit(move |m| {
        m.insert(k.into(), val);
    })
}

fn del(k: &'static str) -> Edit {
    edit(move |m| {
        m.remove(k);
    })
}

/// `base`, then `extra`, then each default flag that `extra` does not give.
fn with_defaults(
    base: Vec<OsString>,
    extra: Vec<OsString>,
    defaults: &[(&str, &str)],
) -> Vec<OsString> {
    let mut a = base;
    for (flag, value) in defaults {
        let given = extra.iter().any(|x| {
            x.to_str()
                .is_some_and(|x| x == *flag || x.starts_with(&format!("{flag}=")))
        });
        if !given {
            a.extend(args![flag, value]);
        }
    }
    a.extend(extra);
    a
}

fn to_text(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

// =============================================================================================
// info: the package, field by field

#[test]
fn info_refuses_broken_packages() {
    let s = Scratch::new();
    let mut cases = Vec::new();
    let info = |pkg: &Path| args!["info", pkg, "--threads", "1"];

    // Every whole-number field of the top level: missing, a string, negative, NaN, a fraction,
    // zero.
    let zero_says = |f: &str| -> String {
        match f {
            "num_layers" => "graphs.layers lists 4 files but num_layers is 0".into(),
            "num_kv_heads" => "must be a multiple of num_kv_heads (0)".into(),
            "max_positions" => "max_positions is 0; it must be at least 1".into(),
            "format_version" => "format_version is 0, this vidflow reads version 1".into(),
            f => format!("{f} is 0; it must be > 0"),
        }
    };
    for f in [
        "format_version",
        "num_layers",
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "rope_dim",
        "vocab_size",
        "intermediate_size",
        "max_positions",
    ] {
        let ty = if f == "format_version" {
            "u32"
        } else {
            "usize"
        };
        if f != "max_positions" {
            let p = package_with(&s, f, None);
            cases.push(case(
                format!("{f} missing"),
                1,
                kw!["model.yaml", format!("missing field `{f}`")],
                info(&p),
            ));
        }
        for (kind, value, says) in [
            ("a string", "x", "string \"x\""),
            ("negative", "-3", "integer `-3`"),
            ("NaN", ".nan", "floating point `NaN`"),
            ("a fraction", "2.5", "floating point `2.5`"),
            ("a list", "[4]", "sequence"),
        ] {
            let p = package_with(&s, f, Some(value));
            cases.push(case(
                format!("{f} {kind}"),
                1,
                kw![
                    "model.yaml",
                    format!("{f}: invalid type: {says}"),
                    format!("expected {ty}")
                ],
                info(&p),
            ));
        }
        let p = package_with(&s, f, Some("0"));
        cases.push(case(
            format!("{f} zero"),
            1,
            kw!["model.yaml", zero_says(f)],
            info(&p),
        ));
    }
    // Numbers that parse but do not fit the graphs or the prompt.
    for (name, field, value, says) in [
        (
            "num_heads not a multiple of kv heads",
            "num_heads",
            "3",
            kw!["num_heads (3) must be a multiple of num_kv_heads (2)"],
        ),
        (
            "num_heads larger than the graphs'",
            "num_heads",
            "8",
            kw!["layer_00_attn.onnx", "num_heads"],
        ),
        (
            "num_kv_heads 1",
            "num_kv_heads",
            "1",
            kw!["layer_00.onnx", "num_kv_heads"],
        ),
        (
            "vocab_size larger than the head",
            "vocab_size",
            "700",
            kw![".onnx", "vocab_size"],
        ),
        (
            "max_positions below the shortest prompt",
            "max_positions",
            "131",
            kw![
                "max_positions is 131, but the shortest prompt",
                "132 positions"
            ],
        ),
        (
            "format_version 2",
            "format_version",
            "2",
            kw!["format_version is 2, this vidflow reads version 1"],
        ),
        (
            "rope_dim half the tables'",
            "rope_dim",
            "8",
            kw!["rope.onnx", "rope_dim is 8"],
        ),
        (
            "head_dim 32",
            "head_dim",
            "32",
            kw!["layer_00.onnx", "head_dim is 32"],
        ),
        (
            "hidden_size 32",
            "hidden_size",
            "32",
            kw!["vision.onnx", "hidden_size is 32"],
        ),
        (
            "vocab_size one below the tokenizer",
            "vocab_size",
            "632",
            kw!["has 633 tokens, but the manifest's vocab_size is 632"],
        ),
    ] {
        let p = package_with(&s, field, Some(value));
        cases.push(case(name, 1, says, info(&p)));
    }

    // Strings and enums of the top level.
    for (name, field, value, says) in [
        ("name missing", "name", None, kw!["missing field `name`"]),
        (
            "name a list",
            "name",
            Some("[a, b]"),
            kw!["name: invalid type: sequence", "expected a string"],
        ),
        (
            "family missing",
            "family",
            None,
            kw!["missing field `family`"],
        ),
        (
            "family unknown",
            "family",
            Some("gpt2"),
            kw!["family: unknown variant `gpt2`", "expected `llama`"],
        ),
        (
            "family a number",
            "family",
            Some("7"),
            kw!["family", "expected `llama`"],
        ),
        ("dtype missing", "dtype", None, kw!["missing field `dtype`"]),
        (
            "dtype unknown",
            "dtype",
            Some("int8"),
            kw![
                "dtype: unknown variant `int8`",
                "`float32`, `float16`, `bfloat16`"
            ],
        ),
        (
            "tokenizer missing",
            "tokenizer",
            None,
            kw!["missing field `tokenizer`"],
        ),
        (
            "tokenizer file absent",
            "tokenizer",
            Some("absent.json"),
            kw!["model.yaml", "tokenizer file", "absent.json does not exist"],
        ),
        (
            "tokenizer empty name",
            "tokenizer",
            Some("''"),
            kw!["model.yaml", "tokenizer file", "does not exist"],
        ),
        (
            "tokenizer a folder",
            "tokenizer",
            Some("layers"),
            kw!["tokenizer file", "layers does not exist"],
        ),
        (
            "tokenizer a list",
            "tokenizer",
            Some("[tokenizer.json]"),
            kw!["tokenizer: invalid type: sequence"],
        ),
        (
            "unknown top-level field",
            "layer_count",
            Some("4"),
            kw![
                "model.yaml",
                "unknown field `layer_count`",
                "expected one of"
            ],
        ),
        (
            "graphs missing",
            "graphs",
            None,
            kw!["missing field `graphs`"],
        ),
        ("video missing", "video", None, kw!["missing field `video`"]),
        (
            "prompt missing",
            "prompt",
            None,
            kw!["missing field `prompt`"],
        ),
        (
            "special_tokens missing",
            "special_tokens",
            None,
            kw!["missing field `special_tokens`"],
        ),
        (
            "graphs a list",
            "graphs",
            Some("[vision.onnx]"),
            kw!["graphs: invalid type: sequence", "expected struct Graphs"],
        ),
    ] {
        let p = package_with(&s, field, value);
        cases.push(case(name, 1, says, info(&p)));
    }

    // graphs: every single-file graph missing from the manifest, pointing nowhere, truncated,
    // empty, text; lists of the wrong length or with a wrong graph.
    for g in [
        "vision",
        "embed",
        "rope",
        "head_norm",
        "head_lm",
        "head_embed",
    ] {
        let file = format!("{g}.onnx");
        let p = package_with(&s, &format!("graphs.{g}"), None);
        cases.push(case(
            format!("graphs.{g} missing"),
            1,
            kw!["graphs", format!("missing field `{g}`")],
            info(&p),
        ));
        let p = package_with(
            &s,
            &format!("graphs.{g}"),
            Some(&format!("absent_{g}.onnx")),
        );
        cases.push(case(
            format!("graphs.{g} absent file"),
            1,
            kw![format!("absent_{g}.onnx"), "graph file not found"],
            info(&p),
        ));
        let p = package_copy(&s, "pkg");
        let bytes = std::fs::read(tiny().join(&file)).unwrap();
        replace_file(&p, &file, &bytes[..bytes.len() / 2]);
        cases.push(case(
            format!("graphs.{g} truncated"),
            1,
            kw![file.clone(), "ONNX Runtime"],
            info(&p),
        ));
        let p = package_copy(&s, "pkg");
        replace_file(&p, &file, "");
        cases.push(case(
            format!("graphs.{g} empty file"),
            1,
            kw![file.clone(), "ONNX Runtime"],
            info(&p),
        ));
        let p = package_copy(&s, "pkg");
        replace_file(&p, &file, "not a graph\n");
        cases.push(case(
            format!("graphs.{g} text file"),
            1,
            kw![file.clone(), "ONNX Runtime"],
            info(&p),
        ));
    }
    {
        let p = package_copy(&s, "pkg");
        std::fs::remove_file(p.join("vision.onnx")).unwrap();
        std::fs::create_dir(p.join("vision.onnx")).unwrap();
        cases.push(case(
            "graphs.vision a folder",
            1,
            kw!["vision.onnx"],
            info(&p),
        ));
    }
    for (name, field, value, says) in [
        ("graphs.vision is the embed graph", "graphs.vision", "embed.onnx", kw!["embed.onnx", "missing input `pixel_values`"]),
        ("graphs.embed is the rope graph", "graphs.embed", "rope.onnx", kw!["rope.onnx", "input_ids"]),
        ("graphs.head_norm is the vision graph", "graphs.head_norm", "vision.onnx", kw!["vision.onnx", "graph does not match the manifest"]),
        ("graphs.layers one short", "graphs.layers", "[layers/layer_00.onnx, layers/layer_01.onnx, layers/layer_02.onnx]", kw!["graphs.layers lists 3 files but num_layers is 4"]),
        ("graphs.layers one too many", "graphs.layers", "[layers/layer_00.onnx, layers/layer_01.onnx, layers/layer_02.onnx, layers/layer_03.onnx, layers/layer_03.onnx]", kw!["graphs.layers lists 5 files but num_layers is 4"]),
        ("graphs.layers a string", "graphs.layers", "layers/layer_00.onnx", kw!["graphs.layers: invalid type: string", "expected a sequence"]),
        ("graphs.layers empty", "graphs.layers", "[]", kw!["graphs.layers lists 0 files but num_layers is 4"]),
        ("graphs.layers[2] absent", "graphs.layers[2]", "layers/absent.onnx", kw!["layers/absent.onnx", "graph file not found"]),
        ("graphs.layers[3] is a head", "graphs.layers[3]", "head_lm.onnx", kw!["head_lm.onnx", "graph does not match the manifest"]),
        ("graphs.layers[0] is an attention variant", "graphs.layers[0]", "layers/layer_00_attn.onnx", kw!["layer_00_attn.onnx", "unexpected output `attn_weights`"]),
        ("graphs.layers_attn one short", "graphs.layers_attn", "[layers/layer_00_attn.onnx]", kw!["graphs.layers_attn lists 1 files but num_layers is 4"]),
        ("graphs.layers_attn[1] absent", "graphs.layers_attn[1]", "layers/absent_attn.onnx", kw!["graphs.layers_attn", "absent_attn.onnx does not exist"]),
        ("graphs.layers_attn[0] lacks attention weights", "graphs.layers_attn[0]", "layers/layer_00.onnx", kw!["layer_00.onnx", "attn_weights"]),
        ("graphs.layers_attn a number", "graphs.layers_attn", "4", kw!["graphs.layers_attn: invalid type: integer `4`"]),
        ("unknown graphs field", "graphs.vision_tower", "vision.onnx", kw!["unknown field `vision_tower`"]),
    ] {
        let p = package_with(&s, field, Some(value));
        cases.push(case(name, 1, says, info(&p)));
    }
    {
        let p = package_copy(&s, "pkg");
        let bytes = std::fs::read(tiny().join("layers/layer_02.onnx")).unwrap();
        replace_file(&p, "layers/layer_02.onnx", &bytes[..bytes.len() / 3]);
        cases.push(case(
            "graphs.layers[2] truncated",
            1,
            kw!["layer_02.onnx", "ONNX Runtime"],
            info(&p),
        ));
        let p = package_copy(&s, "pkg");
        let bytes = std::fs::read(tiny().join("layers/layer_01_attn.onnx")).unwrap();
        replace_file(&p, "layers/layer_01_attn.onnx", &bytes[..bytes.len() / 2]);
        cases.push(case(
            "graphs.layers_attn[1] truncated",
            1,
            kw!["layer_01_attn.onnx", "ONNX Runtime"],
            info(&p),
        ));
    }

    // video: every size field missing, a string, negative; the float fields; enums; lengths.
    for f in [
        "num_frames",
        "frame_height",
        "frame_width",
        "grid_h",
        "grid_w",
    ] {
        let path = format!("video.{f}");
        let p = package_with(&s, &path, None);
        cases.push(case(
            format!("{path} missing"),
            1,
            kw!["model.yaml", format!("missing field `{f}`")],
            info(&p),
        ));
        let p = package_with(&s, &path, Some("four"));
        cases.push(case(
            format!("{path} a string"),
            1,
            kw![
                format!("{path}: invalid type: string \"four\""),
                "expected usize"
            ],
            info(&p),
        ));
        let p = package_with(&s, &path, Some("-4"));
        cases.push(case(
            format!("{path} negative"),
            1,
            kw![format!("{path}: invalid type: integer `-4`")],
            info(&p),
        ));
    }
    for f in [
        "resize_mode",
        "resize_filter",
        "sampling",
        "rescale_factor",
        "image_mean",
        "image_std",
    ] {
        let p = package_with(&s, &format!("video.{f}"), None);
        cases.push(case(
            format!("video.{f} missing"),
            1,
            kw![format!("missing field `{f}`")],
            info(&p),
        ));
    }
    for (name, field, value, says) in [
        (
            "video.frame_width off the graph",
            "video.frame_width",
            "65",
            kw!["vision.onnx", "video.frame_width is 65"],
        ),
        (
            "video.frame_height off the graph",
            "video.frame_height",
            "48",
            kw!["vision.onnx", "video.frame_height is 48"],
        ),
        (
            "video.grid_h off the vision graph",
            "video.grid_h",
            "5",
            kw![
                "vision.onnx",
                "1 frames gave 16 video tokens, but the manifest's grid 5x4 implies 20"
            ],
        ),
        (
            "video.grid_w off the vision graph",
            "video.grid_w",
            "2",
            kw!["vision.onnx", "the manifest's grid 4x2 implies 8"],
        ),
        (
            "video.num_frames too many for max_positions",
            "video.num_frames",
            "100",
            kw![
                "max_positions is 512, but the shortest prompt",
                "1600 video tokens"
            ],
        ),
        (
            "video.rescale_factor a string",
            "video.rescale_factor",
            "1/255",
            kw![
                "video.rescale_factor: invalid type: string \"1/255\"",
                "expected f32"
            ],
        ),
        (
            "video.rescale_factor NaN",
            "video.rescale_factor",
            ".nan",
            kw!["video.rescale_factor is NaN; it must be finite and > 0"],
        ),
        (
            "video.rescale_factor infinite",
            "video.rescale_factor",
            ".inf",
            kw!["video.rescale_factor is inf; it must be finite and > 0"],
        ),
        (
            "video.image_mean of two",
            "video.image_mean",
            "[0.5, 0.5]",
            kw![
                "video.image_mean: invalid length 2",
                "expected an array of length 3"
            ],
        ),
        (
            "video.image_mean of strings",
            "video.image_mean",
            "[a, b, c]",
            kw!["video.image_mean", "invalid type: string \"a\""],
        ),
        (
            "video.image_mean[2] infinite",
            "video.image_mean[2]",
            "-.inf",
            kw!["video.image_mean[2] is -inf; every entry must be finite"],
        ),
        (
            "video.image_std of four",
            "video.image_std",
            "[0.5, 0.5, 0.5, 0.5]",
            kw![
                "video.image_std: invalid length 4",
                "expected sequence of 3 elements"
            ],
        ),
        (
            "video.image_std[0] zero",
            "video.image_std[0]",
            "0",
            kw!["video.image_std[0] is 0; every entry must be finite and > 0"],
        ),
        (
            "video.image_std[1] NaN",
            "video.image_std[1]",
            ".nan",
            kw!["video.image_std[1] is NaN"],
        ),
        (
            "video.image_std a number",
            "video.image_std",
            "0.25",
            kw!["video.image_std: invalid type: floating point `0.25`"],
        ),
        (
            "video.resize_mode unknown",
            "video.resize_mode",
            "crop",
            kw![
                "video.resize_mode: unknown variant `crop`",
                "`stretch` or `shortest_edge_crop`"
            ],
        ),
        (
            "video.resize_filter unknown",
            "video.resize_filter",
            "lanczos",
            kw![
                "video.resize_filter: unknown variant `lanczos`",
                "`nearest`"
            ],
        ),
        (
            "video.sampling unknown",
            "video.sampling",
            "random",
            kw![
                "video.sampling: unknown variant `random`",
                "`segment_middle`"
            ],
        ),
        (
            "unknown video field",
            "video.fps",
            "8",
            kw!["unknown field `fps`", "num_frames"],
        ),
    ] {
        let p = package_with(&s, field, Some(value));
        cases.push(case(name, 1, says, info(&p)));
    }

    // prompt: every field missing; labels and formats that cannot work.
    for f in [
        "system",
        "user_prefix",
        "video_placeholder",
        "after_video",
        "question_prefix",
        "options_header",
        "option_format",
        "option_separator",
        "option_labels",
        "instruction",
        "assistant_prefix",
        "answer_prefix",
    ] {
        let p = package_with(&s, &format!("prompt.{f}"), None);
        cases.push(case(
            format!("prompt.{f} missing"),
            1,
            kw!["model.yaml", format!("missing field `{f}`")],
            info(&p),
        ));
    }
    for (name, field, value, says) in [
        (
            "prompt.option_labels a string",
            "prompt.option_labels",
            "ABCD",
            kw![
                "prompt.option_labels: invalid type: string \"ABCD\"",
                "expected a sequence"
            ],
        ),
        (
            "prompt.option_labels empty",
            "prompt.option_labels",
            "[]",
            kw![
                "prompt.option_labels has 0 labels",
                "2 to 8 labels are expected"
            ],
        ),
        (
            "prompt.option_labels one",
            "prompt.option_labels",
            "[A]",
            kw!["prompt.option_labels has 1 labels"],
        ),
        (
            "prompt.option_labels nine",
            "prompt.option_labels",
            "[A, B, C, D, E, F, G, H, I]",
            kw!["prompt.option_labels has 9 labels"],
        ),
        (
            "prompt.option_labels blank",
            "prompt.option_labels",
            "[A, ' ', C]",
            kw!["prompt.option_labels[1] is \" \"; a label must not be blank"],
        ),
        (
            "prompt.option_labels repeated later",
            "prompt.option_labels",
            "[A, B, C, B]",
            kw!["prompt.option_labels repeats \"B\" (entries 1 and 3)"],
        ),
        (
            "prompt.option_labels of two tokens",
            "prompt.option_labels",
            "[A, B, 'C D']",
            kw!["prompt.option_labels[2] \"C D\" is not one token"],
        ),
        (
            "prompt.option_format without text",
            "prompt.option_format",
            "'({label})'",
            kw![
                "prompt.option_format \"({label})\" contains {text} 0 times, expected exactly once"
            ],
        ),
        (
            "prompt.option_format text twice",
            "prompt.option_format",
            "'{text} {text}'",
            kw!["contains {text} 2 times"],
        ),
        (
            "prompt.video_placeholder empty",
            "prompt.video_placeholder",
            "''",
            kw!["prompt.video_placeholder is empty"],
        ),
        (
            "prompt.video_placeholder twice",
            "prompt.video_placeholder",
            "'<video><video>'",
            kw![
                "video_token_id 3 appears 2 times",
                "the placeholder \"<video><video>\""
            ],
        ),
        (
            "prompt.system holds the placeholder",
            "prompt.system",
            "'Look: <video>'",
            kw!["video_token_id 3 appears 2 times in the prompt, expected once"],
        ),
        (
            "prompt.instruction holds the placeholder",
            "prompt.instruction",
            "'<video>'",
            kw!["video_token_id 3 appears 2 times"],
        ),
        (
            "prompt.system a list",
            "prompt.system",
            "[a]",
            kw!["prompt.system: invalid type: sequence"],
        ),
        (
            "prompt.option_format a map",
            "prompt.option_format",
            "{a: 1}",
            kw!["prompt.option_format: invalid type: map"],
        ),
        (
            "unknown prompt field",
            "prompt.template",
            "x",
            kw!["unknown field `template`"],
        ),
    ] {
        let p = package_with(&s, field, Some(value));
        cases.push(case(name, 1, says, info(&p)));
    }

    // special_tokens.
    for (name, field, value, says) in [
        (
            "special_tokens.video_token_id missing",
            "special_tokens.video_token_id",
            None,
            kw!["missing field `video_token_id`"],
        ),
        (
            "special_tokens.video_token_id a string",
            "special_tokens.video_token_id",
            Some("'<video>'"),
            kw![
                "special_tokens.video_token_id: invalid type: string \"<video>\"",
                "expected i64"
            ],
        ),
        (
            "special_tokens.video_token_id huge",
            "special_tokens.video_token_id",
            Some("1000000"),
            kw![
                "special_tokens.video_token_id is 1000000, outside the vocabulary",
                "0 to 632"
            ],
        ),
        (
            "special_tokens.eos_token_id beyond the vocabulary",
            "special_tokens.eos_token_id",
            Some("700"),
            kw!["special_tokens.eos_token_id is 700, outside the vocabulary"],
        ),
        (
            "special_tokens.pad_token_id negative",
            "special_tokens.pad_token_id",
            Some("-2"),
            kw!["special_tokens.pad_token_id is -2"],
        ),
        (
            "special_tokens.bos_token_id a fraction",
            "special_tokens.bos_token_id",
            Some("0.5"),
            kw!["special_tokens.bos_token_id: invalid type: floating point `0.5`"],
        ),
        (
            "special_tokens.eos_token_id a list",
            "special_tokens.eos_token_id",
            Some("[1]"),
            kw!["special_tokens.eos_token_id: invalid type: sequence"],
        ),
        (
            "unknown special token",
            "special_tokens.unk_token_id",
            Some("5"),
            kw!["unknown field `unk_token_id`"],
        ),
    ] {
        let p = package_with(&s, field, value);
        cases.push(case(name, 1, says, info(&p)));
    }

    // The tokenizer file and model.yaml themselves.
    let tok = std::fs::read(tiny().join("tokenizer.json")).unwrap();
    for (name, bytes) in [
        ("tokenizer.json cut to 10 bytes", tok[..10].to_vec()),
        ("tokenizer.json empty", Vec::new()),
        ("tokenizer.json a list", b"[]".to_vec()),
        ("tokenizer.json not UTF-8", b"\xff\xfe\x00garbage".to_vec()),
        (
            "tokenizer.json cut before its last brace",
            tok[..tok.len() - 2].to_vec(),
        ),
    ] {
        let p = package_copy(&s, "pkg");
        replace_file(&p, "tokenizer.json", bytes);
        cases.push(case(
            name,
            1,
            kw!["tokenizer.json", "cannot load as a HF tokenizer.json"],
            info(&p),
        ));
    }
    {
        let p = package_copy(&s, "pkg");
        std::fs::remove_file(p.join("tokenizer.json")).unwrap();
        cases.push(case(
            "tokenizer.json deleted",
            1,
            kw!["tokenizer file", "tokenizer.json does not exist"],
            info(&p),
        ));
    }
    let manifest = std::fs::read_to_string(tiny().join("model.yaml")).unwrap();
    for (name, text, says) in [
        (
            "model.yaml empty",
            String::new(),
            kw!["model.yaml: invalid manifest"],
        ),
        (
            "model.yaml a list",
            "- a\n- b\n".to_string(),
            kw!["model.yaml: invalid manifest", "expected struct Manifest"],
        ),
        (
            "model.yaml not YAML",
            "name: [unclosed\n".to_string(),
            kw!["model.yaml: invalid manifest"],
        ),
        (
            "model.yaml cut in half",
            manifest[..manifest.len() / 2].to_string(),
            kw!["model.yaml: invalid manifest", "missing field"],
        ),
        (
            "model.yaml with a repeated key",
            manifest.replace("num_layers: 4\n", "num_layers: 4\nnum_layers: 4\n"),
            kw!["model.yaml: invalid manifest", "duplicate", "num_layers"],
        ),
        (
            "model.yaml indented with a tab",
            manifest.replace("  vision: vision.onnx", "\tvision: vision.onnx"),
            kw!["model.yaml: invalid manifest"],
        ),
    ] {
        let p = package_copy(&s, "pkg");
        replace_file(&p, "model.yaml", text);
        cases.push(case(name, 1, says, info(&p)));
    }
    {
        let p = package_copy(&s, "pkg");
        replace_file(&p, "model.yaml", b"name: \xff\xfe\n");
        cases.push(case(
            "model.yaml not UTF-8",
            1,
            kw!["model.yaml", "UTF-8"],
            info(&p),
        ));
        let p = package_copy(&s, "pkg");
        std::fs::remove_file(p.join("model.yaml")).unwrap();
        cases.push(case(
            "model.yaml deleted",
            1,
            kw!["model.yaml", "No such file or directory"],
            info(&p),
        ));
    }
    let absent = s.root().join("no-such-package");
    cases.push(case(
        "package folder absent",
        1,
        kw!["no-such-package", "model package directory not found"],
        info(&absent),
    ));
    let file = s.file("a-file", "x");
    cases.push(case(
        "package is a file",
        1,
        kw![
            "a-file",
            "not a directory: a model package is the folder holding model.yaml"
        ],
        info(&file),
    ));

    // Runtime flags, and clap's usage errors (exit status 2).
    let t = tiny();
    for (name, code, extra, says) in [
        (
            "--threads 100000",
            1,
            args!["--threads", "100000"],
            kw![
                "--threads 100000 is more than 4 per core",
                "ask for at most"
            ],
        ),
        (
            "--device bogus",
            1,
            args!["--device", "bogus"],
            kw!["unknown device `bogus`", "expected cpu, cuda or tensorrt"],
        ),
        (
            "--device CPU in capitals",
            1,
            args!["--device", "CPU"],
            kw!["unknown device `CPU`"],
        ),
        (
            "--device trt on the CPU build",
            1,
            args!["--device", "trt"],
            kw!["tensorrt", "onnxruntime-gpu"],
        ),
        (
            "--ort-lib absent",
            1,
            args!["--ort-lib", "/no/such/libonnxruntime.so"],
            kw!["/no/such/libonnxruntime.so"],
        ),
        (
            "--threads not a number",
            2,
            args!["--threads", "many"],
            kw!["invalid value 'many' for '--threads <THREADS>'"],
        ),
        ("--threads negative", 2, args!["--threads", "-1"], kw!["-1"]),
        (
            "--gpu not a number",
            2,
            args!["--gpu", "first"],
            kw!["invalid value 'first' for '--gpu <GPU>'"],
        ),
        (
            "unknown flag",
            2,
            args!["--verbose"],
            kw!["unexpected argument '--verbose'"],
        ),
    ] {
        let a = with_defaults(args!["info", &t], extra, &[("--threads", "1")]);
        cases.push(case(name, code, says, a));
    }
    cases.push(case(
        "no package",
        2,
        kw!["required arguments were not provided", "<PACKAGE>"],
        args!["info"],
    ));
    cases.push(case(
        "two packages",
        2,
        kw!["unexpected argument"],
        args!["info", &t, &t],
    ));

    // Families: the manifest's family, its mrope section and trailing video tokens must agree with
    // each other and with the graphs (a llama package, then the Qwen2.5-VL test package).
    let mrope = "{temporal_patch_size: 2, tokens_per_second: 2, seconds_per_group: 1.0, sections: [2, 3, 3]}";
    let qwen_src = repo("tests/fixtures/tiny-qwen2_5_vl");
    let qwen_with = |name: &str, path: &str, value: &str| -> PathBuf {
        let pkg = package_copy_of(&s, name, &qwen_src);
        let mut doc = read_manifest(&pkg);
        *yaml_at(&mut doc, path) = yaml(value);
        std::fs::write(pkg.join("model.yaml"), serde_yaml::to_string(&doc).unwrap()).unwrap();
        pkg
    };
    for (name, pkg, says) in [
        (
            "family unknown",
            package_with(&s, "family", Some("qwen3")),
            kw!["family: unknown variant `qwen3`", "`llama` or `qwen2_5_vl`"],
        ),
        (
            "family qwen2_5_vl without mrope",
            package_with(&s, "family", Some("qwen2_5_vl")),
            kw!["family qwen2_5_vl needs an mrope section"],
        ),
        (
            "mrope on a llama package",
            package_with(&s, "mrope", Some(mrope)),
            kw!["mrope is set but family is llama"],
        ),
        (
            "mrope with an unknown field",
            qwen_with("q-field", "mrope.fps", "2"),
            kw!["unknown field `fps`", "temporal_patch_size"],
        ),
        (
            "mrope.sections off rope_dim",
            qwen_with("q-sections", "mrope.sections", "[2, 3, 4]"),
            kw!["mrope.sections [2, 3, 4] cover 18 rotary dims, but rope_dim is 16"],
        ),
        (
            "mrope.temporal_patch_size zero",
            qwen_with("q-tps", "mrope.temporal_patch_size", "0"),
            kw!["mrope.temporal_patch_size is 0"],
        ),
        (
            "mrope.seconds_per_group negative",
            qwen_with("q-spg", "mrope.seconds_per_group", "-1.0"),
            kw!["mrope.seconds_per_group is -1; it must be finite and >= 0"],
        ),
        (
            "mrope.temporal_patch_size off the vision graph",
            qwen_with("q-tps3", "mrope.temporal_patch_size", "3"),
            kw![
                "vision.onnx",
                "the vision graph ran on 12 blank frames of 64x64: video.num_frames 4 x 3 decoded \
                 frames per group"
            ],
        ),
        (
            "a qwen2_5_vl rope graph in a llama package",
            {
                let pkg = qwen_with("q-llama", "family", "llama");
                let mut doc = read_manifest(&pkg);
                yaml_remove(&mut doc, "mrope");
                std::fs::write(pkg.join("model.yaml"), serde_yaml::to_string(&doc).unwrap())
                    .unwrap();
                pkg
            },
            kw!["rope.onnx", "position_ids", "rank 3"],
        ),
        (
            "video.trailing_tokens off the vision graph",
            package_with(&s, "video.trailing_tokens", Some("1")),
            kw![
                "vision.onnx",
                "1 frames gave 16 video tokens, but the manifest's grid 4x4 and 1 trailing tokens \
                 implies 17"
            ],
        ),
        (
            "per-frame text on qwen2_5_vl",
            qwen_with("q-frames", "prompt.frame_separator", "','"),
            kw!["family qwen2_5_vl places its video as one block of M-RoPE positions"],
        ),
        (
            "prompt.frame_prefix with an unknown field",
            package_with(&s, "prompt.frame_prefix", Some("'Frame {n}: '")),
            kw!["prompt.frame_prefix \"Frame {n}: \" has a brace field other than {i}"],
        ),
        (
            "prompt.frame_separator with a field",
            package_with(&s, "prompt.frame_separator", Some("'{t}'")),
            kw!["prompt.frame_separator \"{t}\" is literal text"],
        ),
        (
            "prompt.frame_prefix holding the placeholder",
            package_with(&s, "prompt.frame_prefix", Some("'<video>'")),
            kw![
                "video_token_id",
                "appears 8 times in the prompt, expected 4 (one per frame)"
            ],
        ),
    ] {
        cases.push(case(format!("families: {name}"), 1, says, info(&pkg)));
    }
    run_table("info", cases);
}

// =============================================================================================
// Data sets: TVBench, TOMATO and JSON sample lists, field by field, through `vidflow eval`

#[test]
fn eval_names_every_bad_record() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let mut cases = Vec::new();

    // --- JSON sample lists: one bad record alone exits 2 naming the field.
    let long = "word ".repeat(20_000);
    let list_cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "id a number",
            set("id", json!(3)),
            kw!["record 0: field id: expected a string, found 3"],
        ),
        (
            "task a list",
            set("task", json!(["t"])),
            kw!["field task: expected a string, found [\"t\"]"],
        ),
        (
            "video missing",
            del("video"),
            kw!["record 0: field video is missing (expected a string)"],
        ),
        (
            "video a number",
            set("video", json!(5)),
            kw!["field video: expected a string, found 5"],
        ),
        (
            "video empty",
            set("video", json!("")),
            kw!["record 0: field video is \"\" (expected the path of a video file"],
        ),
        (
            "video blank",
            set("video", json!("  ")),
            kw!["record 0: field video is \"  \""],
        ),
        (
            "video absent",
            set("video", json!("absent.mp4")),
            kw!["absent.mp4", "not found"],
        ),
        (
            "video truncated",
            set("video", json!("truncated.mp4")),
            kw!["truncated.mp4", "not a readable video file"],
        ),
        (
            "video a text file",
            set("video", json!("text.mp4")),
            kw!["text.mp4", "not a readable video file"],
        ),
        (
            "video an empty file",
            set("video", json!("empty.mp4")),
            kw!["empty.mp4"],
        ),
        (
            "video of one frame",
            set("video", json!("one_frame.mp4")),
            kw![
                "one_frame.mp4",
                "only 1 decodable frames found, fewer than the 4 frames asked"
            ],
        ),
        (
            "video a folder without frames",
            set("video", json!("no_frames")),
            kw!["no_frames"],
        ),
        (
            "question missing",
            del("question"),
            kw!["field question is missing (expected a string)"],
        ),
        (
            "question a number",
            set("question", json!(7)),
            kw!["field question: expected a string, found 7"],
        ),
        (
            "question null",
            set("question", Json::Null),
            kw!["field question is missing"],
        ),
        (
            "question of 100 KB",
            set("question", json!(long)),
            kw![
                "the prompt text is",
                "question 100000 bytes",
                "at most 16384 bytes are accepted"
            ],
        ),
        (
            "question of 600 words",
            set("question", json!("word ".repeat(600))),
            kw![
                "the prompt is",
                "the model takes at most 512 (model.yaml max_positions)"
            ],
        ),
        (
            "options missing",
            del("options"),
            kw!["field options is missing (expected a list of strings)"],
        ),
        (
            "options a string",
            set("options", json!("a, b")),
            kw!["field options: expected a list of strings, found \"a, b\""],
        ),
        (
            "options of numbers",
            set("options", json!([1, 2])),
            kw!["field options: item 0: expected a string, found 1"],
        ),
        (
            "options empty",
            set("options", json!([])),
            kw!["field options: 0 options; expected 2 to 8"],
        ),
        (
            "options one",
            set("options", json!(["only"])),
            kw!["field options: 1 options; expected 2 to 8"],
        ),
        (
            "options nine",
            set("options", nine_options()),
            kw!["field options: 9 options; expected 2 to 8"],
        ),
        (
            "options repeated",
            set("options", json!(["same", "same"])),
            kw!["field options: options 0 and 1 are both \"same\""],
        ),
        (
            "options repeated once trimmed",
            set("options", json!(["a", "b", " b "])),
            kw!["options 1 and 2 are both \"b\" once the spaces around them are trimmed"],
        ),
        (
            "options blank",
            set("options", json!(["a", ""])),
            kw!["field options: option 1 is blank (\"\")"],
        ),
        (
            "options of spaces",
            set("options", json!(["   ", "a"])),
            kw!["option 0 is blank (\"   \")"],
        ),
        (
            "option of 100 KB",
            set("options", json!(["a", long])),
            kw![
                "the prompt text is",
                "options 100001 bytes",
                "at most 16384 bytes are accepted"
            ],
        ),
        (
            "answer -1",
            set("answer", json!(-1)),
            kw!["field answer: -1 is neither an option index (0 to 1) nor an option text"],
        ),
        (
            "answer 2.5",
            set("answer", json!(2.5)),
            kw!["field answer: 2.5 is neither an option index"],
        ),
        (
            "answer true",
            set("answer", json!(true)),
            kw!["field answer: true is neither an option index"],
        ),
        (
            "answer not an option",
            set("answer", json!("not an option")),
            kw!["field answer: \"not an option\" is not among the options"],
        ),
        (
            "answer out of range",
            set("answer", json!(2)),
            kw!["field answer: 2 is not an option index (0 to 1 for the 2 options)"],
        ),
        (
            "answer a list",
            set("answer", json!([0])),
            kw!["field answer: [0] is neither an option index"],
        ),
        (
            "start NaN as text",
            set("start", json!("NaN")),
            kw!["field start: expected a number of seconds, found \"NaN\""],
        ),
        (
            "end with a unit",
            set("end", json!("1s")),
            kw!["field end: expected a number of seconds, found \"1s\""],
        ),
        (
            "start after end",
            edit(|m| {
                m.insert("start".into(), json!(1.5));
                m.insert("end".into(), json!(0.5));
            }),
            kw![
                "good.mp4",
                "invalid time window [1.5, 0.5] s",
                "0 <= start < end"
            ],
        ),
        (
            "start negative",
            set("start", json!(-1)),
            kw!["good.mp4", "invalid time window [-1,"],
        ),
        (
            "start equal to end",
            edit(|m| {
                m.insert("start".into(), json!(1));
                m.insert("end".into(), json!(1));
            }),
            kw!["invalid time window [1, 1] s"],
        ),
        (
            "start past the video",
            set("start", json!(100)),
            kw![
                "good.mp4",
                "time window [100, inf] s lies outside the video (16 frames at 8.000 fps"
            ],
        ),
        (
            "window too short for the frames",
            edit(|m| {
                m.insert("start".into(), json!(0));
                m.insert("end".into(), json!(0.2));
            }),
            kw![
                "good.mp4",
                "the window holds only",
                "fewer than the 4 frames asked"
            ],
        ),
        (
            "unknown field",
            set("colour", json!("red")),
            kw!["record 0: unknown field \"colour\"; expected one of id, task, video"],
        ),
        (
            "misspelt field",
            edit(|m| {
                let q = m.remove("question").unwrap();
                m.insert("qustion".into(), q);
            }),
            kw!["unknown field \"qustion\""],
        ),
    ];
    for (name, edit, says) in list_cases {
        let rec = list_record(edit);
        let list = v.list(
            &format!("list-{}", name.replace(' ', "_")),
            to_text(&json!([rec])),
        );
        let out = s.fresh("out");
        cases.push(case(
            format!("json: {name}"),
            2,
            [kw!["nothing could be scored"], says].concat(),
            eval_args(&format!("json:{}", list.display()), &out),
        ));
    }
    let good = to_text(&list_record(|_| {}));
    for (name, text, code, says) in [
        ("record 7", "[7]".to_string(), 2, kw!["record 0: expected an object, found 7"]),
        ("record a string", "[\"good.mp4\"]".to_string(), 2, kw!["record 0: expected an object, found \"good.mp4\""]),
        ("record null", "[null]".to_string(), 2, kw!["record 0: expected an object, found null"]),
        ("record a list", "[[1, 2]]".to_string(), 2, kw!["record 0: expected an object, found [1,2]"]),
        ("repeated key", r#"[{"id": "a", "video": "good.mp4", "question": "Q?", "question": "Q2?", "options": ["x", "y"]}]"#.to_string(), 2, kw!["record 0: duplicate key \"question\" in object at line 1"]),
        ("BOM before a bad record", format!("\u{feff}[{}]", to_text(&list_record(|m| { m.insert("answer".into(), json!(9)); }))), 2, kw!["field answer: 9 is not an option index"]),
        ("empty list", "[]".to_string(), 2, kw!["nothing could be scored: the data set has no samples"]),
        ("top level an object", good.clone(), 1, kw!["expected a JSON list of samples, found an object"]),
        ("top level a string", "\"samples\"".to_string(), 1, kw!["expected a JSON list of samples, found a string"]),
        ("top level a number", "42".to_string(), 1, kw!["expected a JSON list of samples, found a number"]),
        ("cut in half", format!("[{}]", &good[..good.len() / 2]), 1, kw!["EOF while parsing", "line"]),
        ("empty file", String::new(), 1, kw!["EOF while parsing"]),
        ("trailing comma", format!("[{good},]"), 1, kw!["line"]),
        ("text after the list", format!("[{good}] and more"), 1, kw!["trailing characters"]),
        ("single quotes", "[{'id': 'a'}]".to_string(), 1, kw!["key must be a string"]),
    ] {
        let list = v.list(&format!("whole-{}", name.replace(' ', "_")), text);
        let out = s.fresh("out");
        let mut says = says;
        // The one message that names no file (the eval runner's, see the report in testing.md).
        if name != "empty list" {
            says.push(list.file_name().unwrap().to_string_lossy().into_owned());
        }
        cases.push(case(format!("json: {name}"), code, says, eval_args(&format!("json:{}", list.display()), &out)));
    }
    for (name, bytes, says) in [
        (
            "UTF-16 file",
            b"\xff\xfe[\x00]\x00".to_vec(),
            kw!["the file is UTF-16 text; save it as UTF-8"],
        ),
        (
            "not UTF-8",
            b"[{\"id\": \"\xe9\"}]".to_vec(),
            kw!["not UTF-8 text: byte 0xe9 at line 1 column 10"],
        ),
    ] {
        let list = v.list(&format!("bytes-{}", name.replace(' ', "_")), bytes);
        cases.push(case(
            format!("json: {name}"),
            1,
            says,
            eval_args(&format!("json:{}", list.display()), &s.fresh("out")),
        ));
    }
    let absent = v.dir.join("absent.json");
    cases.push(case(
        "json: list file absent",
        1,
        kw!["absent.json", "No such file or directory"],
        eval_args(&format!("json:{}", absent.display()), &s.fresh("out")),
    ));
    cases.push(case(
        "json: list is a folder",
        1,
        kw!["no_frames", "Is a directory"],
        eval_args(&format!("json:{}", v.no_frames.display()), &s.fresh("out")),
    ));

    // A good record next to a bad one: exit 0, the bad one in summary.json's not_scored.
    let good_rec = list_record(|_| {});
    for (name, bad, id, says) in [
        (
            "json+good: repeated id",
            list_record(|_| {}),
            "good#1",
            vec!["record 1: duplicate id \"good\": record 0 has it already"],
        ),
        (
            "json+good: one option",
            list_record(|m| {
                m.insert("id".into(), json!("b"));
                m.insert("options".into(), json!(["x"]));
            }),
            "b",
            vec!["record 1: field options: 1 options; expected 2 to 8"],
        ),
        (
            "json+good: answer -1",
            list_record(|m| {
                m.insert("id".into(), json!("b"));
                m.insert("answer".into(), json!(-1));
            }),
            "b",
            vec!["field answer: -1 is neither"],
        ),
        (
            "json+good: video absent",
            list_record(|m| {
                m.insert("id".into(), json!("b"));
                m.insert("video".into(), json!("gone.mp4"));
            }),
            "b",
            vec!["gone.mp4"],
        ),
        (
            "json+good: video truncated",
            list_record(|m| {
                m.insert("id".into(), json!("b"));
                m.insert("video".into(), json!("truncated.mp4"));
            }),
            "b",
            vec!["truncated.mp4", "not a readable video file"],
        ),
        (
            "json+good: positional id taken",
            list_record(|m| {
                m.remove("id");
            }),
            "1#1",
            vec!["its id \"1\" (from its position: it has no id) is the id of record 0 already"],
        ),
    ] {
        let first = if name.ends_with("positional id taken") {
            list_record(|m| {
                m.insert("id".into(), json!("1"));
            })
        } else {
            good_rec.clone()
        };
        let list = v.list(
            &format!("pair-{}", name.replace([' ', ':', '+'], "_")),
            to_text(&json!([first, bad])),
        );
        let out = s.fresh("out");
        cases.push(
            case(
                name,
                0,
                kw!["not scored (1)", id],
                eval_args(&format!("json:{}", list.display()), &out),
            )
            .then(not_scored(out.clone(), 1, id, &says)),
        );
    }

    // --- TVBench.
    let tv = |recs: Json| vec![("t1.json", to_text(&recs))];
    let tv_cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "video missing",
            del("video"),
            kw!["t1.json: record 0: field video is missing"],
        ),
        (
            "video a number",
            set("video", json!(1)),
            kw!["field video: expected a string, found 1"],
        ),
        (
            "video absent",
            set("video", json!("absent.mp4")),
            kw!["record 0: video", "video/t1/absent.mp4 not found"],
        ),
        (
            "video empty",
            set("video", json!("")),
            kw!["record 0: field video is \"\" (expected a file name under video/t1/)"],
        ),
        (
            "video truncated",
            set("video", json!("truncated.mp4")),
            kw!["video/t1/truncated.mp4", "not a readable video file"],
        ),
        (
            "video in another task's folder",
            set("video", json!("../t2/good.mp4")),
            kw!["t2/good.mp4 not found"],
        ),
        (
            "question missing",
            del("question"),
            kw!["field question is missing"],
        ),
        (
            "question a list",
            set("question", json!(["Q?"])),
            kw!["field question: expected a string, found [\"Q?\"]"],
        ),
        (
            "candidates missing",
            del("candidates"),
            kw!["field candidates is missing (expected a list of strings)"],
        ),
        (
            "candidates a string",
            set("candidates", json!("a|b")),
            kw!["field candidates: expected a list of strings"],
        ),
        (
            "candidates with a number",
            set("candidates", json!(["a", 2])),
            kw!["field candidates: item 1: expected a string, found 2"],
        ),
        (
            "candidates one",
            set("candidates", json!([OPTIONS[0]])),
            kw!["field candidates: 1 options; expected 2 to 8"],
        ),
        (
            "candidates nine",
            edit(|m| {
                m.insert("candidates".into(), nine_options());
                m.insert("answer".into(), json!("option 1"));
            }),
            kw!["field candidates: 9 options; expected 2 to 8"],
        ),
        (
            "candidates repeated",
            edit(|m| {
                m.insert("candidates".into(), json!([OPTIONS[0], OPTIONS[0]]));
            }),
            kw!["field candidates: options 0 and 1 are both"],
        ),
        (
            "candidates blank",
            set("candidates", json!([OPTIONS[0], " "])),
            kw!["field candidates: option 1 is blank"],
        ),
        (
            "answer missing",
            del("answer"),
            kw!["field answer is missing (expected the text of one of the candidates)"],
        ),
        (
            "answer an index",
            set("answer", json!(0)),
            kw!["field answer: expected the text of one of the candidates, found 0"],
        ),
        (
            "answer not a candidate",
            set("answer", json!("a green triangle")),
            kw!["field answer: \"a green triangle\" is not among the candidates"],
        ),
        (
            "answer with a space",
            set("answer", json!(format!(" {}", OPTIONS[0]))),
            kw!["field answer: \" a red square\" is not among the candidates"],
        ),
        (
            "question_id a list",
            set("question_id", json!(["q"])),
            kw!["field question_id: expected a string or a number, found [\"q\"]"],
        ),
        (
            "start a word",
            set("start", json!("begin")),
            kw!["field start: expected a number of seconds, found \"begin\""],
        ),
        (
            "end NaN as text",
            set("end", json!("NaN")),
            kw!["field end: expected a number of seconds, found \"NaN\""],
        ),
        (
            "start after end",
            edit(|m| {
                m.insert("start".into(), json!(2));
                m.insert("end".into(), json!(1));
            }),
            kw!["invalid time window [2, 1] s"],
        ),
        (
            "end negative",
            set("end", json!(-2)),
            kw!["invalid time window [0, -2] s"],
        ),
    ];
    for (name, edit, says) in tv_cases {
        let dir = tvbench_dir(&s, &v, &tv(json!([tv_record(edit)])));
        cases.push(case(
            format!("tvbench: {name}"),
            2,
            [kw!["nothing could be scored"], says].concat(),
            eval_args(&format!("tvbench:{}", dir.display()), &s.fresh("out")),
        ));
    }
    let tvgood = to_text(&json!([tv_record(|_| {})]));
    for (name, files, code, says) in [
        ("record a number", vec![("t1.json", "[1]".to_string())], 2, kw!["t1.json: record 0: expected an object, found 1"]),
        ("repeated key", vec![("t1.json", "[{\"video\": \"good.mp4\", \"question\": \"Q?\", \"candidates\": [\"a\", \"b\"], \"answer\": \"a\", \"answer\": \"b\"}]".to_string())], 2, kw!["record 0: duplicate key \"answer\" in object at line 1"]),
        ("BOM before a bad record", vec![("t1.json", format!("\u{feff}{}", to_text(&json!([tv_record(|m| { m.insert("answer".into(), json!("zzz")); })]))))], 2, kw!["field answer: \"zzz\" is not among the candidates"]),
        ("empty list", vec![("t1.json", "[]".to_string())], 2, kw!["the data set has no samples"]),
        ("only a hidden file", vec![("._t1.json", tvgood.clone())], 1, kw!["no .json annotation files in this folder (only 1 hidden one(s), skipped)"]),
        ("no annotation files", vec![("notes.txt", "x".to_string())], 1, kw!["json: no .json annotation files in this folder"]),
        ("top level an object", vec![("t1.json", "{\"q1\": {}}".to_string())], 1, kw!["t1.json: expected a JSON list of TVBench records, found an object"]),
        ("invalid JSON", vec![("t1.json", tvgood[..tvgood.len() - 3].to_string())], 1, kw!["t1.json", "EOF while parsing"]),
        ("a bad file next to a good one", vec![("t1.json", tvgood.clone()), ("t2.json", "{".to_string())], 1, kw!["t2.json", "EOF while parsing"]),
    ] {
        let dir = tvbench_dir(&s, &v, &files);
        cases.push(case(format!("tvbench: {name}"), code, says, eval_args(&format!("tvbench:{}", dir.display()), &s.fresh("out"))));
    }
    {
        let dir = s.dir("tvbench-no-json");
        cases.push(case(
            "tvbench: no json folder",
            1,
            kw!["tvbench-no-json/json", "No such file or directory"],
            eval_args(&format!("tvbench:{}", dir.display()), &s.fresh("out")),
        ));
    }
    for (name, second, id, says) in [
        (
            "tvbench+good: repeated question_id",
            tv_record(|_| {}),
            "t1/q1#1",
            vec!["t1.json: record 1: duplicate question_id \"q1\": record 0 has it already"],
        ),
        (
            "tvbench+good: answer not a candidate",
            tv_record(|m| {
                m.insert("question_id".into(), json!("q2"));
                m.insert("answer".into(), json!("green"));
            }),
            "t1/q2",
            vec!["field answer: \"green\" is not among the candidates"],
        ),
        (
            "tvbench+good: nine candidates",
            tv_record(|m| {
                m.insert("question_id".into(), json!(2));
                m.insert("candidates".into(), nine_options());
            }),
            "t1/2",
            vec!["field candidates: 9 options"],
        ),
        (
            "tvbench+good: truncated video",
            tv_record(|m| {
                m.insert("question_id".into(), json!("q3"));
                m.insert("video".into(), json!("truncated.mp4"));
            }),
            "t1/q3",
            vec!["truncated.mp4", "not a readable video file"],
        ),
    ] {
        let dir = tvbench_dir(&s, &v, &tv(json!([tv_record(|_| {}), second])));
        let out = s.fresh("out");
        cases.push(
            case(
                name,
                0,
                kw!["not scored (1)", id],
                eval_args(&format!("tvbench:{}", dir.display()), &out),
            )
            .then(not_scored(out.clone(), 1, id, &says)),
        );
    }
    {
        let dir = tvbench_dir(
            &s,
            &v,
            &[
                ("t1.json", tvgood.clone()),
                ("._t1.json", "\u{0}\u{5}garbage".to_string()),
            ],
        );
        cases.push(case(
            "tvbench+good: hidden AppleDouble file",
            0,
            kw!["skipped hidden file", "._t1.json"],
            eval_args(&format!("tvbench:{}", dir.display()), &s.fresh("out")),
        ));
    }

    // --- TOMATO.
    let tomato = |recs: Json| vec![("count.json", to_text(&recs))];
    let tomato_cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "question missing",
            del("question"),
            kw!["count.json: record \"1\": field question is missing"],
        ),
        (
            "question a number",
            set("question", json!(1)),
            kw!["field question: expected a string, found 1"],
        ),
        (
            "options missing",
            del("options"),
            kw!["field options is missing (expected a list of strings)"],
        ),
        (
            "options one",
            set("options", json!(["x"])),
            kw!["field options: 1 options; expected 2 to 8"],
        ),
        (
            "options nine",
            set("options", nine_options()),
            kw!["field options: 9 options; expected 2 to 8"],
        ),
        (
            "options repeated",
            set("options", json!(["x", "x"])),
            kw!["field options: options 0 and 1 are both \"x\""],
        ),
        (
            "options blank",
            set("options", json!(["x", "\t"])),
            kw!["field options: option 1 is blank"],
        ),
        (
            "answer missing",
            del("answer"),
            kw!["field answer is missing (expected an option index, 0 to 1)"],
        ),
        (
            "answer -1",
            set("answer", json!(-1)),
            kw!["field answer: -1 is not an option index (0 to 1 for the 2 options)"],
        ),
        (
            "answer 2.5",
            set("answer", json!(2.5)),
            kw!["field answer: 2.5 is not an option index"],
        ),
        (
            "answer true",
            set("answer", json!(true)),
            kw!["field answer: true is not an option index"],
        ),
        (
            "answer as text",
            set("answer", json!("0")),
            kw!["field answer: \"0\" is not an option index"],
        ),
        (
            "answer out of range",
            set("answer", json!(2)),
            kw!["field answer: 2 is not an option index (0 to 1 for the 2 options)"],
        ),
        (
            "key missing",
            del("key"),
            kw!["field key is missing (expected a string)"],
        ),
        (
            "key a number",
            set("key", json!(12)),
            kw!["field key: expected a string, found 12"],
        ),
        (
            "demonstration_type missing",
            del("demonstration_type"),
            kw!["field demonstration_type is missing"],
        ),
        (
            "demonstration_type a list",
            set("demonstration_type", json!(["human"])),
            kw!["field demonstration_type: expected a string"],
        ),
        (
            "video absent",
            set("key", json!("absent")),
            kw!["videos/human/absent.mp4 not found"],
        ),
        (
            "key empty",
            set("key", json!("")),
            kw!["record \"1\": field key is \"\" (expected a name"],
        ),
        (
            "demonstration_type blank",
            set("demonstration_type", json!(" ")),
            kw!["field demonstration_type is \" \""],
        ),
        (
            "video in another type's folder",
            set("demonstration_type", json!("object")),
            kw!["videos/object/good.mp4 not found"],
        ),
        (
            "video truncated",
            set("key", json!("truncated")),
            kw!["videos/human/truncated.mp4", "not a readable video file"],
        ),
    ];
    for (name, edit, says) in tomato_cases {
        let dir = tomato_dir(&s, &v, &tomato(json!({"1": tomato_record(edit)})));
        cases.push(case(
            format!("tomato: {name}"),
            2,
            [kw!["nothing could be scored"], says].concat(),
            eval_args(&format!("tomato:{}", dir.display()), &s.fresh("out")),
        ));
    }
    let rec = serde_json::to_string(&tomato_record(|_| {})).unwrap();
    for (name, files, code, says) in [
        (
            "record a string",
            vec![("count.json", "{\"1\": \"x\"}".to_string())],
            2,
            kw!["record \"1\": expected an object, found \"x\""],
        ),
        (
            "repeated id",
            vec![("count.json", format!("{{\"1\": {rec}, \"1\": {rec}}}"))],
            2,
            kw![
                "duplicate key \"1\"",
                "the id is used by 2 records, so none of them is used"
            ],
        ),
        (
            "repeated key inside a record",
            vec![(
                "count.json",
                format!(
                    "{{\"1\": {}}}",
                    rec.replacen("\"key\":\"good\"", "\"key\":\"good\",\"key\":\"good\"", 1)
                ),
            )],
            2,
            kw!["record \"1\": duplicate key \"key\" in object"],
        ),
        (
            "empty object",
            vec![("count.json", "{}".to_string())],
            2,
            kw!["the data set has no samples"],
        ),
        (
            "top level a list",
            vec![("count.json", format!("[{rec}]"))],
            1,
            kw!["count.json: expected a JSON object of TOMATO records keyed by id, found a list"],
        ),
        (
            "invalid JSON",
            vec![("count.json", format!("{{\"1\": {rec}"))],
            1,
            kw!["count.json", "EOF while parsing"],
        ),
        (
            "only a hidden file",
            vec![(".count.json", format!("{{\"1\": {rec}}}"))],
            1,
            kw!["data: no .json annotation files in this folder (only 1 hidden one(s), skipped)"],
        ),
        (
            "BOM before a bad record",
            vec![(
                "count.json",
                format!(
                    "\u{feff}{{\"1\": {}}}",
                    serde_json::to_string(&tomato_record(|m| {
                        m.insert("answer".into(), json!(7));
                    }))
                    .unwrap()
                ),
            )],
            2,
            kw!["field answer: 7 is not an option index"],
        ),
    ] {
        let dir = tomato_dir(&s, &v, &files);
        cases.push(case(
            format!("tomato: {name}"),
            code,
            says,
            eval_args(&format!("tomato:{}", dir.display()), &s.fresh("out")),
        ));
    }
    {
        let dir = s.dir("tomato-no-data");
        cases.push(case(
            "tomato: no data folder",
            1,
            kw!["tomato-no-data/data", "No such file or directory"],
            eval_args(&format!("tomato:{}", dir.display()), &s.fresh("out")),
        ));
    }
    for (name, second, id, says) in [
        (
            "tomato+good: answer 2.5",
            tomato_record(|m| {
                m.insert("answer".into(), json!(2.5));
            }),
            "count/2",
            vec!["record \"2\": field answer: 2.5 is not an option index"],
        ),
        (
            "tomato+good: video absent",
            tomato_record(|m| {
                m.insert("key".into(), json!("gone"));
            }),
            "count/2",
            vec!["videos/human/gone.mp4 not found"],
        ),
        (
            "tomato+good: one option",
            tomato_record(|m| {
                m.insert("options".into(), json!(["x"]));
            }),
            "count/2",
            vec!["field options: 1 options"],
        ),
    ] {
        let dir = tomato_dir(
            &s,
            &v,
            &tomato(json!({"1": tomato_record(|_| {}), "2": second})),
        );
        let out = s.fresh("out");
        cases.push(
            case(
                name,
                0,
                kw!["not scored (1)", id],
                eval_args(&format!("tomato:{}", dir.display()), &out),
            )
            .then(not_scored(out.clone(), 1, id, &says)),
        );
    }
    {
        let text = format!("{{\"1\": {rec}, \"2\": {rec}, \"2\": {rec}}}");
        let dir = tomato_dir(&s, &v, &[("count.json", text)]);
        let out = s.fresh("out");
        cases.push(
            case(
                "tomato+good: repeated id",
                0,
                kw!["not scored (1)", "count/2"],
                eval_args(&format!("tomato:{}", dir.display()), &out),
            )
            .then(not_scored(
                out.clone(),
                1,
                "count/2",
                &["the id is used by 2 records"],
            )),
        );
    }
    run_table("data", cases);
}

// =============================================================================================
// eval's flags

#[test]
fn eval_refuses_bad_flags() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let data_dir = tvbench_dir(&s, &v, &[("t1.json", to_text(&json!([tv_record(|_| {})])))]);
    let data = format!("tvbench:{}", data_dir.display());
    // A finished run with seed 0, for the resume conflict.
    let done = s.fresh("done");
    let o = run_vidflow(&eval_args(&data, &done));
    assert_eq!(o.code, Some(0), "setup eval: {}", o.stderr);
    let pathways = |name: &str, text: &str| s.file(&format!("{name}.yaml"), text);
    let p32 = pathways(
        "p32",
        "num_layers: 32\nrules:\n  - {source: video, target: last, blocked: all}\n",
    );
    let unknown_group = pathways(
        "unknown-group",
        "num_layers: 4\nrules:\n  - {source: audio, target: last, blocked: all}\n",
    );
    let frame9 = pathways(
        "frame9",
        "num_layers: 4\nrules:\n  - {source: \"frame[9]\", target: last, blocked: all}\n",
    );
    let locked = s.dir("locked");

    let mut cases = Vec::new();
    let t = tiny();
    let base = |extra: Vec<OsString>| {
        with_defaults(
            args![
                "eval",
                "--model",
                tiny(),
                "--data",
                &data,
                "--out",
                s.fresh("out"),
                "--quiet"
            ],
            extra,
            &[("--threads", "1")],
        )
    };
    for (name, code, extra, says) in [
        (
            "--threads 100000",
            1,
            args!["--threads", "100000"],
            kw!["--threads 100000 is more than 4 per core"],
        ),
        (
            "--device bogus",
            1,
            args!["--device", "gpu"],
            kw!["unknown device `gpu`"],
        ),
        (
            "--device cuda on the CPU build",
            1,
            args!["--device", "cuda"],
            kw!["cuda", "onnxruntime-gpu"],
        ),
        (
            "--frames 0",
            1,
            args!["--frames", "0"],
            kw!["--frames 0: expected at least 1 frame per video"],
        ),
        (
            "--frames more than the video has",
            2,
            args!["--frames", "17"],
            kw!["only 16 decodable frames found, fewer than the 17 frames asked"],
        ),
        (
            "--frames too many for max_positions",
            2,
            args!["--frames", "28"],
            kw![
                "the prompt is 532 positions (84 text tokens and 448 video tokens)",
                "at most 512 (model.yaml max_positions)"
            ],
        ),
        (
            "--limit 0",
            2,
            args!["--limit", "0"],
            kw!["the data set has no samples (after --tasks, --limit and --shard)"],
        ),
        (
            "--shard 0/3",
            1,
            args!["--shard", "0/3"],
            kw!["--shard 0/3: expected K/N with 1 <= K <= N"],
        ),
        (
            "--shard 4/3",
            1,
            args!["--shard", "4/3"],
            kw!["--shard 4/3: expected K/N"],
        ),
        (
            "--shard x",
            1,
            args!["--shard", "x"],
            kw!["--shard x: expected K/N"],
        ),
        (
            "--shard 1/0",
            1,
            args!["--shard", "1/0"],
            kw!["--shard 1/0: expected K/N"],
        ),
        (
            "--shard 1/2/3",
            1,
            args!["--shard", "1/2/3"],
            kw!["--shard 1/2/3: expected K/N"],
        ),
        (
            "--shard -1/2",
            1,
            args!["--shard=-1/2"],
            kw!["--shard -1/2: expected K/N"],
        ),
        (
            "--shard empty",
            1,
            args!["--shard", ""],
            kw!["--shard : expected K/N"],
        ),
        (
            "--shard 2/2 of one sample",
            2,
            args!["--shard", "2/2"],
            kw!["the data set has no samples"],
        ),
        (
            "--mode pathways: without a file",
            1,
            args!["--mode", "pathways:"],
            kw!["no pathway config named"],
        ),
        (
            "--mode pathways:missing.yaml",
            1,
            args!["--mode", "pathways:missing.yaml"],
            kw!["missing.yaml", "No such file or directory"],
        ),
        (
            "--mode random:2",
            1,
            args!["--mode", "random:2"],
            kw!["random blocking ratio 2 is outside [0, 1]"],
        ),
        (
            "--mode random:NaN",
            1,
            args!["--mode", "random:NaN"],
            kw!["random blocking ratio NaN is outside [0, 1]"],
        ),
        (
            "--mode random:-0.1",
            1,
            args!["--mode", "random:-0.1"],
            kw!["random blocking ratio -0.1 is outside [0, 1]"],
        ),
        (
            "--mode random:0.5:x",
            1,
            args!["--mode", "random:0.5:x"],
            kw!["\"random:0.5:x\": the seed \"x\" is not a whole number"],
        ),
        (
            "--mode random:half",
            1,
            args!["--mode", "random:half"],
            kw!["\"random:half:0\": expected random:RATIO[:SEED] with RATIO in [0, 1]"],
        ),
        (
            "--mode random: without a ratio",
            1,
            args!["--mode", "random:"],
            kw!["expected random:RATIO[:SEED]"],
        ),
        (
            "--mode bogus",
            1,
            args!["--mode", "bogus"],
            kw!["--mode bogus: expected full, pathways:FILE or random:RATIO[:SEED]"],
        ),
        (
            "--mode FULL in capitals",
            1,
            args!["--mode", "FULL"],
            kw!["--mode FULL: expected full"],
        ),
        (
            "--mode pathways of 32 layers unscaled",
            2,
            args!["--mode", format!("pathways:{}", p32.display())],
            kw![
                "p32.yaml",
                "the config is written for 32 layers (num_layers), the model has 4",
                "--scale"
            ],
        ),
        (
            "--mode pathways with an unknown group",
            1,
            args!["--mode", format!("pathways:{}", unknown_group.display())],
            kw![
                "unknown-group.yaml",
                "rule 1 (audio -> last): unknown group \"audio\""
            ],
        ),
        (
            "--mode pathways naming frame 9 of 4",
            2,
            args!["--mode", format!("pathways:{}", frame9.display())],
            kw!["frame9.yaml", "rule 1 (frame[9] -> last)"],
        ),
        (
            "--tasks unknown",
            1,
            args!["--tasks", "nope"],
            kw!["task `nope` is not in", "its tasks are {\"t1\"}"],
        ),
        (
            "--tasks one known one unknown",
            1,
            args!["--tasks", "t1,t9"],
            kw!["task `t9` is not in"],
        ),
        (
            "--out with other settings",
            1,
            vec![],
            kw!["other settings", "seed: 0 vs 1"],
        ),
        ("--out locked by another run", 1, vec![], kw!["locked"]),
        (
            "--frames not a number",
            2,
            args!["--frames", "four"],
            kw!["invalid value 'four' for '--frames <FRAMES>'"],
        ),
        ("--limit negative", 2, args!["--limit", "-1"], kw!["-1"]),
        (
            "--seed not a number",
            2,
            args!["--seed", "x"],
            kw!["invalid value 'x' for '--seed <SEED>'"],
        ),
        (
            "--workers not a number",
            2,
            args!["--workers", "two"],
            kw!["invalid value 'two' for '--workers <WORKERS>'"],
        ),
        (
            "unknown flag",
            2,
            args!["--batch", "4"],
            kw!["unexpected argument '--batch'"],
        ),
    ] {
        let a = match name {
            "--out with other settings" => {
                let mut a = eval_args(&data, &done);
                a.extend(args!["--seed", "1"]);
                a
            }
            "--out locked by another run" => eval_args(&data, &locked),
            _ => base(extra),
        };
        cases.push(case(format!("eval {name}"), code, says, a));
    }
    for (name, spec, code, says) in [
        (
            "--data of an unknown kind",
            format!("videos:{}", data_dir.display()),
            1,
            kw!["expected tvbench:DIR, tomato:DIR or json:FILE"],
        ),
        (
            "--data a bare folder",
            data_dir.display().to_string(),
            1,
            kw!["expected tvbench:DIR, tomato:DIR or json:FILE"],
        ),
        (
            "--data tvbench folder absent",
            format!("tvbench:{}", s.root().join("absent").display()),
            1,
            kw!["absent/json", "No such file or directory"],
        ),
        (
            "--data tomato: on a TVBench folder",
            format!("tomato:{}", data_dir.display()),
            1,
            kw!["/data", "No such file or directory"],
        ),
        (
            "--data empty",
            String::new(),
            1,
            kw!["data ``: expected tvbench:DIR"],
        ),
    ] {
        cases.push(case(
            format!("eval {name}"),
            code,
            says,
            eval_args(&spec, &s.fresh("out")),
        ));
    }
    {
        let out = s.file("out-file", "x");
        cases.push(case(
            "eval --out is a file",
            1,
            kw!["out-file"],
            eval_args(&data, &out),
        ));
        let absent = s.root().join("absent-package");
        cases.push(case(
            "eval --model absent",
            1,
            kw!["absent-package", "model package directory not found"],
            args![
                "eval",
                "--model",
                absent,
                "--data",
                &data,
                "--out",
                s.fresh("out"),
                "--threads",
                "1"
            ],
        ));
        cases.push(case(
            "eval without --out",
            2,
            kw!["--out <OUT>"],
            args!["eval", "--model", &t, "--data", &data],
        ));
        cases.push(case(
            "eval without --data",
            2,
            kw!["--data <DATA>"],
            args!["eval", "--model", &t, "--out", s.fresh("out")],
        ));
    }
    let _lock = vidflow::report::FolderLock::acquire(&locked).expect("hold the lock");
    run_table("eval flags", cases);
}

// =============================================================================================
// knockout, lens and attention

#[test]
fn knockout_lens_and_attention_refuse_bad_flags() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let list = v.list("good", to_text(&json!([list_record(|_| {})])));
    let no_answer = v.list(
        "no-answer",
        to_text(&json!([list_record(|m| {
            m.remove("answer");
        })])),
    );
    let all_bad = v.list(
        "all-bad",
        to_text(&json!([list_record(|m| {
            m.insert("answer".into(), json!(5));
        })])),
    );
    let gone_video = v.list(
        "gone-video",
        to_text(&json!([list_record(|m| {
            m.insert("video".into(), json!("gone.mp4"));
        })])),
    );
    let data = format!("json:{}", list.display());
    let t = tiny();
    let mut cases = Vec::new();

    let ko = |extra: Vec<OsString>| {
        let mut a = args![
            "knockout",
            "--model",
            &t,
            "--data",
            &data,
            "--out",
            s.fresh("ko"),
            "--quiet",
            "--threads",
            "1"
        ];
        a.extend(extra);
        a
    };
    for (name, code, extra, says) in [
        (
            "--targets unknown",
            1,
            args!["--targets", "video-to-last"],
            kw![
                "unknown knockout target \"video-to-last\"",
                "expected one of cross-frame, vql-to-ql"
            ],
        ),
        (
            "--targets empty",
            1,
            args!["--targets", ""],
            kw!["no flows to knock out: give --targets and/or --flows"],
        ),
        (
            "no targets and no flows",
            1,
            vec![],
            kw!["no flows to knock out"],
        ),
        (
            "--targets one known one unknown",
            1,
            args!["--targets", "vql-to-ql,vql_to_ql"],
            kw!["unknown knockout target \"vql_to_ql\""],
        ),
        (
            "--window 0",
            1,
            args!["--targets", "vql-to-ql", "--window", "0"],
            kw!["--window must be at least 1"],
        ),
        (
            "--window-style unknown",
            1,
            args!["--targets", "vql-to-ql", "--window-style", "middle"],
            kw!["unknown window style \"middle\"; expected center, inverse, top_down or bottom_up"],
        ),
        (
            "--layers 0-0",
            1,
            args!["--targets", "vql-to-ql", "--layers", "0-0"],
            kw!["layer range \"0-0\": expected A-B (0-based, end exclusive"],
        ),
        (
            "--layers 3-1",
            1,
            args!["--targets", "vql-to-ql", "--layers", "3-1"],
            kw!["layer range \"3-1\""],
        ),
        (
            "--layers 1-99",
            1,
            args!["--targets", "vql-to-ql", "--layers", "1-99"],
            kw!["sweep layers 1-99 are not a non-empty part of the model's layers 0-4"],
        ),
        (
            "--layers 4",
            1,
            args!["--targets", "vql-to-ql", "--layers", "4"],
            kw!["sweep layers 4-5"],
        ),
        (
            "--layers x",
            1,
            args!["--targets", "vql-to-ql", "--layers", "x"],
            kw!["layer range \"x\""],
        ),
        (
            "--layers empty",
            1,
            args!["--targets", "vql-to-ql", "--layers", ""],
            kw!["layer range \"\""],
        ),
        (
            "--layers the largest number",
            1,
            args!["--targets", "vql-to-ql", "--layers", "18446744073709551615"],
            kw!["layer range \"18446744073709551615\""],
        ),
        (
            "--layers negative",
            1,
            args!["--targets", "vql-to-ql", "--layers=-1-2"],
            kw!["layer range \"-1-2\""],
        ),
        (
            "--masked-rows unknown",
            2,
            args!["--targets", "vql-to-ql", "--masked-rows", "nan"],
            kw!["invalid value 'nan' for '--masked-rows"],
        ),
        (
            "--batch not a number",
            2,
            args!["--targets", "vql-to-ql", "--batch", "x"],
            kw!["invalid value 'x' for '--batch <BATCH>'"],
        ),
        (
            "--flows absent",
            1,
            args!["--flows", s.root().join("absent-flows.yaml")],
            kw!["absent-flows.yaml", "No such file or directory"],
        ),
    ] {
        cases.push(case(format!("knockout {name}"), code, says, ko(extra)));
    }
    for (name, spec, code, says) in [
        (
            "data without answers",
            format!("json:{}", no_answer.display()),
            2,
            kw![
                "the sample has no ground-truth answer (field answer)",
                "nothing could be scored"
            ],
        ),
        (
            "data with only bad records",
            format!("json:{}", all_bad.display()),
            2,
            kw![
                "field answer: 5 is not an option index",
                "nothing could be scored"
            ],
        ),
        (
            "data whose videos are gone",
            format!("json:{}", gone_video.display()),
            2,
            kw!["gone.mp4"],
        ),
        (
            "data of an unknown kind",
            "csv:list.csv".to_string(),
            1,
            kw!["data `csv:list.csv`: expected tvbench:DIR, tomato:DIR or json:FILE"],
        ),
    ] {
        cases.push(case(
            format!("knockout {name}"),
            code,
            says,
            args![
                "knockout",
                "--model",
                &t,
                "--data",
                spec,
                "--targets",
                "vql-to-ql",
                "--out",
                s.fresh("ko"),
                "--quiet",
                "--threads",
                "1"
            ],
        ));
    }
    // --flows YAML, every field.
    for (name, text, says) in [
        ("not YAML", "flows: [unclosed\n", kw!["flows-"]),
        ("a list", "- video\n", kw!["invalid type: sequence"]),
        ("targets unknown", "targets: [cross-frames]\n", kw!["targets:", "unknown knockout target \"cross-frames\""]),
        ("targets a string", "targets: cross-frame\n", kw!["targets: invalid type: string \"cross-frame\"", "expected a sequence"]),
        ("window 0", "targets: [vql-to-ql]\nwindow: 0\n", kw!["window: must be at least 1"]),
        ("window negative", "targets: [vql-to-ql]\nwindow: -3\n", kw!["window: invalid type: integer `-3`, expected usize"]),
        ("window_style unknown", "targets: [vql-to-ql]\nwindow_style: sideways\n", kw!["window_style:", "unknown window style \"sideways\""]),
        ("layers backwards", "targets: [vql-to-ql]\nlayers: 3-1\n", kw!["layers:", "layer range \"3-1\""]),
        ("layers a list", "targets: [vql-to-ql]\nlayers: [0, 2]\n", kw!["layers: invalid type: sequence", "expected a string"]),
        ("a flow repeating a target's by name", "targets: [cross-frame]\nflows:\n  - {name: cross-frame, source: video, target: last}\n", kw!["flow \"cross-frame\" is asked for twice"]),
        ("layers beyond the model", "targets: [vql-to-ql]\nlayers: 0-40\n", kw!["sweep layers 0-40 are not a non-empty part of the model's layers 0-4"]),
        ("flow with a source only", "flows:\n  - source: video\n", kw!["flows[0]: give either `source` and `target`, or a non-empty `block` list"]),
        ("flow with source, target and block", "flows:\n  - source: video\n    target: last\n    block: [{source: video, target: last}]\n", kw!["flows[0]: give either `source` and `target`"]),
        ("flow with an empty block", "flows:\n  - block: []\n", kw!["flows[0]: give either `source` and `target`, or a non-empty `block` list"]),
        ("flow source unknown", "flows:\n  - {source: audio, target: last}\n", kw!["flows[0]: source:", "unknown token group \"audio\""]),
        ("flow target unknown", "flows:\n  - {source: video, target: answer}\n", kw!["flows[0]: target:", "unknown token group \"answer\""]),
        ("flow source an empty list", "flows:\n  - {source: [], target: last}\n", kw!["flows[0]: `source` names no group"]),
        ("flow frame without index", "flows:\n  - {source: \"frame[]\", target: last}\n", kw!["unknown token group \"frame[]\""]),
        ("flow frame[x]", "flows:\n  - {source: \"frame[x]\", target: last}\n", kw!["unknown token group \"frame[x]\""]),
        ("flow unknown field", "flows:\n  - {source: video, target: last, layers: 2}\n", kw!["unknown field `layers`"]),
        ("block pair unknown field", "flows:\n  - block: [{source: video, target: last, weight: 1}]\n", kw!["unknown field `weight`"]),
        ("block pair target unknown", "flows:\n  - block: [{source: video, target: \"option[x]\"}]\n", kw!["flows[0]: target:", "unknown token group \"option[x]\""]),
        ("two flows of one name", "flows:\n  - {name: same, source: video, target: last}\n  - {name: same, source: question, target: last}\n", kw!["flow \"same\" is asked for twice"]),
        ("a flow repeating a target's", "targets: [vql-to-ql]\nflows:\n  - {source: video, target: last}\n", kw!["flow \"video ↛ last\" is asked for twice"]),
        ("unknown top-level field", "targets: [vql-to-ql]\nsweep: 3\n", kw!["unknown field `sweep`"]),
        ("empty file", "", kw!["no flows to knock out"]),
    ] {
        let file = s.file(&format!("flows-{}.yaml", name.replace(' ', "_")), text);
        let mut says = says;
        if name != "empty file" && !name.starts_with("two flows") && !name.starts_with("a flow repeating") && name != "layers beyond the model" {
            says.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
        cases.push(case(format!("knockout --flows {name}"), 1, says, ko(args!["--flows", file])));
    }

    // lens.
    let lens = |extra: Vec<OsString>| {
        let mut a = args![
            "lens",
            "--model",
            &t,
            "--data",
            &data,
            "--out",
            s.fresh("lens"),
            "--quiet",
            "--threads",
            "1"
        ];
        a.extend(extra);
        a
    };
    cases.push(case(
        "lens --projection unknown",
        1,
        kw!["bogus"],
        lens(args!["--projection", "bogus"]),
    ));
    cases.push(case(
        "lens --projection in capitals",
        1,
        kw!["NORM+HEAD"],
        lens(args!["--projection", "NORM+HEAD"]),
    ));
    cases.push(case(
        "lens --keywords absent",
        1,
        kw!["absent-keywords.yaml", "No such file or directory"],
        lens(args!["--keywords", s.root().join("absent-keywords.yaml")]),
    ));
    for (name, text, says) in [
        ("not YAML", "categories: {unclosed\n", kw![""]),
        (
            "categories missing",
            "name: x\n",
            kw!["missing field `categories`"],
        ),
        (
            "categories a list",
            "categories: [a, b]\n",
            kw![
                "categories: invalid type: sequence",
                "expected a YAML mapping"
            ],
        ),
        (
            "category empty",
            "categories:\n  spatial: []\n",
            kw!["categories.spatial: needs non-empty words"],
        ),
        (
            "category with a blank word",
            "categories:\n  spatial: [bag, ' ']\n",
            kw!["categories.spatial: needs non-empty words"],
        ),
        (
            "category a string",
            "categories:\n  spatial: bag\n",
            kw!["categories.spatial: expected a list of words"],
        ),
        (
            "category of maps",
            "categories:\n  spatial: [{a: 1}]\n",
            kw!["categories.spatial: expected a list of words"],
        ),
        (
            "category repeated",
            "categories:\n  spatial: [bag]\n  spatial: [box]\n",
            kw!["duplicate", "spatial"],
        ),
        (
            "category key a number",
            "categories:\n  [1, 2]: [bag]\n",
            kw!["categories: key"],
        ),
        (
            "unknown field",
            "categories:\n  spatial: [bag]\ncolour: red\n",
            kw!["unknown field `colour`"],
        ),
    ] {
        let file = s.file(&format!("keywords-{}.yaml", name.replace(' ', "_")), text);
        let mut says: Vec<String> = says.into_iter().filter(|k| !k.is_empty()).collect();
        says.push(file.file_name().unwrap().to_string_lossy().into_owned());
        cases.push(case(
            format!("lens --keywords {name}"),
            1,
            says,
            lens(args!["--keywords", file]),
        ));
    }
    cases.push(case(
        "lens data whose videos are gone",
        2,
        kw!["gone.mp4"],
        args![
            "lens",
            "--model",
            &t,
            "--data",
            format!("json:{}", gone_video.display()),
            "--out",
            s.fresh("lens"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "lens data without answers",
        2,
        kw![
            "the sample has no ground-truth answer (field answer)",
            "nothing could be scored"
        ],
        args![
            "lens",
            "--model",
            &t,
            "--data",
            format!("json:{}", no_answer.display()),
            "--out",
            s.fresh("lens"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));

    // attention.
    let att = |extra: Vec<OsString>| {
        let mut a = args![
            "attention",
            "--model",
            &t,
            "--data",
            &data,
            "--out",
            s.fresh("att"),
            "--quiet",
            "--threads",
            "1"
        ];
        a.extend(extra);
        a
    };
    let att_flows = s.file(
        "att-flows.yaml",
        "flows:\n  - {name: mine, source: video, target: last}\n",
    );
    for (name, extra, says) in [
        (
            "--query unknown",
            args!["--query", "answer"],
            kw!["unknown token group \"answer\"; expected system, video, video.sep, frame[i]"],
        ),
        (
            "--query frame[x]",
            args!["--query", "frame[x]"],
            kw!["unknown token group \"frame[x]\""],
        ),
        (
            "--query option[]",
            args!["--query", "option[]"],
            kw!["unknown token group \"option[]\""],
        ),
        (
            "--query empty",
            args!["--query", ""],
            kw!["unknown token group \"\""],
        ),
        (
            "--query frame beyond the video",
            args!["--query", "frame[9]"],
            kw!["token group \"frame[9]\": index must be 0..4 for this prompt"],
        ),
        (
            "--layers 0-9",
            args!["--layers", "0-9"],
            kw!["layers 0-9 are not a non-empty part of the model's layers 0-4"],
        ),
        (
            "--layers 2-2",
            args!["--layers", "2-2"],
            kw!["layer range \"2-2\""],
        ),
        (
            "--layers a-b",
            args!["--layers", "a-b"],
            kw!["layer range \"a-b\""],
        ),
        (
            "--flow unknown",
            args!["--targets", "vql-to-ql", "--flow", "video ↛ answer"],
            kw![
                "--flow \"video ↛ answer\" is not among the flows",
                "video ↛ last"
            ],
        ),
        (
            "--flow without targets or flows",
            args!["--flow", "video ↛ last"],
            kw!["--flow needs --targets or --flows that define it"],
        ),
        (
            "--flow with an unknown target",
            args!["--targets", "bogus", "--flow", "video ↛ last"],
            kw!["unknown knockout target \"bogus\""],
        ),
        (
            "--flow not in --flows",
            args!["--flows", &att_flows, "--flow", "theirs"],
            kw!["--flow \"theirs\" is not among the flows: mine"],
        ),
        (
            "--block-layers backwards",
            args![
                "--targets",
                "vql-to-ql",
                "--flow",
                "video ↛ last",
                "--block-layers",
                "3-1"
            ],
            kw!["layer range \"3-1\""],
        ),
        (
            "--block-layers beyond the model",
            args![
                "--targets",
                "vql-to-ql",
                "--flow",
                "video ↛ last",
                "--block-layers",
                "0-99"
            ],
            kw!["layers 0-99 are not a non-empty part of the model's layers 0-4"],
        ),
        (
            "--block-layers not a range",
            args![
                "--targets",
                "vql-to-ql",
                "--flow",
                "video ↛ last",
                "--block-layers",
                "all"
            ],
            kw!["layer range \"all\""],
        ),
        (
            "--sample unknown",
            args!["--sample", "nobody"],
            kw!["no sample with id \"nobody\""],
        ),
        (
            "--flows absent",
            args!["--flows", s.root().join("absent.yaml"), "--flow", "x"],
            kw!["absent.yaml", "No such file or directory"],
        ),
    ] {
        // A group the prompt lacks fails each sample: nothing scored, exit status 2.
        let code = if name == "--query frame beyond the video" {
            2
        } else {
            1
        };
        cases.push(case(format!("attention {name}"), code, says, att(extra)));
    }
    cases.push(case(
        "attention data whose videos are gone",
        2,
        kw!["gone.mp4"],
        args![
            "attention",
            "--model",
            &t,
            "--data",
            format!("json:{}", gone_video.display()),
            "--out",
            s.fresh("att"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "attention without --data",
        2,
        kw!["--data <DATA>"],
        args!["attention", "--model", &t],
    ));
    run_table("knockout, lens, attention", cases);
}

// =============================================================================================
// plan: pathway configs, shape-only models and layouts

#[test]
fn plan_refuses_bad_configs_shapes_and_layouts() {
    let s = Scratch::new();
    let t = tiny();
    let mut cases = Vec::new();
    let plan = |config: &OsStr| args!["plan", "--model", &t, "--config", config];

    // Pathway configs, every field.
    for (name, text, code, says) in [
        ("not YAML", "rules: [unclosed\n", 1, kw!["not a pathway config"]),
        ("empty", "", 1, kw!["not a pathway config"]),
        ("num_layers missing", "rules: []\n", 1, kw!["not a pathway config", "missing field `num_layers`"]),
        ("num_layers 0", "num_layers: 0\nrules: []\n", 1, kw!["num_layers must be positive"]),
        ("num_layers a string", "num_layers: four\nrules: []\n", 1, kw!["num_layers: invalid type: string \"four\""]),
        ("num_layers negative", "num_layers: -4\nrules: []\n", 1, kw!["num_layers: invalid type: integer `-4`, expected usize"]),
        ("num_layers 32 without --scale", "num_layers: 32\nrules: []\n", 1, kw!["the config is written for 32 layers (num_layers), the model has 4", "--scale"]),
        ("rules missing", "num_layers: 4\n", 1, kw!["missing field `rules`"]),
        ("rules a map", "num_layers: 4\nrules: {source: video}\n", 1, kw!["rules: invalid type: map", "expected a sequence"]),
        ("unknown top-level field", "num_layers: 4\nrules: []\nlayers: 4\n", 1, kw!["unknown field `layers`"]),
        ("rule without source", "num_layers: 4\nrules:\n  - {target: last, blocked: all}\n", 1, kw!["missing field `source`"]),
        ("rule without target", "num_layers: 4\nrules:\n  - {source: video, blocked: all}\n", 1, kw!["missing field `target`"]),
        ("rule unknown group", "num_layers: 4\nrules:\n  - {source: subtitles, target: last, blocked: all}\n", 1, kw!["rule 1 (subtitles -> last): unknown group \"subtitles\"", "expected one of"]),
        ("rule target unknown", "num_layers: 4\nrules:\n  - {source: video, target: answer, blocked: all}\n", 1, kw!["rule 1 (video -> answer): unknown group \"answer\""]),
        ("rule cross-frame on one side", "num_layers: 4\nrules:\n  - {source: cross-frame, target: last, blocked: all}\n", 1, kw!["rule 1 (cross-frame -> last)", "write it as both source and target"]),
        ("rule blocked and except", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: all, except: \"1\"}\n", 1, kw!["give exactly one of `blocked:`", "or `except:`"]),
        ("rule neither blocked nor except", "num_layers: 4\nrules:\n  - {source: video, target: last}\n", 1, kw!["rule 1 (video -> last): give exactly one of `blocked:`"]),
        ("rule blocked layer 0", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: 0}\n", 1, kw!["blocked: layer 0 does not exist: layers are numbered from 1"]),
        ("rule blocked layer 9 of 4", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: 9}\n", 1, kw!["blocked: layer 9 is beyond the model's 4 layers"]),
        ("rule blocked range backwards", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: \"3-2\"}\n", 1, kw!["blocked: layer range \"3-2\" runs backwards"]),
        ("rule blocked range past the end", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: \"2-5\"}\n", 1, kw!["layer 5 is beyond the model's 4 layers"]),
        ("rule blocked a word", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: early}\n", 1, kw!["blocked: cannot read \"early\" as layers"]),
        ("rule blocked an empty list", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: []}\n", 1, kw!["blocked: the layer list is empty"]),
        ("rule blocked a nested list", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: [[1, 2]]}\n", 1, kw!["blocked: layer lists cannot be nested"]),
        ("rule blocked negative", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: -1}\n", 1, kw!["blocked: layer -1 is not a positive whole number"]),
        ("rule blocked a fraction", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: 1.5}\n", 1, kw!["blocked: layer 1.5 is not a positive whole number"]),
        ("rule blocked true", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: true}\n", 1, kw!["blocked: cannot read true as layers"]),
        ("rule except a bad range", "num_layers: 4\nrules:\n  - {source: video, target: last, except: \"1-x\"}\n", 1, kw!["except: cannot read \"1-x\" as layers"]),
        ("rule unknown field", "num_layers: 4\nrules:\n  - {source: video, target: last, blocked: all, layers: 2}\n", 1, kw!["unknown field `layers`"]),
        ("rule frame beyond the video", "num_layers: 4\nrules:\n  - {source: \"frame[7]\", target: last, blocked: all}\n", 1, kw!["rule 1 (frame[7] -> last)", "frame[7]"]),
        ("rule option beyond the options", "num_layers: 4\nrules:\n  - {source: \"option[6]\", target: last, blocked: all}\n", 1, kw!["rule 1 (option[6] -> last)", "option[6]"]),
    ] {
        let file = s.file(&format!("config-{}.yaml", name.replace(' ', "_")), text);
        let mut says = says;
        says.push(file.file_name().unwrap().to_string_lossy().into_owned());
        cases.push(case(format!("config {name}"), code, says, plan(file.as_os_str())));
    }
    for (name, arg, says) in [
        (
            "config absent",
            s.root().join("absent.yaml").display().to_string(),
            kw!["absent.yaml", "No such file or directory"],
        ),
        (
            "config empty argument",
            String::new(),
            kw!["no pathway config named"],
        ),
        (
            "config random:1.5",
            "random:1.5".to_string(),
            kw!["random blocking ratio 1.5 is outside [0, 1]"],
        ),
        (
            "config random:x",
            "random:x".to_string(),
            kw!["\"random:x\": expected random:RATIO[:SEED]"],
        ),
        (
            "config random:0.5:-1",
            "random:0.5:-1".to_string(),
            kw!["the seed \"-1\" is not a whole number"],
        ),
        (
            "config random:inf",
            "random:inf".to_string(),
            kw!["random blocking ratio inf is outside [0, 1]"],
        ),
        (
            "config a folder",
            s.root().display().to_string(),
            kw!["Is a directory"],
        ),
    ] {
        cases.push(case(name, 1, says, plan(OsStr::new(&arg))));
    }
    let good_config = repo("configs/pathways/tiny.yaml");
    for (name, code, extra, says) in [
        (
            "--option without --question",
            1,
            args!["--option", "a"],
            kw!["--option needs --question"],
        ),
        (
            "--question with one option",
            1,
            args!["--question", "Q?", "--option", "a"],
            kw!["--question needs at least two --option values"],
        ),
        (
            "--question without options",
            1,
            args!["--question", "Q?"],
            kw!["--question needs at least two --option values"],
        ),
        (
            "--answer beyond the built-in options",
            1,
            args!["--answer", "4"],
            kw!["answer"],
        ),
        (
            "--answer beyond the given options",
            1,
            args![
                "--question",
                "Q?",
                "--option",
                "a",
                "--option",
                "b",
                "--answer",
                "2"
            ],
            kw!["answer"],
        ),
        (
            "nine --option values",
            1,
            [
                args!["--question", "Q?"],
                (1..=9)
                    .flat_map(|i| args!["--option", format!("o{i}")])
                    .collect(),
            ]
            .concat(),
            kw!["prompt: 9 answer options given, expected 2 to 8"],
        ),
        (
            "a question longer than max_positions",
            1,
            args![
                "--question",
                "word ".repeat(20_000),
                "--option",
                "a",
                "--option",
                "b"
            ],
            kw!["512"],
        ),
        ("--answer negative", 2, args!["--answer", "-1"], kw!["-1"]),
    ] {
        let mut a = args!["plan", "--model", &t, "--config", &good_config];
        a.extend(extra);
        cases.push(case(format!("plan {name}"), code, says, a));
    }
    cases.push(case(
        "plan --model absent",
        1,
        kw!["absent-package", "model.yaml"],
        args![
            "plan",
            "--model",
            s.root().join("absent-package"),
            "--config",
            &good_config
        ],
    ));
    cases.push(case(
        "plan with neither --model nor --shape",
        2,
        kw!["--model <MODEL>"],
        args!["plan", "--config", &good_config],
    ));
    cases.push(case(
        "plan with --model and --shape",
        2,
        kw!["cannot be used with"],
        args![
            "plan",
            "--model",
            &t,
            "--shape",
            repo("configs/models/smollm2-135m.yaml"),
            "--config",
            &good_config
        ],
    ));
    cases.push(case(
        "plan --shape with --question",
        1,
        kw!["--question, --option and --answer need --model"],
        args![
            "plan",
            "--shape",
            repo("configs/models/smollm2-135m.yaml"),
            "--question",
            "Q?",
            "--config",
            &good_config
        ],
    ));
    cases.push(case(
        "plan --layout without --shape",
        1,
        kw!["--layout describes a --shape model's sequence"],
        args![
            "plan",
            "--model",
            &t,
            "--layout",
            "system=1",
            "--config",
            &good_config
        ],
    ));
    cases.push(case(
        "plan without --config",
        2,
        kw!["--config <CONFIG>"],
        args!["plan", "--model", &t],
    ));

    // Shape-only models: every field missing, zero; wrong kinds.
    let shape_text = "name: shape\nnum_layers: 4\nhidden_size: 64\nnum_heads: 4\nnum_kv_heads: 2\nhead_dim: 16\nintermediate_size: 128\nvocab_size: 633\nmax_positions: 4096\nvideo: {num_frames: 4, grid_h: 4, grid_w: 4}\n";
    let shape_doc: Yaml = yaml(shape_text);
    let shape_file = s.file("shape.yaml", shape_text);
    let tiny_config = good_config.clone();
    let shape_plan = |shape: &Path, layout: Option<&str>| {
        let mut a = args!["plan", "--shape", shape, "--config", &tiny_config];
        if let Some(l) = layout {
            a.extend(args!["--layout", l]);
        }
        a
    };
    for f in [
        "name",
        "num_layers",
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "max_positions",
        "video",
        "video.num_frames",
        "video.grid_h",
        "video.grid_w",
    ] {
        let mut doc = shape_doc.clone();
        yaml_remove(&mut doc, f);
        let last = f.rsplit('.').next().unwrap();
        let file = s.file(
            &format!("shape-no-{f}.yaml"),
            serde_yaml::to_string(&doc).unwrap(),
        );
        cases.push(case(
            format!("shape {f} missing"),
            1,
            kw![
                format!("shape-no-{f}.yaml"),
                "not a model shape description",
                format!("missing field `{last}`")
            ],
            shape_plan(&file, None),
        ));
        if f != "name" && f != "video" {
            let mut doc = shape_doc.clone();
            *yaml_at(&mut doc, f) = yaml("0");
            let file = s.file(
                &format!("shape-zero-{f}.yaml"),
                serde_yaml::to_string(&doc).unwrap(),
            );
            cases.push(case(
                format!("shape {f} zero"),
                1,
                kw![
                    format!("shape-zero-{f}.yaml"),
                    format!("{f} must be positive")
                ],
                shape_plan(&file, None),
            ));
        }
    }
    for (name, edit, value, says) in [
        (
            "num_heads not a multiple of kv heads",
            "num_heads",
            "3",
            kw!["num_heads (3) must be a multiple of num_kv_heads (2)"],
        ),
        (
            "num_layers a string",
            "num_layers",
            "many",
            kw!["num_layers: invalid type: string \"many\""],
        ),
        (
            "hidden_size negative",
            "hidden_size",
            "-64",
            kw!["hidden_size: invalid type: integer `-64`, expected usize"],
        ),
        (
            "video a list",
            "video",
            "[4, 4, 4]",
            kw!["video: invalid type: sequence"],
        ),
        (
            "unknown field",
            "rope_dim",
            "16",
            kw!["unknown field `rope_dim`"],
        ),
        (
            "unknown video field",
            "video.fps",
            "8",
            kw!["unknown field `fps`"],
        ),
        (
            "max_positions below the layout",
            "max_positions",
            "100",
            kw!["the layout is 179 positions long; shape takes at most 100 (max_positions)"],
        ),
        (
            "num_layers 32 against the 4-layer config",
            "num_layers",
            "32",
            kw!["the config is written for 4 layers (num_layers), the model has 32"],
        ),
    ] {
        let mut doc = shape_doc.clone();
        *yaml_at(&mut doc, edit) = yaml(value);
        let file = s.file(
            &format!("shape-{}.yaml", name.replace(' ', "_")),
            serde_yaml::to_string(&doc).unwrap(),
        );
        cases.push(case(
            format!("shape {name}"),
            1,
            says,
            shape_plan(&file, None),
        ));
    }
    cases.push(case(
        "shape absent",
        1,
        kw!["absent-shape.yaml", "No such file or directory"],
        shape_plan(&s.root().join("absent-shape.yaml"), None),
    ));
    {
        let file = s.file("shape-not-yaml.yaml", "name: [x\n");
        cases.push(case(
            "shape not YAML",
            1,
            kw!["shape-not-yaml.yaml", "not a model shape description"],
            shape_plan(&file, None),
        ));
    }

    // --layout, every field.
    for (name, layout, says) in [
        ("empty", "", kw!["field system=N is missing"]),
        (
            "system missing",
            "question=60,template=20",
            kw!["field system=N is missing"],
        ),
        (
            "question missing",
            "system=35,template=20",
            kw!["field question=N is missing"],
        ),
        (
            "template missing",
            "system=35,question=60",
            kw!["field template=N is missing"],
        ),
        (
            "system not a number",
            "system=x,question=60,template=20",
            kw!["system=x is not a whole number"],
        ),
        (
            "system negative",
            "system=-1,question=60,template=20",
            kw!["system=-1 is not a whole number"],
        ),
        (
            "question a fraction",
            "system=35,question=6.5,template=20",
            kw!["question=6.5 is not a whole number"],
        ),
        (
            "template zero",
            "system=35,question=60,template=0",
            kw!["template must be at least 1: its final position is `last`"],
        ),
        (
            "field without a value",
            "system,question=60,template=20",
            kw!["field \"system\" is not key=value"],
        ),
        (
            "field twice",
            "system=35,system=3,question=60,template=20",
            kw!["field \"system\" is given twice"],
        ),
        (
            "unknown field",
            "system=35,question=60,template=20,audio=5",
            kw!["unknown field \"audio\"; expected system, frames, question"],
        ),
        (
            "options longer than the question",
            "system=35,question=60,template=20,options=4x20",
            kw!["question=60 must be longer than its 4x20 option tokens"],
        ),
        (
            "options as long as the question",
            "system=35,question=8,template=20,options=2x4",
            kw!["question=8 must be longer than its 2x4 option tokens"],
        ),
        (
            "options of one number",
            "system=35,question=60,template=20,options=4",
            kw!["options=4: expected 2 positive whole numbers joined by x"],
        ),
        (
            "options zero",
            "system=35,question=60,template=20,options=0x5",
            kw!["options=0x5: expected 2 positive whole numbers joined by x"],
        ),
        (
            "answer out of range",
            "system=35,question=60,template=20,options=4x2,answer=4",
            kw!["answer=4 must be an option index 0..4"],
        ),
        (
            "answer without options",
            "system=35,question=60,template=20,answer=0",
            kw!["answer=0 must be an option index 0..0 (set options=KxN)"],
        ),
        (
            "answer not a number",
            "system=35,question=60,template=20,options=4x2,answer=B",
            kw!["answer=B must be an option index"],
        ),
        (
            "frames zero",
            "system=35,frames=0x1x1,question=60,template=20",
            kw!["frames=0x1x1: expected 3 positive whole numbers joined by x"],
        ),
        (
            "frames of two numbers",
            "system=35,frames=8x12,question=60,template=20",
            kw!["frames=8x12: expected 3 positive whole numbers"],
        ),
        (
            "frames not numbers",
            "system=35,frames=axbxc,question=60,template=20",
            kw!["frames=axbxc: expected 3 whole numbers joined by x"],
        ),
        (
            "frames beyond max_positions",
            "system=35,frames=100x12x12,question=60,template=20",
            kw!["the layout is 14515 positions long; shape takes at most 4096 (max_positions)"],
        ),
        (
            "frames beyond any model",
            "system=35,frames=100000x12x12,question=60,template=20",
            kw!["14400115 positions; a layout holds at most 1048576"],
        ),
        (
            "frames overflowing",
            "system=35,frames=99999999999999x99999999x9,question=60,template=20",
            kw!["the layout's length overflows"],
        ),
        (
            "system overflowing",
            "system=18446744073709551615,question=60,template=20",
            kw!["overflows"],
        ),
    ] {
        cases.push(case(
            format!("layout {name}"),
            1,
            // The check against the shape's max_positions comes after the layout is parsed.
            if name == "frames beyond max_positions" {
                says
            } else {
                kw![format!("layout {layout:?}")]
                    .into_iter()
                    .chain(says)
                    .collect()
            },
            shape_plan(&shape_file, Some(layout)),
        ));
    }
    run_table("plan", cases);
}

// =============================================================================================
// synth

#[test]
fn synth_refuses_bad_settings() {
    let s = Scratch::new();
    let mut cases = Vec::new();
    let synth = |extra: Vec<OsString>| {
        with_defaults(
            args!["synth", "--out", s.fresh("synth")],
            extra,
            &[("--per-task", "2")],
        )
    };
    for (name, code, extra, says) in [
        (
            "--size 31",
            1,
            args!["--size", "31"],
            kw!["frame size 31: expected an even size from 32 to 1024"],
        ),
        (
            "--size 33",
            1,
            args!["--size", "33"],
            kw!["frame size 33: expected an even size"],
        ),
        ("--size 30", 1, args!["--size", "30"], kw!["frame size 30"]),
        (
            "--size 100000",
            1,
            args!["--size", "100000"],
            kw!["frame size 100000"],
        ),
        ("--size 0", 1, args!["--size", "0"], kw!["frame size 0"]),
        (
            "--frames 7",
            1,
            args!["--frames", "7"],
            kw!["7 frames: at least 8 are needed for the temporal events"],
        ),
        (
            "--frames 0",
            1,
            args!["--frames", "0"],
            kw!["0 frames: at least 8 are needed"],
        ),
        (
            "--frames 5000",
            1,
            args!["--frames", "5000"],
            kw!["5000 frames: at most 4096 per video"],
        ),
        (
            "--fps 0",
            1,
            args!["--fps", "0"],
            kw!["--fps 0", "frame rate must be positive"],
        ),
        (
            "--per-task 0",
            1,
            args!["--per-task", "0"],
            kw!["--per-task 0", "at least 1 sample per task"],
        ),
        (
            "--suite unknown",
            1,
            args!["--suite", "audio"],
            kw!["suite `audio`: expected temporal or image"],
        ),
        (
            "--tasks unknown",
            1,
            args!["--tasks", "colour"],
            kw![
                "task `colour` is not in the Temporal suite",
                "its tasks are"
            ],
        ),
        (
            "--tasks of the other suite",
            1,
            args!["--suite", "image", "--tasks", "direction"],
            kw!["task `direction` is not in the Image suite"],
        ),
        (
            "--dump-frames 0",
            1,
            args!["--dump-frames", "0"],
            kw!["dump frames 0: expected 1 to 16 (the frames per video)"],
        ),
        (
            "--dump-frames more than the frames",
            1,
            args!["--dump-frames", "17"],
            kw!["dump frames 17: expected 1 to 16"],
        ),
        (
            "frames beyond the memory limit",
            1,
            args!["--size", "1024", "--frames", "4096"],
            kw![
                "MB of frames would be held in memory",
                "1024x1024 pixels, 4096 per video",
                "at most 1024 MB"
            ],
        ),
        (
            "dumped frames beyond the memory limit",
            1,
            args![
                "--size",
                "1024",
                "--dump-frames",
                "16",
                "--per-task",
                "100000"
            ],
            kw!["MB of frames would be held in memory", "dumped per task"],
        ),
        (
            "--size not a number",
            2,
            args!["--size", "large"],
            kw!["invalid value 'large' for '--size <SIZE>'"],
        ),
        (
            "--size negative",
            2,
            args!["--size=-64"],
            kw!["invalid value '-64' for '--size <SIZE>'"],
        ),
        (
            "--fps a fraction",
            2,
            args!["--fps", "7.5"],
            kw!["invalid value '7.5' for '--fps <FPS>'"],
        ),
        ("--seed negative", 2, args!["--seed", "-1"], kw!["-1"]),
    ] {
        cases.push(case(format!("synth {name}"), code, says, synth(extra)));
    }
    let file = s.file("synth-out-file", "x");
    cases.push(case(
        "synth --out is a file",
        1,
        kw!["synth-out-file"],
        args!["synth", "--out", &file, "--per-task", "1"],
    ));
    cases.push(case(
        "synth without --out",
        2,
        kw!["--out <OUT>"],
        args!["synth"],
    ));
    run_table("synth", cases);
}

// =============================================================================================
// discover: a real knockout run, then broken copies of it

#[test]
fn discover_refuses_broken_runs() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let list = v.list("good", to_text(&json!([list_record(|_| {})])));
    let run = s.fresh("knockout");
    let o = run_vidflow(&args![
        "knockout",
        "--model",
        tiny(),
        "--data",
        format!("json:{}", list.display()),
        "--targets",
        "vql-to-ql",
        "--window",
        "1",
        "--all-samples",
        "--out",
        &run,
        "--quiet",
        "--threads",
        "1"
    ]);
    assert_eq!(o.code, Some(0), "setup knockout: {}", o.stderr);
    let records = std::fs::read_to_string(run.join("knockouts.jsonl")).unwrap();
    let manifest = std::fs::read_to_string(run.join("run.json")).unwrap();
    let broken = |name: &str, file: &str, text: Option<String>| {
        let d = s.fresh(name);
        copy_dir(&run, &d);
        match text {
            Some(t) => std::fs::write(d.join(file), t).unwrap(),
            None => std::fs::remove_file(d.join(file)).unwrap(),
        }
        d
    };
    let discover = |from: &Path, extra: Vec<OsString>| {
        let mut a = args![
            "discover",
            "--from",
            from,
            "--out",
            s.fresh("pathways.yaml")
        ];
        a.extend(extra);
        a
    };
    let lines: Vec<&str> = records.lines().collect();
    let mut cases = Vec::new();
    for (name, file, text, says) in [
        (
            "run.json deleted",
            "run.json",
            None,
            kw!["run.json", "No such file or directory"],
        ),
        (
            "run.json cut in half",
            "run.json",
            Some(manifest[..manifest.len() / 2].to_string()),
            kw![
                "run.json",
                "not a knockout run manifest",
                "EOF while parsing"
            ],
        ),
        (
            "run.json empty object",
            "run.json",
            Some("{}".to_string()),
            kw!["run.json", "not a knockout run manifest", "missing field"],
        ),
        (
            "run.json a list",
            "run.json",
            Some("[]".to_string()),
            kw!["run.json", "not a knockout run manifest"],
        ),
        (
            "run.json num_layers a string",
            "run.json",
            Some(manifest.replacen("\"num_layers\": 4", "\"num_layers\": \"4\"", 1)),
            kw!["run.json", "not a knockout run manifest", "num_layers"],
        ),
        (
            "run.json num_layers 0",
            "run.json",
            Some(manifest.replacen("\"num_layers\": 4", "\"num_layers\": 0", 1)),
            kw!["run.json", "num_layers"],
        ),
        (
            "knockouts.jsonl deleted",
            "knockouts.jsonl",
            None,
            kw!["knockouts.jsonl", "No such file or directory"],
        ),
        (
            "knockouts.jsonl empty",
            "knockouts.jsonl",
            Some(String::new()),
            kw![
                "knockouts.jsonl",
                "no knockout records: nothing to discover from"
            ],
        ),
        (
            "knockouts.jsonl torn last line",
            "knockouts.jsonl",
            Some(records[..records.len() - 40].to_string()),
            kw![
                "knockouts.jsonl",
                format!("line {}", lines.len()),
                "EOF while parsing"
            ],
        ),
        (
            "knockouts.jsonl garbage line",
            "knockouts.jsonl",
            Some(format!("{}\nnot json\n{}", lines[0], lines[1..].join("\n"))),
            kw!["knockouts.jsonl", "line 2"],
        ),
        (
            "knockouts.jsonl pct_change a string",
            "knockouts.jsonl",
            Some(records.replacen(
                "\"pct_change_pred\":",
                "\"pct_change_pred\":\"x\",\"was\":",
                1,
            )),
            kw!["knockouts.jsonl", "line 1"],
        ),
        (
            "knockouts.jsonl a record of another layer count",
            "knockouts.jsonl",
            Some(records.replacen("\"layer\":0", "\"layer\":40", 1)),
            kw!["knockouts.jsonl", "layer 40"],
        ),
    ] {
        let d = broken(&format!("ko-{}", name.replace(' ', "_")), file, text);
        cases.push(case(
            format!("discover {name}"),
            1,
            says,
            discover(&d, vec![]),
        ));
    }
    for (name, extra, code, says) in [
        (
            "--threshold NaN",
            args!["--threshold", "NaN"],
            1,
            kw!["--threshold NaN: expected a finite percentage change"],
        ),
        (
            "--threshold inf",
            args!["--threshold", "inf"],
            1,
            kw!["--threshold inf: expected a finite percentage change"],
        ),
        (
            "--threshold -inf",
            args!["--threshold", "-inf"],
            1,
            kw!["--threshold -inf: expected a finite"],
        ),
        (
            "--threshold a word",
            args!["--threshold", "low"],
            2,
            kw!["invalid value 'low' for '--threshold <THRESHOLD>'"],
        ),
        (
            "--interval 0",
            args!["--interval", "0"],
            1,
            kw!["--interval must be at least 1"],
        ),
        (
            "--interval negative",
            args!["--interval", "-2"],
            2,
            kw!["-2"],
        ),
        (
            "--metric unknown",
            args!["--metric", "truth"],
            1,
            kw!["--metric truth: expected pred or true"],
        ),
    ] {
        cases.push(case(
            format!("discover {name}"),
            code,
            says,
            discover(&run, extra),
        ));
    }
    let empty = s.dir("empty-run");
    cases.push(case(
        "discover --from an empty folder",
        1,
        kw!["empty-run/run.json", "No such file or directory"],
        discover(&empty, vec![]),
    ));
    cases.push(case(
        "discover --from absent",
        1,
        kw!["absent-run/run.json"],
        discover(&s.root().join("absent-run"), vec![]),
    ));
    let file = s.file("run-file", "x");
    cases.push(case(
        "discover --from a file",
        1,
        kw!["run-file/run.json"],
        discover(&file, vec![]),
    ));
    cases.push(case(
        "discover --out in an absent folder",
        1,
        kw!["absent-dir/p.yaml", "No such file or directory"],
        args![
            "discover",
            "--from",
            &run,
            "--out",
            s.root().join("absent-dir/p.yaml")
        ],
    ));
    cases.push(case(
        "discover --out a folder",
        1,
        kw!["Is a directory"],
        args!["discover", "--from", &run, "--out", s.dir("out-dir")],
    ));
    cases.push(case(
        "discover without --from",
        2,
        kw!["--from <FROM>"],
        args!["discover"],
    ));
    cases.push(case(
        "discover --objective compute without a model",
        2,
        kw!["--model <MODEL>", "--data <VALIDATION>"],
        args!["discover", "--objective", "compute"],
    ));
    cases.push(case(
        "discover --objective unknown",
        1,
        kw!["--objective speed", "expected pathways or compute"],
        args!["discover", "--objective", "speed"],
    ));
    for (flag, value, keyword) in [
        ("--step", "0", "--step must be at least 1"),
        ("--max-drop", "-1", "--max-drop -1: expected a non-negative"),
        (
            "--max-drop",
            "NaN",
            "--max-drop NaN: expected a non-negative",
        ),
    ] {
        cases.push(case(
            format!("discover --objective compute {flag} {value}"),
            1,
            kw![keyword],
            args![
                "discover",
                "--objective",
                "compute",
                "--model",
                tiny(),
                "--data",
                format!("json:{}", list.display()),
                "--out",
                s.root().join("c.yaml"),
                flag,
                value
            ],
        ));
    }
    run_table("discover", cases);
}

// =============================================================================================
// merge: real shards, then broken and mismatched ones

#[test]
fn merge_refuses_what_is_not_one_run() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let recs = json!([
        tv_record(|_| {}),
        tv_record(|m| {
            m.insert("question_id".into(), json!("q2"));
        })
    ]);
    let data_dir = tvbench_dir(&s, &v, &[("t1.json", to_text(&recs))]);
    let data = format!("tvbench:{}", data_dir.display());
    let eval = |name: &str, extra: Vec<OsString>| {
        let out = s.fresh(name);
        let mut a = eval_args(&data, &out);
        a.extend(extra);
        let o = run_vidflow(&a);
        assert_eq!(o.code, Some(0), "setup eval {name}: {}", o.stderr);
        out
    };
    let a = eval("shard-1-of-2", args!["--shard", "1/2"]);
    let b = eval("shard-2-of-2", args!["--shard", "2/2"]);
    let whole = eval("unsharded", vec![]);
    let c = eval("shard-1-of-3", args!["--shard", "1/3"]);
    let seed1 = eval(
        "shard-2-of-2-seed-1",
        args!["--shard", "2/2", "--seed", "1"],
    );
    let copy = |from: &Path, name: &str, edit: &dyn Fn(&Path)| {
        let d = s.fresh(name);
        copy_dir(from, &d);
        edit(&d);
        d
    };
    let torn = copy(&b, "b-torn", &|d| {
        let p = d.join("records.jsonl");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() - 30]).unwrap();
    });
    let unfinished = copy(&b, "b-unfinished", &|d| {
        std::fs::remove_file(d.join("summary.json")).unwrap()
    });
    let bad_settings = copy(&b, "b-bad-settings", &|d| {
        std::fs::write(d.join("settings.json"), "{\"model\": 1}").unwrap()
    });
    let bad_load_errors = copy(&b, "b-bad-load-errors", &|d| {
        std::fs::write(d.join("load_errors.json"), "{}").unwrap()
    });
    let shared = copy(&b, "b-shares-a-sample", &|d| {
        let ra = std::fs::read_to_string(a.join("records.jsonl")).unwrap();
        let rb = std::fs::read_to_string(d.join("records.jsonl")).unwrap();
        std::fs::write(d.join("records.jsonl"), format!("{rb}{ra}")).unwrap();
    });
    let a_again = copy(&a, "a-again", &|_| {});
    let not_eval = s.dir("not-an-eval");
    write(&not_eval.join("notes.txt"), "x");
    let locked = s.dir("merge-locked");
    let merge = |out: &Path, shards: &[&Path]| {
        let mut v = args!["merge", "--out", out];
        v.extend(shards.iter().map(|p| p.as_os_str().to_os_string()));
        v
    };
    let mut cases = Vec::new();
    for (name, out, shards, code, says) in [
        (
            "--out among the inputs",
            a.clone(),
            vec![&a, &b],
            1,
            kw!["is also one of its input shards"],
        ),
        (
            "a shard missing",
            s.fresh("m"),
            vec![&a],
            1,
            kw!["merge: shard 2/2 of the run missing", "--partial"],
        ),
        (
            "an unsharded run",
            s.fresh("m"),
            vec![&whole],
            1,
            kw!["unsharded", "this run was not sharded (no --shard K/N)"],
        ),
        (
            "a torn last line",
            s.fresh("m"),
            vec![&a, &torn],
            1,
            kw!["b-torn", "records.jsonl"],
        ),
        (
            "shards of other settings",
            s.fresh("m"),
            vec![&a, &seed1],
            1,
            kw![
                "shard-2-of-2-seed-1",
                "not a shard of the same run",
                "seed: 0 vs 1"
            ],
        ),
        (
            "shards of two shard counts",
            s.fresh("m"),
            vec![&a, &c],
            1,
            kw!["shard-1-of-3", "shard 1/3, but the first shard is one of 2"],
        ),
        (
            "an unfinished shard",
            s.fresh("m"),
            vec![&a, &unfinished],
            1,
            kw!["b-unfinished", "shard 2/2 is unfinished (no summary.json)"],
        ),
        (
            "a folder that is not an eval",
            s.fresh("m"),
            vec![&a, &not_eval],
            1,
            kw![
                "not-an-eval",
                "not a vidflow run folder: none of settings.json"
            ],
        ),
        (
            "an absent folder",
            s.fresh("m"),
            vec![&a, &s.root().join("absent-shard")],
            1,
            kw!["absent-shard"],
        ),
        (
            "a shard given twice",
            s.fresh("m"),
            vec![&a, &a_again, &b],
            1,
            kw!["a-again", "shard 1/2 is given twice"],
        ),
        (
            "a broken settings.json",
            s.fresh("m"),
            vec![&a, &bad_settings],
            1,
            kw![
                "b-bad-settings/settings.json",
                "not an evaluation settings file"
            ],
        ),
        (
            "a broken load_errors.json",
            s.fresh("m"),
            vec![&a, &bad_load_errors],
            1,
            kw!["load_errors.json", "not a list of load errors"],
        ),
        (
            "shards sharing a sample",
            s.fresh("m"),
            vec![&a, &shared],
            1,
            kw!["sample t1/q1", "shards of one run never share a sample"],
        ),
        (
            "--out holding another run",
            c.clone(),
            vec![&a, &b],
            1,
            kw!["holds another run; merge into a new folder"],
        ),
        (
            "--out locked",
            locked.clone(),
            vec![&a, &b],
            1,
            kw!["locked"],
        ),
    ] {
        let shards: Vec<&Path> = shards.iter().map(|p| p.as_path()).collect();
        cases.push(case(
            format!("merge {name}"),
            code,
            says,
            merge(&out, &shards),
        ));
    }
    cases.push(case(
        "merge without shards",
        2,
        kw!["required arguments were not provided", "<SHARDS>"],
        args!["merge", "--out", s.fresh("m")],
    ));
    cases.push(case(
        "merge without --out",
        2,
        kw!["--out <OUT>"],
        args!["merge", &a, &b],
    ));
    let _lock = vidflow::report::FolderLock::acquire(&locked).expect("hold the lock");
    run_table("merge", cases);
}

// =============================================================================================
// answer

#[test]
fn answer_refuses_bad_questions_videos_and_lists() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let t = tiny();
    let base = |video: &Path, options: &[&str], extra: Vec<OsString>| {
        let mut a = args!["answer", "--model", &t, "--video", video];
        for o in options {
            a.extend(args!["--option", o]);
        }
        with_defaults(a, extra, &[("--question", QUESTION), ("--threads", "1")])
    };
    let long = "word ".repeat(20_000);
    let words = "word ".repeat(600);
    let nine: Vec<String> = (1..=9).map(|i| format!("option {i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let frames = repo("tests/fixtures/knockout/frames/clip0");
    let mut cases = Vec::new();
    for (name, video, options, extra, says) in [
        ("no --option", &v.good, vec![], vec![], kw!["give at least two --option values (got 0)"]),
        ("one --option", &v.good, vec!["yes"], vec![], kw!["give at least two --option values (got 1)"]),
        ("repeated options", &v.good, vec!["yes", "no", "yes"], vec![], kw!["--option: options 0 and 2 are both \"yes\""]),
        ("options repeated once trimmed", &v.good, vec!["yes", " yes"], vec![], kw!["--option: options 0 and 1 are both \"yes\" once the spaces around them are trimmed"]),
        ("a blank option", &v.good, vec!["yes", "  "], vec![], kw!["--option: option 1 is blank"]),
        ("nine options", &v.good, nine.clone(), vec![], kw!["prompt: 9 answer options given, expected 2 to 8"]),
        ("an option of 100 KB", &v.good, vec!["yes", long.as_str()], vec![], kw!["the prompt text is", "options 100003 bytes", "at most 16384 bytes are accepted"]),
        ("an option of 600 words", &v.good, vec!["yes", words.as_str()], vec![], kw!["the prompt is", "the model takes at most 512 (model.yaml max_positions)"]),
        ("--answer not an option or label", &v.good, vec!["yes", "no"], args!["--answer", "maybe"], kw!["--answer \"maybe\" is neither one of the options [\"yes\", \"no\"] nor one of their labels"]),
        ("--answer a label beyond the options", &v.good, vec!["yes", "no"], args!["--answer", "C"], kw!["--answer \"C\" is neither one of the options"]),
        ("--answer empty", &v.good, vec!["yes", "no"], args!["--answer", ""], kw!["--answer \"\" is neither"]),
        ("--answer in lower case", &v.good, vec!["yes", "no"], args!["--answer", "a"], kw!["--answer \"a\" is neither"]),
        ("--video absent", &s.root().join("absent.mp4"), vec!["yes", "no"], vec![], kw!["absent.mp4"]),
        ("--video truncated", &v.truncated, vec!["yes", "no"], vec![], kw!["truncated.mp4", "not a readable video file"]),
        ("--video text", &v.text, vec!["yes", "no"], vec![], kw!["text.mp4", "not a readable video file"]),
        ("--video empty", &v.empty, vec!["yes", "no"], vec![], kw!["empty.mp4"]),
        ("--video of one frame", &v.one_frame, vec!["yes", "no"], vec![], kw!["one_frame.mp4", "only 1 decodable frames found, fewer than the 4 frames asked"]),
        ("--video a folder without frames", &v.no_frames, vec!["yes", "no"], vec![], kw!["no_frames"]),
        ("--start after --end", &v.good, vec!["yes", "no"], args!["--start", "1.5", "--end", "0.5"], kw!["good.mp4", "invalid time window [1.5, 0.5] s: expected seconds with 0 <= start < end"]),
        ("--start negative", &v.good, vec!["yes", "no"], args!["--start=-1"], kw!["invalid time window [-1, inf]"]),
        ("--start NaN", &v.good, vec!["yes", "no"], args!["--start", "NaN"], kw!["invalid time window [NaN"]),
        ("--end -inf", &v.good, vec!["yes", "no"], args!["--end=-inf"], kw!["invalid time window [0, -inf]"]),
        ("--start past the video", &v.good, vec!["yes", "no"], args!["--start", "30"], kw!["good.mp4", "time window [30, inf] s lies outside the video (16 frames at 8.000 fps, 2.000 s)"]),
        ("--end too soon for the frames", &v.good, vec!["yes", "no"], args!["--end", "0.2"], kw!["the window holds only", "fewer than the 4 frames asked"]),
        ("a window on frames without --fps", &frames, vec!["yes", "no"], args!["--start", "0", "--end", "1"], kw!["clip0", "fps"]),
        ("--fps 0 on frames", &frames, vec!["yes", "no"], args!["--start", "0", "--end", "1", "--fps", "0"], kw!["--fps 0: expected a positive frame rate"]),
        ("a question of 100 KB", &v.good, vec!["yes", "no"], args!["--question", long.as_str()], kw!["the prompt text is", "question 100000 bytes", "at most 16384 bytes are accepted"]),
        ("--threads 100000", &v.good, vec!["yes", "no"], args!["--threads", "100000"], kw!["--threads 100000 is more than 4 per core"]),
    ] {
        cases.push(case(format!("answer {name}"), 1, says, base(video, &options, extra)));
    }
    // Sample lists.
    let list = |name: &str, recs: Json| v.list(name, to_text(&recs));
    let samples = |file: &Path| args!["answer", "--model", &t, "--samples", file, "--threads", "1"];
    for (name, file, code, says) in [
        (
            "--samples with only bad records",
            list(
                "only-bad",
                json!([
                    list_record(|m| {
                        m.insert("answer".into(), json!(-1));
                    }),
                    list_record(|m| {
                        m.insert("id".into(), json!("b"));
                        m.insert("options".into(), json!(["x"]));
                    })
                ]),
            ),
            2,
            kw![
                "skipped good: ",
                "field answer: -1 is neither",
                "none of its 2 records can be used"
            ],
        ),
        (
            "--samples empty",
            list("empty", json!([])),
            2,
            kw!["the sample list is empty"],
        ),
        (
            "--samples whose videos are all gone",
            list(
                "all-gone",
                json!([list_record(|m| {
                    m.insert("video".into(), json!("gone.mp4"));
                })]),
            ),
            2,
            kw!["gone.mp4", "none of its 1 samples could be answered"],
        ),
        (
            "--samples whose videos are all truncated",
            list(
                "all-truncated",
                json!([list_record(|m| {
                    m.insert("video".into(), json!("truncated.mp4"));
                })]),
            ),
            2,
            kw!["truncated.mp4", "none of its 1 samples could be answered"],
        ),
        (
            "--samples an object",
            list("object", json!({"id": "x"})),
            1,
            kw!["expected a JSON list of samples, found an object"],
        ),
        (
            "--samples absent",
            s.root().join("absent.json"),
            1,
            kw!["absent.json", "No such file or directory"],
        ),
    ] {
        cases.push(case(format!("answer {name}"), code, says, samples(&file)));
    }
    let good_list = list("good", json!([list_record(|_| {})]));
    for (name, a, says) in [
        (
            "--video and --samples",
            args![
                "answer",
                "--model",
                &t,
                "--video",
                &v.good,
                "--samples",
                &good_list,
                "--question",
                "Q?"
            ],
            kw!["cannot be used with"],
        ),
        (
            "neither --video nor --samples",
            args!["answer", "--model", &t, "--question", "Q?"],
            kw!["--video <VIDEO>"],
        ),
        (
            "--video without --question",
            args!["answer", "--model", &t, "--video", &v.good, "--option", "a", "--option", "b"],
            kw!["--question <QUESTION>"],
        ),
        (
            "--start not a number",
            args![
                "answer",
                "--model",
                &t,
                "--video",
                &v.good,
                "--question",
                "Q?",
                "--start",
                "soon"
            ],
            kw!["invalid value 'soon' for '--start <START>'"],
        ),
        (
            "without --model",
            args!["answer", "--video", &v.good, "--question", "Q?"],
            kw!["--model <MODEL>"],
        ),
    ] {
        cases.push(case(format!("answer {name}"), 2, says, a));
    }
    cases.push(case(
        "answer --model absent",
        1,
        kw!["absent-package", "model package directory not found"],
        args![
            "answer",
            "--model",
            s.root().join("absent-package"),
            "--video",
            &v.good,
            "--question",
            "Q?",
            "--option",
            "a",
            "--option",
            "b"
        ],
    ));
    run_table("answer", cases);
}

#[test]
fn answer_generate_and_serve_refuse_bad_flags() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let t = tiny();
    let gen = |extra: Vec<OsString>| {
        with_defaults(
            args!["answer", "--model", &t, "--video", &v.good],
            extra,
            &[("--question", QUESTION), ("--threads", "1")],
        )
    };
    let closed = s.file(
        "closed.yaml",
        "name: closed\nnum_layers: 4\nrules:\n  - {source: system, target: last, blocked: all}\n  \
         - {source: video, target: last, blocked: all}\n  - {source: question, target: last, blocked: all}\n  \
         - {source: template, target: last, blocked: all}\n  - {source: last, target: last, blocked: all}\n",
    );
    let list = v.list("gen-list", to_text(&json!([list_record(|_| {})])));
    let mut cases = Vec::new();
    for (name, code, extra, says) in [
        (
            "--generate 0",
            1,
            args!["--generate", "0"],
            kw!["--generate 0: expected the most tokens to generate, at least 1"],
        ),
        (
            "--generate with options",
            1,
            args!["--generate", "4", "--option", "a", "--option", "b"],
            kw!["--generate answers in the model's own words: give no --option (got 2)"],
        ),
        (
            "--generate past max_positions",
            1,
            args!["--generate", "1000"],
            kw![
                "--generate 1000",
                "max_tokens 1000",
                "(model.yaml max_positions)"
            ],
        ),
        (
            "--temperature negative",
            1,
            args!["--generate", "4", "--temperature=-1"],
            kw!["temperature -1: expected a number from 0 (greedy) to 100"],
        ),
        (
            "--top-p 0",
            1,
            args!["--generate", "4", "--top-p", "0"],
            kw!["top_p 0: expected a number in (0, 1]"],
        ),
        (
            "--top-p above 1",
            1,
            args!["--generate", "4", "--top-p", "1.5"],
            kw!["top_p 1.5"],
        ),
        (
            "--masked-rows unknown",
            1,
            args!["--generate", "4", "--masked-rows", "sideways"],
            kw!["unknown masked-rows policy \"sideways\""],
        ),
        (
            "--pathways absent",
            1,
            args![
                "--generate",
                "4",
                "--pathways",
                s.root().join("absent.yaml")
            ],
            kw!["absent.yaml"],
        ),
        (
            "--pathways leaving last without a key",
            1,
            args!["--generate", "4", "--pathways", &closed],
            kw!["closed.yaml", "without an open key", "zero"],
        ),
        (
            "--temperature without --generate",
            2,
            args!["--temperature", "1", "--option", "a", "--option", "b"],
            kw!["--generate"],
        ),
        (
            "--generate with --samples",
            2,
            args!["--generate", "4", "--samples", &list],
            kw!["cannot be used with"],
        ),
    ] {
        cases.push(case(format!("answer {name}"), code, says, gen(extra)));
    }

    let serve = |extra: Vec<OsString>| {
        let mut a = args![
            "serve",
            "--model",
            &t,
            "--bind",
            "127.0.0.1:0",
            "--threads",
            "1"
        ];
        a.extend(extra);
        a
    };
    // A port that is taken for the whole battery.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let a_file = s.file("root-file.txt", "not a folder");
    for (name, code, a, says) in [
        (
            "--model absent",
            1,
            args![
                "serve",
                "--model",
                s.root().join("absent-package"),
                "--bind",
                "127.0.0.1:0"
            ],
            kw!["absent-package", "model package directory not found"],
        ),
        (
            "--bind not an address",
            2,
            args!["serve", "--model", &t, "--bind", "localhost"],
            kw!["invalid value 'localhost' for '--bind <BIND>'"],
        ),
        (
            "--bind a taken port",
            1,
            args!["serve", "--model", &t, "--bind", &port, "--threads", "1"],
            kw![format!("--bind {port}"), "in use"],
        ),
        (
            "--deadline 0",
            1,
            serve(args!["--deadline", "0"]),
            kw!["--deadline 0: expected a positive number of seconds"],
        ),
        (
            "--queue 0",
            1,
            serve(args!["--queue", "0"]),
            kw!["--queue, --max-body-mb and --max-tokens must be at least 1"],
        ),
        (
            "--video-root absent",
            1,
            serve(args!["--video-root", s.root().join("no-root")]),
            kw!["--video-root", "no-root", "expected an existing folder"],
        ),
        (
            "--video-root a file",
            1,
            serve(args!["--video-root", &a_file]),
            kw!["root-file.txt", "not a folder"],
        ),
        (
            "--pathways for 32 layers",
            1,
            serve(args![
                "--pathways",
                repo("configs/pathways/llava-next-7b-video-ft.yaml")
            ]),
            kw![
                "llava-next-7b-video-ft.yaml",
                "written for 32 layers",
                "--scale"
            ],
        ),
        (
            "--pathways absent",
            1,
            serve(args!["--pathways", s.root().join("absent.yaml")]),
            kw!["absent.yaml"],
        ),
        (
            "--masked-rows unknown",
            1,
            serve(args!["--masked-rows", "sideways"]),
            kw!["unknown masked-rows policy"],
        ),
    ] {
        cases.push(case(format!("serve {name}"), code, says, a));
    }
    run_table("answer --generate and serve", cases);
    drop(taken);
}

// =============================================================================================
// bench

#[test]
fn bench_refuses_bad_modes_and_prompts() {
    let s = Scratch::new();
    let v = Videos::make(&s);
    let t = tiny();
    let p32 = s.file(
        "p32.yaml",
        "num_layers: 32\nrules:\n  - {source: video, target: last, blocked: all}\n",
    );
    let bench = |extra: Vec<OsString>| {
        with_defaults(
            args!["bench", "--model", &t],
            extra,
            &[("--runs", "1"), ("--warmup", "0"), ("--threads", "1")],
        )
    };
    let mut cases = Vec::new();
    for (name, code, extra, says) in [
        (
            "--option without --question",
            1,
            args!["--mode", "full", "--option", "a"],
            kw!["--option needs --question"],
        ),
        (
            "--question with one option",
            1,
            args!["--mode", "full", "--question", "Q?", "--option", "a"],
            kw!["--question needs at least two --option values"],
        ),
        (
            "--runs 0",
            1,
            args!["--mode", "full", "--runs", "0"],
            kw!["--runs must be at least 1"],
        ),
        (
            "--mode unknown",
            1,
            args!["--mode", "fast"],
            kw!["--mode \"fast\": expected full, pathways:CONFIG, dense:CONFIG, exit:K or cached:MODE"],
        ),
        (
            "--mode pathways of an absent file",
            1,
            args!["--mode", "pathways:absent.yaml"],
            kw!["absent.yaml", "No such file or directory"],
        ),
        (
            "--mode dense:random:2",
            1,
            args!["--mode", "dense:random:2"],
            kw!["random blocking ratio 2 is outside [0, 1]"],
        ),
        (
            "--mode pathways:random:x",
            1,
            args!["--mode", "pathways:random:x"],
            kw!["\"random:x\": expected random:RATIO[:SEED]"],
        ),
        (
            "--mode pathways: empty",
            1,
            args!["--mode", "pathways:"],
            kw!["no pathway config named"],
        ),
        (
            "--mode of 32 layers unscaled",
            1,
            args!["--mode", format!("pathways:{}", p32.display())],
            kw!["p32.yaml", "the config is written for 32 layers"],
        ),
        (
            "--video absent",
            1,
            args!["--mode", "full", "--video", s.root().join("absent.mp4")],
            kw!["absent.mp4"],
        ),
        (
            "--video truncated",
            1,
            args!["--mode", "full", "--video", &v.truncated],
            kw!["truncated.mp4", "not a readable video file"],
        ),
        (
            "--answer beyond the options",
            1,
            args!["--mode", "full", "--answer", "7"],
            kw!["answer"],
        ),
        (
            "a question of 100 KB",
            1,
            args![
                "--mode",
                "full",
                "--question",
                "word ".repeat(20_000),
                "--option",
                "a",
                "--option",
                "b"
            ],
            kw!["512"],
        ),
        (
            "--threads 100000",
            1,
            args!["--mode", "full", "--threads", "100000"],
            kw!["--threads 100000 is more than 4 per core"],
        ),
        ("no --mode", 2, vec![], kw!["--mode <MODES>"]),
        (
            "--runs not a number",
            2,
            args!["--mode", "full", "--runs", "x"],
            kw!["invalid value 'x' for '--runs <RUNS>'"],
        ),
    ] {
        cases.push(case(format!("bench {name}"), code, says, bench(extra)));
    }
    run_table("bench", cases);
}

// =============================================================================================
// demo: settings refused before the first evaluation

#[test]
fn demo_refuses_bad_settings_before_running() {
    let s = Scratch::new();
    let locked = s.dir("demo-locked");
    let toy = repo("models/toy-video");
    let t = tiny();
    let demo = |extra: Vec<OsString>| {
        let mut a = args![
            "demo",
            "--model",
            &toy,
            "--no-image-model",
            "--out",
            s.fresh("demo"),
            "--quiet",
            "--threads",
            "1"
        ];
        a.extend(extra);
        a
    };
    let mut cases = Vec::new();
    for (name, code, extra, says) in [
        (
            "--per-task 0",
            1,
            args!["--per-task", "0"],
            kw!["--per-task and --knockout-per-task must be at least 1"],
        ),
        (
            "--knockout-per-task 0",
            1,
            args!["--knockout-per-task", "0"],
            kw!["--per-task and --knockout-per-task must be at least 1"],
        ),
        (
            "--threshold NaN",
            1,
            args!["--threshold", "NaN"],
            kw!["--threshold NaN: expected a finite percentage change"],
        ),
        (
            "--threshold inf",
            1,
            args!["--threshold", "inf"],
            kw!["--threshold inf"],
        ),
        (
            "--window 0",
            1,
            args!["--window", "0"],
            kw!["--window must be at least 1"],
        ),
        (
            "--interval 0",
            1,
            args!["--interval", "0"],
            kw!["--interval must be at least 1"],
        ),
        (
            "--bench-runs 0",
            1,
            args!["--bench-runs", "0"],
            kw!["--bench-runs must be at least 1"],
        ),
        (
            "--device bogus",
            1,
            args!["--device", "npu"],
            kw!["unknown device `npu`"],
        ),
        (
            "--threshold a word",
            2,
            args!["--threshold", "low"],
            kw!["invalid value 'low' for '--threshold <THRESHOLD>'"],
        ),
        (
            "--per-task negative",
            2,
            args!["--per-task", "-5"],
            kw!["-5"],
        ),
    ] {
        cases.push(case(format!("demo {name}"), code, says, demo(extra)));
    }
    cases.push(case(
        "demo --out locked",
        1,
        kw!["demo-locked", "locked"],
        args![
            "demo",
            "--model",
            &toy,
            "--no-image-model",
            "--out",
            &locked,
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "demo --model absent",
        1,
        kw!["absent-package", "model package directory not found"],
        args![
            "demo",
            "--model",
            s.root().join("absent-package"),
            "--no-image-model",
            "--out",
            s.fresh("demo"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "demo --image-model absent",
        1,
        kw!["absent-image", "model package directory not found"],
        args![
            "demo",
            "--model",
            &toy,
            "--image-model",
            s.root().join("absent-image"),
            "--out",
            s.fresh("demo"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "demo --image-model of other frames",
        1,
        kw![
            "frames per video, but",
            "the demo compares them on the same inputs"
        ],
        args![
            "demo",
            "--model",
            &toy,
            "--image-model",
            &t,
            "--out",
            s.fresh("demo"),
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    cases.push(case(
        "demo --threads 100000",
        1,
        kw!["--threads 100000 is more than 4 per core"],
        args![
            "demo",
            "--model",
            &toy,
            "--no-image-model",
            "--out",
            s.fresh("demo"),
            "--quiet",
            "--threads",
            "100000"
        ],
    ));
    let file = s.file("demo-out-file", "x");
    cases.push(case(
        "demo --out is a file",
        1,
        kw!["demo-out-file"],
        args![
            "demo",
            "--model",
            &toy,
            "--no-image-model",
            "--out",
            &file,
            "--quiet",
            "--threads",
            "1"
        ],
    ));
    let _lock = vidflow::report::FolderLock::acquire(&locked).expect("hold the lock");
    run_table("demo", cases);
}
