//! `vidflow slurm eval|knockout|lens`: one Slurm array job with a task per shard, then a merge job.
//!
//! Everything lives under the job folder `DIR`:
//!
//! - `DIR/shards/K/`: shard K's run folder (`--shard K/N --out DIR/shards/K`);
//! - `DIR/merged/`: the merged run (`vidflow merge`), equal to a single-process run's;
//! - `DIR/slurm/job.json`: the command; a resubmission with another command is refused;
//! - `DIR/slurm/shards.sbatch`, `merge.sbatch`: the scripts, as submitted last;
//! - `DIR/slurm/logs/shard-K-JOB.out`, `merge-JOB.out`: per-task logs;
//! - `DIR/slurm/submissions.jsonl`: one line per submission (array and merge job ids, shards).
//!
//! The merge job depends on the array with `afterany`: it runs once every task has ended, however
//! it ended, and `merge` itself refuses an unfinished shard. Running the same command again is the
//! resubmission: it refuses while an earlier job of the folder is still queued or running, then
//! submits only the shards that have not finished (each resumes from its records) and a new merge.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::SUMMARY_FILE;
use crate::report::{lock::utc_now, FINISHED_FILE};

/// Which command the array runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlurmCommand {
    Eval,
    Knockout,
    Lens,
}

impl SlurmCommand {
    pub fn parse(s: &str) -> Result<SlurmCommand> {
        match s {
            "eval" => Ok(SlurmCommand::Eval),
            "knockout" => Ok(SlurmCommand::Knockout),
            "lens" => Ok(SlurmCommand::Lens),
            _ => Err(Error::Input(format!(
                "vidflow slurm {s}: expected eval, knockout or lens"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SlurmCommand::Eval => "eval",
            SlurmCommand::Knockout => "knockout",
            SlurmCommand::Lens => "lens",
        }
    }

    /// The file a finished shard of this command leaves.
    fn finished_marker(self) -> &'static str {
        match self {
            SlurmCommand::Eval => SUMMARY_FILE,
            SlurmCommand::Knockout | SlurmCommand::Lens => FINISHED_FILE,
        }
    }
}

/// The job: what runs in each shard, and what each task gets from Slurm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmJob {
    pub command: SlurmCommand,
    /// The command's arguments, without `--out` and `--shard` (vidflow adds them per shard).
    pub args: Vec<String>,
    pub shards: usize,
    pub cpus_per_task: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Further `#SBATCH` lines, e.g. `--qos=short`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
}

/// One line of `submissions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub submitted: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job: Option<String>,
    pub merge_job: String,
    /// The shards (K) this submission runs.
    pub shards: Vec<usize>,
}

/// What [`submit`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Every shard and the merge had finished: nothing was submitted.
    NothingToDo,
    /// Scripts written, not submitted (`--dry-run`): the sbatch command lines.
    DryRun(Vec<String>),
    Jobs(Submission),
}

pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Result<Layout> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Layout { dir })
    }
    pub fn shard(&self, k: usize) -> PathBuf {
        self.dir.join("shards").join(k.to_string())
    }
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    pub fn slurm(&self) -> PathBuf {
        self.dir.join("slurm")
    }
    pub fn logs(&self) -> PathBuf {
        self.slurm().join("logs")
    }
}

/// Refuses arguments that the job sets itself.
fn check_job(job: &SlurmJob) -> Result<()> {
    if job.shards == 0 {
        return Err(Error::Input("--shards must be at least 1".into()));
    }
    if job.cpus_per_task == 0 {
        return Err(Error::Input("--cpus-per-task must be at least 1".into()));
    }
    for a in &job.args {
        let flag = a.split('=').next().unwrap_or(a);
        if ["--out", "--shard"].contains(&flag) {
            return Err(Error::Input(format!(
                "the command's arguments may not contain {flag}: vidflow slurm gives each shard \
                 --shard K/N and --out DIR/shards/K"
            )));
        }
    }
    Ok(())
}

/// Single-quotes a word for bash.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn header(job: &SlurmJob, name: &str, output: &Path) -> String {
    let mut h = format!(
        "#!/bin/bash\n#SBATCH --job-name={}\n#SBATCH --output={}\n",
        quote(name),
        quote(&output.display().to_string())
    );
    let mut line = |s: String| {
        h.push_str("#SBATCH ");
        h.push_str(&s);
        h.push('\n');
    };
    if let Some(p) = &job.partition {
        line(format!("--partition={}", quote(p)));
    }
    if let Some(a) = &job.account {
        line(format!("--account={}", quote(a)));
    }
    if let Some(t) = &job.time {
        line(format!("--time={}", quote(t)));
    }
    for a in &job.sbatch_args {
        line(quote(a));
    }
    h
}

/// The array script: task K runs shard K/N into `DIR/shards/K`.
pub fn shards_script(job: &SlurmJob, layout: &Layout, shards: &[usize], exe: &Path) -> String {
    let ks: Vec<String> = shards.iter().map(usize::to_string).collect();
    let mut s = header(
        job,
        &format!("vidflow-{}", job.command.name()),
        &layout.logs().join("shard-%a-%A.out"),
    );
    s.push_str(&format!("#SBATCH --array={}\n", ks.join(",")));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", job.cpus_per_task));
    if let Some(g) = job.gpus_per_task {
        s.push_str(&format!("#SBATCH --gpus-per-task={g}\n"));
    }
    if let Some(m) = &job.mem {
        s.push_str(&format!("#SBATCH --mem={}\n", quote(m)));
    }
    let threads = if job
        .args
        .iter()
        .any(|a| a == "--threads" || a.starts_with("--threads="))
    {
        String::new()
    } else {
        " --threads \"${SLURM_CPUS_PER_TASK:-1}\"".into()
    };
    let args: Vec<String> = job.args.iter().map(|a| quote(a)).collect();
    s.push_str(&format!(
        "set -euo pipefail\nK=\"$SLURM_ARRAY_TASK_ID\"\necho \"vidflow {cmd} shard $K/{n} on $(hostname), job $SLURM_ARRAY_JOB_ID\"\n\
         exec {exe} {cmd} {args} --shard \"$K/{n}\" --out {shards}/\"$K\" --quiet{threads}\n",
        cmd = job.command.name(),
        n = job.shards,
        exe = quote(&exe.display().to_string()),
        args = args.join(" "),
        shards = quote(&layout.dir.join("shards").display().to_string()),
    ));
    s
}

/// The merge script: every shard's folder into `DIR/merged`.
pub fn merge_script(job: &SlurmJob, layout: &Layout, exe: &Path) -> String {
    let mut s = header(
        job,
        &format!("vidflow-{}-merge", job.command.name()),
        &layout.logs().join("merge-%j.out"),
    );
    s.push_str("#SBATCH --cpus-per-task=1\n");
    let dirs: Vec<String> = (1..=job.shards)
        .map(|k| quote(&layout.shard(k).display().to_string()))
        .collect();
    s.push_str(&format!(
        "set -euo pipefail\nexec {} merge --out {} {}\n",
        quote(&exe.display().to_string()),
        quote(&layout.merged().display().to_string()),
        dirs.join(" ")
    ));
    s
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| {
        Error::Input(format!(
            "cannot run {what}: {e} (is Slurm installed, and SLURM_CONF set where needed?)"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Submits a script; returns its job id (`sbatch --parsable` prints `ID` or `ID;CLUSTER`).
fn sbatch(script: &Path, extra: &[String]) -> Result<String> {
    let out = run_tool(
        Command::new("sbatch")
            .arg("--parsable")
            .args(extra)
            .arg(script),
        "sbatch",
    )?;
    Ok(out.split(';').next().unwrap_or_default().trim().to_string())
}

/// The ids among `ids` that Slurm still has queued or running.
pub fn active_jobs(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = run_tool(
        Command::new("squeue")
            .args(["-h", "-o", "%i %T", "-j"])
            .arg(ids.join(",")),
        "squeue",
    )
    .or_else(|e| {
        // squeue fails for ids it no longer knows (finished long ago): none is active then.
        if e.to_string().contains("Invalid job id") {
            Ok(String::new())
        } else {
            Err(e)
        }
    })?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

fn read_submissions(path: &Path) -> Result<Vec<Submission>> {
    Ok(crate::report::read_jsonl::<Submission>(path)?.records)
}

/// The shards of the job that have not finished.
pub fn unfinished(job: &SlurmJob, layout: &Layout) -> Vec<usize> {
    (1..=job.shards)
        .filter(|&k| {
            !layout
                .shard(k)
                .join(job.command.finished_marker())
                .is_file()
        })
        .collect()
}

/// Writes the job's scripts and submits the shards that have not finished, then the merge.
pub fn submit(job: &SlurmJob, dir: &Path, dry_run: bool) -> Result<Submitted> {
    check_job(job)?;
    let layout = Layout::new(dir)?;
    let _lock = crate::report::FolderLock::acquire(&layout.slurm())?;
    std::fs::create_dir_all(layout.logs()).map_err(|e| Error::io(&layout.logs(), e))?;
    let job_path = layout.slurm().join("job.json");
    match std::fs::read_to_string(&job_path) {
        Ok(text) => {
            let old: SlurmJob = serde_json::from_str(&text).map_err(|e| Error::Data {
                path: job_path.clone(),
                msg: format!("not a vidflow slurm job: {e}"),
            })?;
            if old != *job {
                return Err(Error::Data {
                    path: job_path,
                    msg: "the folder holds another job (other command, arguments or resources); \
                          resubmit the same command, or use another --out"
                        .into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(job).expect("serialises") + "\n";
            std::fs::write(&job_path, text).map_err(|e| Error::io(&job_path, e))?;
        }
        Err(e) => return Err(Error::io(&job_path, e)),
    }
    let subs_path = layout.slurm().join("submissions.jsonl");
    let earlier = read_submissions(&subs_path)?;
    if !dry_run {
        let ids: Vec<String> = earlier
            .iter()
            .flat_map(|s| s.array_job.iter().chain([&s.merge_job]))
            .cloned()
            .collect();
        let active = active_jobs(&ids)?;
        if !active.is_empty() {
            return Err(Error::Input(format!(
                "jobs {} of {} are still queued or running; wait for them (squeue) or cancel them \
                 (scancel) before resubmitting",
                active.join(", "),
                layout.dir.display()
            )));
        }
    }
    let todo = unfinished(job, &layout);
    let merged_done = layout
        .merged()
        .join(job.command.finished_marker())
        .is_file();
    if todo.is_empty() && merged_done {
        return Ok(Submitted::NothingToDo);
    }
    let exe = std::env::current_exe().map_err(|e| Error::Input(format!("own path: {e}")))?;
    let shards_path = layout.slurm().join("shards.sbatch");
    let merge_path = layout.slurm().join("merge.sbatch");
    let write = |p: &Path, text: String| std::fs::write(p, text).map_err(|e| Error::io(p, e));
    write(&merge_path, merge_script(job, &layout, &exe))?;
    if !todo.is_empty() {
        write(&shards_path, shards_script(job, &layout, &todo, &exe))?;
    }
    if dry_run {
        let mut cmds = Vec::new();
        if !todo.is_empty() {
            cmds.push(format!("sbatch --parsable {}", shards_path.display()));
        }
        cmds.push(format!(
            "sbatch --parsable{} {}",
            if todo.is_empty() {
                ""
            } else {
                " --dependency=afterany:ARRAY_JOB"
            },
            merge_path.display()
        ));
        return Ok(Submitted::DryRun(cmds));
    }
    let array_job = if todo.is_empty() {
        None
    } else {
        Some(sbatch(&shards_path, &[])?)
    };
    let deps: Vec<String> = array_job
        .iter()
        .map(|id| format!("--dependency=afterany:{id}"))
        .collect();
    let merge_job = sbatch(&merge_path, &deps)?;
    let sub = Submission {
        submitted: utc_now(),
        array_job,
        merge_job,
        shards: todo,
    };
    let mut w = crate::report::JsonlWriter::append(&subs_path)?;
    w.write(&sub)?;
    w.flush()?;
    Ok(Submitted::Jobs(sub))
}

/// Waits until none of the submission's jobs is queued or running (polling `squeue`), then says
/// whether the merged run finished.
pub fn wait(dir: &Path, job: &SlurmJob, sub: &Submission, poll: std::time::Duration) -> Result<()> {
    let layout = Layout::new(dir)?;
    let ids: Vec<String> = sub
        .array_job
        .iter()
        .chain([&sub.merge_job])
        .cloned()
        .collect();
    while !active_jobs(&ids)?.is_empty() {
        std::thread::sleep(poll);
    }
    if layout
        .merged()
        .join(job.command.finished_marker())
        .is_file()
    {
        return Ok(());
    }
    let left = unfinished(job, &layout);
    Err(Error::Input(format!(
        "the jobs ended but the merged run is not there; unfinished shards: {:?}; logs in {} \
         (run the same command again to resubmit what is left)",
        left,
        layout.logs().display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SlurmJob {
        SlurmJob {
            command: SlurmCommand::Eval,
            args: vec![
                "--model".into(),
                "pkg dir".into(),
                "--data".into(),
                "tvbench:d".into(),
            ],
            shards: 3,
            cpus_per_task: 2,
            gpus_per_task: Some(1),
            mem: None,
            time: Some("01:00:00".into()),
            partition: None,
            account: None,
            sbatch_args: vec!["--qos=short".into()],
        }
    }

    #[test]
    fn scripts_run_each_shard_into_its_folder_and_merge_them_all() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path()).unwrap();
        let exe = Path::new("/opt/vidflow");
        let s = shards_script(&job(), &layout, &[1, 3], exe);
        assert!(s.contains("#SBATCH --array=1,3\n"), "{s}");
        assert!(
            s.contains("#SBATCH --cpus-per-task=2\n#SBATCH --gpus-per-task=1\n"),
            "{s}"
        );
        assert!(
            s.contains("#SBATCH --time=01:00:00\n#SBATCH --qos=short\n"),
            "{s}"
        );
        assert!(
            s.contains("eval --model 'pkg dir' --data tvbench:d --shard \"$K/3\""),
            "{s}"
        );
        assert!(s.contains("--threads \"${SLURM_CPUS_PER_TASK:-1}\""), "{s}");
        let m = merge_script(&job(), &layout, exe);
        let shards = layout.dir.join("shards");
        assert!(
            m.contains(&format!(
                "merge --out {} {}/1 {}/2 {}/3",
                layout.merged().display(),
                shards.display(),
                shards.display(),
                shards.display()
            )),
            "{m}"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn arguments_the_job_sets_are_refused() {
        let mut j = job();
        j.args.push("--out=x".into());
        assert!(check_job(&j).unwrap_err().to_string().contains("--out"));
        let mut j = job();
        j.shards = 0;
        assert!(check_job(&j).is_err());
    }
}
