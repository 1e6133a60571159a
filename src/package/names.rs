//! The graph I/O contract of a model package: every input and output name in one place.
//!
//! The Python exporter (`export/vidflow_export/contract.py`) writes exactly these names; the
//! validator checks them before any session runs, so a mismatch fails at load with the file named.

/// Vision graph: `pixel_values [F,3,H,W]` -> `video_embeds [F*h*w, D]`.
pub const VISION_IN_PIXELS: &str = "pixel_values";
pub const VISION_OUT_EMBEDS: &str = "video_embeds";

/// Embedding graph: `input_ids [B,T]` (int64) -> `embeds [B,T,D]`.
pub const EMBED_IN_IDS: &str = "input_ids";
pub const EMBED_OUT: &str = "embeds";

/// Rotary graph: `position_ids [B,T]` (int64) -> `cos, sin [B,T,R]`.
pub const ROPE_IN_POSITIONS: &str = "position_ids";
pub const ROPE_OUT_COS: &str = "cos";
pub const ROPE_OUT_SIN: &str = "sin";

/// Decoder layer graph, extend form.
pub const LAYER_IN_HIDDEN: &str = "hidden";
pub const LAYER_IN_COS: &str = "cos";
pub const LAYER_IN_SIN: &str = "sin";
pub const LAYER_IN_PAST_KEY: &str = "past_key";
pub const LAYER_IN_PAST_VALUE: &str = "past_value";
pub const LAYER_IN_MASK: &str = "mask";
pub const LAYER_OUT_HIDDEN: &str = "hidden_out";
pub const LAYER_OUT_KEY: &str = "key";
pub const LAYER_OUT_VALUE: &str = "value";
/// Only in the attention-weights variant: `[B,H,Q,P+Q]`.
pub const LAYER_OUT_ATTN: &str = "attn_weights";

/// Head graphs: `hidden [B,N,D]` -> `logits [B,N,V]`.
pub const HEAD_IN_HIDDEN: &str = "hidden";
pub const HEAD_OUT_LOGITS: &str = "logits";

/// Inputs of a layer graph, in the order the engine feeds them.
pub const LAYER_INPUTS: [&str; 6] = [
    LAYER_IN_HIDDEN,
    LAYER_IN_COS,
    LAYER_IN_SIN,
    LAYER_IN_PAST_KEY,
    LAYER_IN_PAST_VALUE,
    LAYER_IN_MASK,
];
/// Outputs of a plain layer graph.
pub const LAYER_OUTPUTS: [&str; 3] = [LAYER_OUT_HIDDEN, LAYER_OUT_KEY, LAYER_OUT_VALUE];
