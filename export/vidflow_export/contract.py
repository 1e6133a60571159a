"""The model-package contract (docs/package.md): file names, graph I/O names, axes.

Mirrors `src/package/names.rs`; change both together.
"""

import numpy as np

# Manifest format version read by the runtime (src/package/manifest.rs FORMAT_VERSION).
FORMAT_VERSION = 1
# Lowest ONNX opset the runtime accepts; every graph is exported with this one.
OPSET = 17

# Vision graph: pixel_values [F,3,H,W] -> video_embeds [F*h*w, D].
VISION_IN_PIXELS = "pixel_values"
VISION_OUT_EMBEDS = "video_embeds"

# Embedding graph: input_ids [B,T] (int64) -> embeds [B,T,D].
EMBED_IN_IDS = "input_ids"
EMBED_OUT = "embeds"

# Rotary graph: position_ids [B,T] (int64) -> cos, sin [B,T,R].
ROPE_IN_POSITIONS = "position_ids"
ROPE_OUT_COS = "cos"
ROPE_OUT_SIN = "sin"

# Decoder layer graph, extend form.
LAYER_IN_HIDDEN = "hidden"
LAYER_IN_COS = "cos"
LAYER_IN_SIN = "sin"
LAYER_IN_PAST_KEY = "past_key"
LAYER_IN_PAST_VALUE = "past_value"
LAYER_IN_MASK = "mask"
LAYER_OUT_HIDDEN = "hidden_out"
LAYER_OUT_KEY = "key"
LAYER_OUT_VALUE = "value"
# Only in the attention-weights variant: [B,H,Q,P+Q].
LAYER_OUT_ATTN = "attn_weights"

# Head graphs: hidden [B,N,D] -> logits [B,N,V].
HEAD_IN_HIDDEN = "hidden"
HEAD_OUT_LOGITS = "logits"

# Inputs of a layer graph, in the order the engine feeds them.
LAYER_INPUTS = (
    LAYER_IN_HIDDEN,
    LAYER_IN_COS,
    LAYER_IN_SIN,
    LAYER_IN_PAST_KEY,
    LAYER_IN_PAST_VALUE,
    LAYER_IN_MASK,
)
LAYER_OUTPUTS = (LAYER_OUT_HIDDEN, LAYER_OUT_KEY, LAYER_OUT_VALUE)
LAYER_ATTN_OUTPUTS = LAYER_OUTPUTS + (LAYER_OUT_ATTN,)

# Dynamic axes of every graph (ONNX symbolic dimension names).
# "PQ" is the key axis of the mask and attention weights: P + Q.
VISION_AXES = {VISION_IN_PIXELS: {0: "F"}, VISION_OUT_EMBEDS: {0: "N"}}
EMBED_AXES = {EMBED_IN_IDS: {0: "B", 1: "T"}, EMBED_OUT: {0: "B", 1: "T"}}
ROPE_AXES = {
    ROPE_IN_POSITIONS: {0: "B", 1: "T"},
    ROPE_OUT_COS: {0: "B", 1: "T"},
    ROPE_OUT_SIN: {0: "B", 1: "T"},
}
# Family qwen2_5_vl (M-RoPE): position_ids [3,B,T] (t, h, w axes) -> cos, sin [B,T,R].
ROPE_AXES_MROPE = {
    ROPE_IN_POSITIONS: {1: "B", 2: "T"},
    ROPE_OUT_COS: {0: "B", 1: "T"},
    ROPE_OUT_SIN: {0: "B", 1: "T"},
}
LAYER_AXES = {
    LAYER_IN_HIDDEN: {0: "B", 1: "Q"},
    LAYER_IN_COS: {0: "B", 1: "Q"},
    LAYER_IN_SIN: {0: "B", 1: "Q"},
    LAYER_IN_PAST_KEY: {0: "B", 2: "P"},
    LAYER_IN_PAST_VALUE: {0: "B", 2: "P"},
    LAYER_IN_MASK: {0: "B", 2: "Q", 3: "PQ"},
    LAYER_OUT_HIDDEN: {0: "B", 1: "Q"},
    LAYER_OUT_KEY: {0: "B", 2: "Q"},
    LAYER_OUT_VALUE: {0: "B", 2: "Q"},
    LAYER_OUT_ATTN: {0: "B", 2: "Q", 3: "PQ"},
}
HEAD_AXES = {HEAD_IN_HIDDEN: {0: "B", 1: "N"}, HEAD_OUT_LOGITS: {0: "B", 1: "N"}}

# Package files.
MANIFEST_FILE = "model.yaml"
TOKENIZER_FILE = "tokenizer.json"
VISION_FILE = "vision.onnx"
EMBED_FILE = "embed.onnx"
ROPE_FILE = "rope.onnx"
HEAD_NORM_FILE = "head_norm.onnx"
HEAD_LM_FILE = "head_lm.onnx"
HEAD_EMBED_FILE = "head_embed.onnx"
LAYERS_DIR = "layers"
GOLDEN_DIR = "golden"
GOLDEN_TENSORS_FILE = "golden.safetensors"
GOLDEN_YAML_FILE = "golden.yaml"


def layer_file(index: int, attn: bool = False) -> str:
    """Package-relative path of decoder layer `index` (0-based), e.g. `layers/layer_03_attn.onnx`."""
    suffix = "_attn" if attn else ""
    return f"{LAYERS_DIR}/layer_{index:02d}{suffix}.onnx"


# Additive mask value of a blocked edge in the PyTorch reference.
MASK_BLOCKED = float(np.finfo(np.float32).min)

# Golden case names.
GOLDEN_CASES = ("prefill", "knockout", "batch2", "extend")
