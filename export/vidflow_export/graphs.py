"""Graph modules (vision, embed, rope, heads) and their ONNX export.

Every module takes and returns float32 (int64 for ids and positions); a float16 module holds half
weights and casts at its boundary.
"""

import copy
import os
import warnings

import onnx
import torch
from torch import nn

from . import contract as c
from .layer import wrap_layer

# Package dtypes by manifest name. bfloat16: graphs for ONNX Runtime's CUDA provider (its CPU
# kernels have no bfloat16 MatMul).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*h*w, D], through the model's own get_video_features."""

    def __init__(self, video_llm, dtype=torch.float32):
        super().__init__()
        # A shallow copy of the multimodal model that holds only the vision parts (in `dtype`),
        # so that a float16 export does not copy the language model.
        shell = copy.copy(video_llm.model)
        shell._modules = {
            name: to_dtype(video_llm.model._modules[name], dtype)
            for name in ("vision_tower", "vision_resampler", "multi_modal_projector")
        }
        shell._parameters = {}
        shell._buffers = {}
        self.model = shell

    def forward(self, pixel_values):
        dt = self.model.multi_modal_projector.linear_1.weight.dtype
        out = self.model.get_video_features(pixel_values.unsqueeze(0).to(dt), return_dict=True)
        feats = out.pooler_output  # [1, F*h*w, D]
        return feats.flatten(0, 1).float()


class EmbedGraph(nn.Module):
    def __init__(self, embed_tokens):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, input_ids):
        return self.embed_tokens(input_ids).float()


class RopeGraph(nn.Module):
    """position_ids [B,T] -> cos, sin [B,T,R] through the model's own rotary module (float32)."""

    def __init__(self, rotary_emb):
        super().__init__()
        self.rotary_emb = rotary_emb

    def forward(self, position_ids):
        probe = torch.zeros((), dtype=torch.float32)  # only its dtype and device are read
        cos, sin = self.rotary_emb(probe, position_ids)
        return cos.float(), sin.float()


class HeadGraph(nn.Module):
    """hidden [B,N,D] -> logits [B,N,V]: `norm` (optional) then a projection by `weight` [V,D]."""

    def __init__(self, norm, weight: nn.Parameter, bias=None):
        super().__init__()
        self.norm = norm
        self.weight = weight
        self.bias = bias

    def forward(self, hidden):
        h = hidden.to(self.weight.dtype)
        if self.norm is not None:
            h = self.norm(h)
        return nn.functional.linear(h, self.weight, self.bias).float()


def head_graphs(model, text) -> dict:
    """The three lenses: final norm + LM head, LM head alone, input-embedding matrix."""
    head = model.get_output_embeddings()
    return {
        c.HEAD_NORM_FILE: HeadGraph(text.norm, head.weight, head.bias),
        c.HEAD_LM_FILE: HeadGraph(None, head.weight, head.bias),
        c.HEAD_EMBED_FILE: HeadGraph(None, text.embed_tokens.weight),
    }


def to_dtype(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `module` in `dtype` (float32: the module itself)."""
    if dtype == torch.float32:
        return module
    return copy.deepcopy(module).to(dtype)


def check_attention(attention: str, dtype: str) -> None:
    """Fused attention (`export_layer`) is float32 only."""
    if attention == "fused" and dtype != "float32":
        raise ValueError(f"fused attention is float32 only, not {dtype}")


def vision_dtype(dtype: torch.dtype) -> torch.dtype:
    """The vision graph's dtype in a `dtype` package: ONNX's Conv (opset 17) takes no bfloat16, so a
    bfloat16 package keeps its vision tower (run once per video) in float32; the decoder layers,
    embeddings and heads are bfloat16."""
    return torch.float32 if dtype == torch.bfloat16 else dtype


def export_vision(graph: nn.Module, pixels: torch.Tensor, path: str, static_dims: dict | None = None) -> None:
    """A vision graph (pixel_values -> video_embeds, contract.VISION_AXES) traced on `pixels`."""
    export_onnx(graph, (pixels,), path, [c.VISION_IN_PIXELS], [c.VISION_OUT_EMBEDS], c.VISION_AXES, static_dims)


def export_onnx(module: nn.Module, args: tuple, path: str, input_names, output_names, axes: dict,
                static_dims: dict | None = None, custom_opsets: dict | None = None) -> None:
    """TorchScript-based export with named I/O and dynamic axes, then onnx.checker.

    `static_dims` {name: {axis: size}} declares I/O dimensions that shape inference leaves symbolic;
    `custom_opsets` {domain: version} the non-standard op domains the graph uses.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = list(input_names) + list(output_names)
    dynamic_axes = {n: axes[n] for n in names if n in axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                path,
                dynamo=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=c.OPSET,
                do_constant_folding=True,
                **({"custom_opsets": custom_opsets} if custom_opsets else {}),
            )
    model = onnx.load(path)
    if static_dims:
        for vi in list(model.graph.input) + list(model.graph.output):
            for axis, size in static_dims.get(vi.name, {}).items():
                dim = vi.type.tensor_type.shape.dim[axis]
                dim.Clear()
                dim.dim_value = size
        onnx.save(model, path)
    onnx.checker.check_model(model, full_check=True)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(input_names) or got_out != list(output_names):
        raise RuntimeError(f"{path}: graph I/O {got_in} -> {got_out}, expected {input_names} -> {output_names}")


# Example input sizes for tracing: all distinct and > 1, with P > 0, so no axis gets specialised.
TRACE_B, TRACE_Q, TRACE_P, TRACE_F = 2, 5, 3, 2


def layer_trace_args(config):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    B, Q, P = TRACE_B, TRACE_Q, TRACE_P
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(B, Q, config.hidden_size, generator=g)
    cos = torch.randn(B, Q, head_dim, generator=g)
    sin = torch.randn(B, Q, head_dim, generator=g)
    past_k = torch.randn(B, config.num_key_value_heads, P, head_dim, generator=g)
    past_v = torch.randn(B, config.num_key_value_heads, P, head_dim, generator=g)
    mask = torch.zeros(B, 1, Q, P + Q)
    return (hidden, cos, sin, past_k, past_v, mask)


def export_layer(hf_layer, config, path: str, with_attn: bool, dtype=torch.float32, attention: str = "eager") -> None:
    """`attention="fused"`: the attention core as one com.microsoft MultiHeadAttention node (float32,
    not for the attention-weights variant); same I/O contract."""
    module = wrap_layer(to_dtype(hf_layer, dtype), config, with_attn=with_attn, attention=attention)
    outputs = c.LAYER_ATTN_OUTPUTS if with_attn else c.LAYER_OUTPUTS
    static = {c.LAYER_OUT_ATTN: {1: config.num_attention_heads}}
    custom = {"com.microsoft": 1} if attention == "fused" else None
    export_onnx(module, layer_trace_args(config), path, c.LAYER_INPUTS, outputs, c.LAYER_AXES, static, custom)


def export_layers(text, config, out_dir: str, indices, dtype=torch.float32, attention: str = "eager") -> None:
    """layer_NN.onnx with `attention`; layer_NN_attn.onnx (attention weights out) always eager."""
    for i in indices:
        for with_attn in (False, True):
            export_layer(text.layers[i], config, os.path.join(out_dir, c.layer_file(i, with_attn)), with_attn, dtype,
                         "eager" if with_attn else attention)


def export_rope(text, out_dir: str, mrope: bool = False) -> None:
    """`mrope`: the rotary module takes position_ids [3,B,T] (t, h, w; Qwen2.5-VL's M-RoPE)."""
    pos = torch.arange(TRACE_Q * TRACE_B, dtype=torch.int64).reshape(TRACE_B, TRACE_Q)
    if mrope:
        pos = torch.stack((pos, pos * 2 + 1, pos * 3 + 2))  # three distinct axes
    export_onnx(
        RopeGraph(text.rotary_emb),
        (pos,),
        os.path.join(out_dir, c.ROPE_FILE),
        [c.ROPE_IN_POSITIONS],
        [c.ROPE_OUT_COS, c.ROPE_OUT_SIN],
        c.ROPE_AXES_MROPE if mrope else c.ROPE_AXES,
    )


def export_all(model, out_dir: str, dtype=torch.float32, attention: str = "eager") -> None:
    """Every graph of a package for a LLaVA-NeXT-Video model (float32 master weights in `model`);
    `attention` as in `export_layers`."""
    vcfg = model.config.vision_config

    pixels = torch.randn(TRACE_F, 3, vcfg.image_size, vcfg.image_size, generator=torch.Generator().manual_seed(0))
    export_vision(VisionGraph(model, vision_dtype(dtype)), pixels, os.path.join(out_dir, c.VISION_FILE))
    export_text(model, out_dir, dtype, attention)


def export_text(model, out_dir: str, dtype=torch.float32, attention: str = "eager", mrope: bool = False) -> None:
    """The embedding, rope, decoder-layer and head graphs of a multimodal model (float32 master
    weights); `mrope` as in `export_rope`."""
    from .hf import text_model

    text = text_model(model)
    config = text.config
    ids = torch.arange(TRACE_B * TRACE_Q, dtype=torch.int64).reshape(TRACE_B, TRACE_Q)
    export_onnx(
        to_dtype(EmbedGraph(text.embed_tokens), dtype),
        (ids,),
        os.path.join(out_dir, c.EMBED_FILE),
        [c.EMBED_IN_IDS],
        [c.EMBED_OUT],
        c.EMBED_AXES,
    )
    # Rotary tables are always computed in float32 (the layers cast them).
    export_rope(text, out_dir, mrope)
    export_layers(text, config, out_dir, range(config.num_hidden_layers), dtype, attention)
    hidden = torch.randn(TRACE_B, TRACE_Q, config.hidden_size, generator=torch.Generator().manual_seed(1))
    for name, head in head_graphs(model, text).items():
        export_onnx(
            to_dtype(head, dtype),
            (hidden,),
            os.path.join(out_dir, name),
            [c.HEAD_IN_HIDDEN],
            [c.HEAD_OUT_LOGITS],
            c.HEAD_AXES,
        )
