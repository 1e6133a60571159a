//! Attention knockout analysis (design.md §3): block the attention edges of a flow ("A ↛ B":
//! queries in B cannot read keys in A) in a window of layers around each sweep layer, and measure
//! how the probability of the baseline's answer and of the ground truth move.
//!
//! - [`flows`]: named targets of the published reference and custom YAML flows;
//! - [`window`]: the four window styles and the sweep's layer range;
//! - [`resolve`]: a flow as positions of one sample, its first changed row and edge counts;
//! - [`baseline`]: the cached baseline prefill and the last-position readout;
//! - [`sweep`]: knockouts run optimised (cached prefix, batched suffixes) or naive;
//! - [`sample_sweep`]: one sample's sweep into records; [`run`]: a resumable run over a data set;
//! - [`record`]: the JSONL records; [`dump`]: exact inputs for the PyTorch reference.

pub mod baseline;
pub mod dump;
pub mod flows;
pub mod merge;
pub mod record;
pub mod resolve;
pub mod run;
pub mod sample_sweep;
pub mod sweep;
pub mod window;

pub use baseline::{read_logits, run_baseline, Baseline, Readout};
pub use flows::{
    check_group_name, collect_flows, load_flows_file, parse_flows_yaml, parse_targets, Block, Flow,
    FlowsFile, NamedTarget, CUSTOM_TARGET,
};
pub use merge::merge_knockout_runs;
pub use record::{pct_change, KnockoutRecord, SampleRecord, SampleStatus};
pub use resolve::ResolvedFlow;
pub use run::{
    read_manifest, run_knockout, RunManifest, RunSettings, RunTotals, KNOCKOUTS_FILE, RUN_FILE,
    SAMPLES_FILE,
};
pub use sample_sweep::{sweep_sample, SampleOutcome, SweepSettings};
pub use sweep::{plan_knockouts, run_knockouts, Execution, Knockout, SweepCost, SweepOutput};
pub use window::{window_layers, LayerRange, WindowStyle};
