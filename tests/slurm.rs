//! `vidflow slurm` on a real one-node Slurm cluster started here (scripts/slurm-local.sh: munged,
//! slurmctld and slurmd in the foreground, a generated slurm.conf): a 3-shard eval and a 3-shard
//! knockout of the toy model submitted as array jobs, merged, and checked equal to single-process
//! runs; then one array task cancelled mid-run (`scancel`), the job resubmitted, and the merged run
//! checked to have lost and repeated nothing.
//!
//! Skipped (loudly) only where Slurm is not installed or the test is not root; `make setup`
//! installs Debian's slurm-wlm and munge, so `make test` runs it.
// Decodes or encodes videos with FFmpeg: only in builds with the `video` feature (the default).
#![cfg(feature = "video")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::repo_path;
use serde_json::Value;

struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    /// Starts the cluster, or says loudly why it cannot.
    fn start(dir: &Path) -> Option<Cluster> {
        let missing: Vec<&str> = ["sbatch", "slurmctld", "slurmd", "munged"]
            .into_iter()
            .filter(|t| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .collect();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        if !missing.is_empty() || !root {
            eprintln!(
                "\n!!! SKIPPED tests/slurm.rs: {} — `make setup` installs slurm-wlm and munge (as \
                 root); without them the Slurm path is NOT tested !!!\n",
                if root {
                    format!("not installed: {}", missing.join(", "))
                } else {
                    "not running as root".into()
                }
            );
            return None;
        }
        let out = Command::new("bash")
            .arg(repo_path("scripts/slurm-local.sh"))
            .arg("start")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the local cluster did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        })
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_path("scripts/slurm-local.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn vidflow_cmd(cluster: &Cluster) -> Command {
    cluster.cmd(env!("CARGO_BIN_EXE_vidflow"))
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Records keyed by their identity, with a count so that a repeated record shows.
fn keyed(recs: &[Value], key: &dyn Fn(&Value) -> String) -> BTreeMap<String, (usize, Value)> {
    let mut m: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for r in recs {
        m.entry(key(r)).or_insert((0, r.clone())).0 += 1;
    }
    m
}

fn knockout_key(r: &Value) -> String {
    format!("{} {} {}", r["sample_id"], r["flow"], r["layer"])
}

const KNOCKOUT_ARGS: [&str; 6] = [
    "--targets",
    "cross-frame",
    "--all-samples",
    "--window",
    "1",
    "--threads=1",
];

#[test]
fn array_jobs_merge_into_the_single_process_runs_and_a_cancelled_task_is_resumed() {
    let tmp = tempfile::Builder::new()
        .prefix("vidflow-slurm")
        .tempdir()
        .unwrap();
    let Some(cluster) = Cluster::start(&tmp.path().join("cluster")) else {
        return;
    };
    let data = tmp.path().join("data");
    let mut synth = vidflow_cmd(&cluster);
    synth.args(["synth", "--per-task", "3", "--out"]).arg(&data);
    ok(synth);
    let spec = format!("tvbench:{}", data.display());
    let model = repo_path("models/toy-video");
    let base = |cmd: &str| -> Vec<String> {
        vec![
            cmd.into(),
            "--model".into(),
            model.display().to_string(),
            "--data".into(),
            spec.clone(),
        ]
    };
    let submit = |cmd: &str, out: &Path, extra: &[&str], wait: bool| {
        let mut c = vidflow_cmd(&cluster);
        c.args(["slurm", cmd, "--shards", "3", "--out"]).arg(out);
        if wait {
            c.arg("--wait");
        }
        c.arg("--").args(&base(cmd)[1..]).args(extra);
        c
    };
    let slurm = |cmd: &str, out: &Path, extra: &[&str]| submit(cmd, out, extra, true);

    // Evaluation: 3 shards, merged, equal to one process's run.
    let single = tmp.path().join("single-eval");
    let mut c = vidflow_cmd(&cluster);
    c.args(base("eval"))
        .args(["--quiet", "--threads", "1", "--out"])
        .arg(&single);
    ok(c);
    let job = tmp.path().join("job-eval");
    let out = ok(slurm("eval", &job, &[]));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let id = |r: &Value| r["id"].as_str().unwrap().to_string();
    let merged = keyed(&jsonl(&job.join("merged/records.jsonl")), &id);
    assert_eq!(merged.len(), 15);
    assert!(merged.values().all(|(n, _)| *n == 1));
    assert_eq!(merged, keyed(&jsonl(&single.join("records.jsonl")), &id));
    let summary = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(
        summary(&job.join("merged"))["overall"],
        summary(&single)["overall"]
    );
    for k in 1..=3 {
        let log = std::fs::read_dir(job.join("slurm/logs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("shard-{k}-"))
            })
            .expect("a log per task");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains(&format!("vidflow eval shard {k}/3")),
            "{text}"
        );
    }
    // The same command again: nothing left to do.
    let again = ok(slurm("eval", &job, &[]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to submit"));

    // Knockout: 3 shards, merged, equal to one process's run (records and summary CSV).
    let single_k = tmp.path().join("single-knockout");
    let mut c = vidflow_cmd(&cluster);
    c.args(base("knockout"))
        .args(KNOCKOUT_ARGS)
        .args(["--quiet", "--out"])
        .arg(&single_k);
    ok(c);
    let job_k = tmp.path().join("job-knockout");
    ok(slurm("knockout", &job_k, &KNOCKOUT_ARGS));
    let mk = keyed(&jsonl(&job_k.join("merged/knockouts.jsonl")), &knockout_key);
    assert!(mk.values().all(|(n, _)| *n == 1));
    assert_eq!(
        mk,
        keyed(&jsonl(&single_k.join("knockouts.jsonl")), &knockout_key)
    );
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(job_k.join("merged/summary.csv")),
        read(single_k.join("summary.csv"))
    );

    // A task cancelled mid-run: the merge refuses the unfinished shard; the resubmission runs only
    // that shard, which resumes from its records; nothing is lost or repeated.
    let slow = [
        "--targets",
        "cross-frame,vql-to-ql",
        "--all-samples",
        "--window",
        "1",
        "--threads=1",
        "--naive",
    ];
    let single_s = tmp.path().join("single-slow");
    let mut c = vidflow_cmd(&cluster);
    c.args(base("knockout"))
        .args(slow)
        .args(["--quiet", "--out"])
        .arg(&single_s);
    ok(c);
    let job_s = tmp.path().join("job-slow");
    let out = ok(submit("knockout", &job_s, &slow, false));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let array = text
        .split("as array job ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no array job id in: {text}"))
        .to_string();
    let samples2 = job_s.join("shards/2/samples.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&samples2).map_or(0, |s| s.lines().count()) < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "shard 2 never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cancel = cluster.cmd("scancel");
    cancel.arg(format!("{array}_2"));
    ok(cancel);
    // Wait for every job of the folder to end (the merge runs after the array, and fails).
    let t0 = Instant::now();
    loop {
        let q = ok({
            let mut c = cluster.cmd("squeue");
            c.args(["-h", "-o", "%i"]);
            c
        });
        if q.stdout.is_empty() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "jobs did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let done_before = std::fs::read_to_string(&samples2).unwrap().lines().count();
    assert!(
        done_before < 5,
        "shard 2 was cancelled before its last sample ({done_before} done)"
    );
    assert!(!job_s.join("merged/finished.json").exists());
    let logs: String = std::fs::read_dir(job_s.join("slurm/logs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("merge-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.contains("shard 2/3 is unfinished"),
        "merge log: {logs}"
    );

    let out = ok(slurm("knockout", &job_s, &slow));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("submitted shards [2]"), "{text}");
    let merged = keyed(&jsonl(&job_s.join("merged/knockouts.jsonl")), &knockout_key);
    let repeated: Vec<&String> = merged
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(repeated.is_empty(), "repeated records: {repeated:?}");
    assert_eq!(
        merged,
        keyed(&jsonl(&single_s.join("knockouts.jsonl")), &knockout_key)
    );
    let sample_id = |r: &Value| r["sample_id"].as_str().unwrap().to_string();
    assert_eq!(
        keyed(&jsonl(&job_s.join("merged/samples.jsonl")), &sample_id),
        keyed(&jsonl(&single_s.join("samples.jsonl")), &sample_id)
    );
    let subs = jsonl(&job_s.join("slurm/submissions.jsonl"));
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1]["shards"], serde_json::json!([2]));
    println!(
        "slurm: eval and knockout of 15 samples in 3 shards equal the single-process runs; shard 2 \
         cancelled after {done_before} of 5 samples, resubmitted alone, merged without loss or repeat"
    );
}
