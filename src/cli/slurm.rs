//! `vidflow slurm eval|knockout|lens`: the command as a Slurm array job, one task per shard, and a
//! merge job after it (see `vidflow::cluster::slurm`).

use std::path::PathBuf;

use vidflow::cluster::slurm::{self, SlurmCommand, SlurmJob, Submitted};

#[derive(clap::Args)]
pub struct Args {
    /// eval, knockout or lens.
    command: String,
    /// Number of shards (array tasks).
    #[arg(long)]
    shards: usize,
    /// Job folder: shards/K, merged/, slurm/ (scripts, logs, submissions).
    #[arg(long)]
    out: PathBuf,
    /// CPUs per task (also the task's --threads, unless the arguments set it).
    #[arg(long, default_value_t = 1)]
    cpus_per_task: usize,
    /// GPUs per task (add `--device cuda` to the arguments).
    #[arg(long)]
    gpus_per_task: Option<usize>,
    /// Memory per task (Slurm syntax, e.g. 16G).
    #[arg(long)]
    mem: Option<String>,
    /// Time limit per task (Slurm syntax, e.g. 02:00:00).
    #[arg(long)]
    time: Option<String>,
    #[arg(long)]
    partition: Option<String>,
    #[arg(long)]
    account: Option<String>,
    /// A further #SBATCH option, e.g. --sbatch-arg=--qos=short; repeat for several.
    #[arg(long = "sbatch-arg")]
    sbatch_args: Vec<String>,
    /// Write the scripts and print the sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
    /// Wait until the jobs have ended and say whether the merged run is there.
    #[arg(long)]
    wait: bool,
    /// The command's own arguments, after `--` (without --out and --shard).
    #[arg(last = true, required = true)]
    args: Vec<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let job = SlurmJob {
        command: SlurmCommand::parse(&a.command)?,
        args: a.args,
        shards: a.shards,
        cpus_per_task: a.cpus_per_task,
        gpus_per_task: a.gpus_per_task,
        mem: a.mem,
        time: a.time,
        partition: a.partition,
        account: a.account,
        sbatch_args: a.sbatch_args,
    };
    match slurm::submit(&job, &a.out, a.dry_run)? {
        Submitted::NothingToDo => {
            println!("every shard and the merge have finished: nothing to submit");
        }
        Submitted::DryRun(cmds) => {
            println!(
                "scripts written to {}; to submit:",
                a.out.join("slurm").display()
            );
            for c in cmds {
                println!("  {c}");
            }
        }
        Submitted::Jobs(sub) => {
            match &sub.array_job {
                Some(id) => println!("submitted shards {:?} as array job {id}", sub.shards),
                None => println!("every shard has finished"),
            }
            println!("submitted the merge as job {}", sub.merge_job);
            println!("logs     {}", a.out.join("slurm/logs").display());
            println!("merged   {}", a.out.join("merged").display());
            if a.wait {
                slurm::wait(&a.out, &job, &sub, std::time::Duration::from_secs(2))?;
                println!("merged run finished in {}", a.out.join("merged").display());
            }
        }
    }
    Ok(())
}
