//! Execution plans (design.md §4): a mask schedule compiled by liveness into the rows each layer
//! must compute, with FLOP and edge accounting against the full dense run, and shape-only model
//! descriptions for models that have no package here. `crate::engine::run_plan` executes a plan.

mod compile;
mod cost;
mod report;
mod shape;

pub use compile::{LayerPlan, Plan};
pub use cost::{FlopModel, LayerFlops};
pub use report::{LayerReport, PlanReport};
pub use shape::{ModelShape, VideoGrid};
