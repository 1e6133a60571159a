//! Pathway configs and mask schedules (design.md §4).
//!
//! A [`PathwayConfig`] (YAML) names, per (source group -> target group) rule, the layers where that
//! edge is blocked; [`RandomBlocking`] is its control. Either resolves against the token groups of
//! one sequence ([`SequenceGroups`], from a prompt layout or a shape-only layout) into a
//! [`MaskSchedule`]: one [`crate::mask::EdgeMask`] per layer, which `crate::plan` compiles into
//! an execution plan.

mod config;
mod groups;
mod layers;
mod random;
mod schedule;

pub use config::{PathwayConfig, Pathways, Rule, CROSS_FRAME};
pub use groups::{group_name_list, is_group_name, SequenceGroups, GROUP_NAMES};
pub use layers::{format_layer_set, scale_layer_set};
pub use random::RandomBlocking;
pub use schedule::MaskSchedule;
