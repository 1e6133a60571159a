//! Execution: the graphs of a package run in sequence — vision, embed, splice, rope, the decoder
//! layers in extend form with a mask per layer, and a head projection — on tensors that stay in
//! the provider's memory (`runtime::Tensor`); only the logits that are read come back.

mod forward;
mod inputs;
mod layer;
mod masks;
mod positions;
mod prefix;
mod pruned;

pub use forward::{forward, forward_until, ForwardOutput, ForwardSpec, Keep, LayerKv};
pub use inputs::{embed_tokens, encode_video, project, project_host, rotary, splice_video, Rotary};
pub use layer::{run_layer, LayerMask, LayerOutput};
pub(crate) use masks::schedule_keys;
pub use masks::Masks;
pub use positions::Positions;
pub use prefix::{causal_after, Prefix, PrefixCache, PrefixInputs, PrefixMasks, PrefixStats};
pub(crate) use pruned::restricted_keys;
pub use pruned::{
    restricted_mask, run_dense, run_dense_from, run_plan, run_plan_after, PlanOutput,
};
