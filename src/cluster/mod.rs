//! Runs split over a cluster (docs/cluster.md): every kind of sharded run joined by one `merge`,
//! and Slurm array jobs that run the shards and then the merge. The scheduler is the cluster's own
//! (Slurm, or a Kubernetes Indexed Job); vidflow only writes and submits its jobs.

pub mod merge;
pub mod slurm;

pub use merge::{merge, MergeOutcome, RunKind};
