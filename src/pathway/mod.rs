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

pub use config::{PathwayConfig, Pathways, Rule, CROSS_FRAME, MAX_NUM_LAYERS};
pub use groups::{
    group_name_list, is_group_name, SequenceGroups, GROUP_NAMES, MAX_LAYOUT_POSITIONS,
};
pub use layers::{format_layer_set, scale_layer_set};
pub use random::RandomBlocking;
pub use schedule::MaskSchedule;
