"""(a) Every exported graph of the random-config model: ONNX Runtime equals PyTorch (HF modules)."""

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_close, hf_layer_forward, max_err, random_mask, run, run_layer

from vidflow_export import contract as c
from vidflow_export.hf import text_model
from vidflow_export.manifest import read as read_manifest

TOL = 1e-4
TOL16 = 1e-2  # float16 package vs float32 PyTorch (observed ~2e-3)


def graph_files(pkg):
    m = read_manifest(str(pkg / c.MANIFEST_FILE))
    g = m["graphs"]
    return [g["vision"], g["embed"], g["rope"], *g["layers"], *g["layers_attn"],
            g["head_norm"], g["head_lm"], g["head_embed"]]


def _symbolic_axes(value_info) -> dict:
    dims = value_info.type.tensor_type.shape.dim
    return {i: d.dim_param for i, d in enumerate(dims) if d.dim_param}


EXPECTED_IO = {
    c.VISION_FILE: ([c.VISION_IN_PIXELS], [c.VISION_OUT_EMBEDS], c.VISION_AXES),
    c.EMBED_FILE: ([c.EMBED_IN_IDS], [c.EMBED_OUT], c.EMBED_AXES),
    c.ROPE_FILE: ([c.ROPE_IN_POSITIONS], [c.ROPE_OUT_COS, c.ROPE_OUT_SIN], c.ROPE_AXES),
    c.HEAD_NORM_FILE: ([c.HEAD_IN_HIDDEN], [c.HEAD_OUT_LOGITS], c.HEAD_AXES),
    c.HEAD_LM_FILE: ([c.HEAD_IN_HIDDEN], [c.HEAD_OUT_LOGITS], c.HEAD_AXES),
    c.HEAD_EMBED_FILE: ([c.HEAD_IN_HIDDEN], [c.HEAD_OUT_LOGITS], c.HEAD_AXES),
}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_graph_names_dtypes_opset_and_dynamic_axes(tiny_pkg, tiny_pkg16, dtype):
    pkg = tiny_pkg if dtype == "float32" else tiny_pkg16
    assert read_manifest(str(pkg / c.MANIFEST_FILE))["dtype"] == dtype
    for rel in graph_files(pkg):
        model = onnx.load(str(pkg / rel))
        onnx.checker.check_model(model)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert opset >= 17, rel
        if rel.startswith(c.LAYERS_DIR):
            outs = c.LAYER_ATTN_OUTPUTS if rel.endswith("_attn.onnx") else c.LAYER_OUTPUTS
            ins, axes = c.LAYER_INPUTS, c.LAYER_AXES
        else:
            ins, outs, axes = EXPECTED_IO[rel]
        assert [i.name for i in model.graph.input] == list(ins), rel
        assert [o.name for o in model.graph.output] == list(outs), rel
        for vi in list(model.graph.input) + list(model.graph.output):
            elem = vi.type.tensor_type.elem_type
            integer = vi.name in (c.EMBED_IN_IDS, c.ROPE_IN_POSITIONS)
            assert elem == (onnx.TensorProto.INT64 if integer else onnx.TensorProto.FLOAT), (rel, vi.name)
            assert _symbolic_axes(vi) == axes[vi.name], (rel, vi.name)
        if dtype == "float16" and rel != c.ROPE_FILE:
            kinds = {t.data_type for t in model.graph.initializer if np.prod(t.dims) > 1000}
            assert kinds == {onnx.TensorProto.FLOAT16}, f"{rel}: large weights are not float16"


@pytest.mark.parametrize("frames", [4, 1, 3, 8])
def test_vision(tiny_pkg, tiny_model, frames):
    g = torch.Generator().manual_seed(frames)
    pixels = torch.randn(frames, 3, 64, 64, generator=g)
    got = run(tiny_pkg / c.VISION_FILE, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    with torch.no_grad():
        want = tiny_model.model.get_video_features(pixels[None], return_dict=True).pooler_output[0]
    assert got.shape == (frames * 16, 64)
    assert_close(got, want, TOL, "vision")


def test_embed(tiny_pkg, tiny_model):
    ids = torch.randint(0, tiny_model.config.text_config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    got = run(tiny_pkg / c.EMBED_FILE, input_ids=ids)[c.EMBED_OUT]
    with torch.no_grad():
        want = tiny_model.get_input_embeddings()(ids)
    assert_close(got, want, TOL, "embed")


def test_rope_matches_hf_and_linear_scaling(tiny_pkg, tiny_model):
    rotary = text_model(tiny_model).rotary_emb
    pos = torch.tensor([[0, 1, 2, 3, 50, 151, 300], [7, 7, 0, 499, 20, 21, 22]])
    out = run(tiny_pkg / c.ROPE_FILE, position_ids=pos)
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1), pos)
    assert out[c.ROPE_OUT_COS].shape == (2, 7, 16)
    assert_close(out[c.ROPE_OUT_COS], cos, TOL, "cos")
    assert_close(out[c.ROPE_OUT_SIN], sin, TOL, "sin")
    # Independent of HF: linear scaling with factor 2 divides the positions by 2.
    dim, theta, factor = 16, 10000.0, 2.0
    inv = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    angles = (pos.numpy()[..., None] / factor) * inv
    angles = np.concatenate((angles, angles), axis=-1)
    assert_close(out[c.ROPE_OUT_COS], np.cos(angles), TOL, "cos vs formula")
    assert_close(out[c.ROPE_OUT_SIN], np.sin(angles), TOL, "sin vs formula")
    unscaled = np.cos(pos.numpy()[..., None] * np.concatenate((inv, inv)))
    assert max_err(out[c.ROPE_OUT_COS], unscaled) > 0.1


def _layer_inputs(model, B, Q, P, seed):
    """Random rows at positions P..P+Q-1 with rotary tables from the HF module, random past K/V."""
    cfg = text_model(model).config
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, Q, cfg.hidden_size, generator=g)
    pos = (torch.arange(Q) + P + 3)[None].expand(B, -1)
    with torch.no_grad():
        cos, sin = text_model(model).rotary_emb(hidden, pos)
    past_k = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    past_v = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    # A fully blocked row in batch element 0 (the last row); element 1 keeps its rows open.
    mask = random_mask(g, B, Q, P, fully_blocked_rows=[(0, Q - 1)])
    return hidden, cos, sin, past_k, past_v, mask


@pytest.mark.parametrize("layer_idx", [0, 1, 2, 3])
@pytest.mark.parametrize("P,Q", [(0, 9), (6, 9), (20, 1)])
def test_layer_graphs_match_hf_layer(tiny_pkg, tiny_model, layer_idx, P, Q):
    text = text_model(tiny_model)
    args = _layer_inputs(tiny_model, B=2, Q=Q, P=P, seed=10 * layer_idx + P)
    want_h, want_k, want_v, want_w = hf_layer_forward(text.layers[layer_idx], text.config, *args)
    for attn in (False, True):
        out = run_layer(tiny_pkg / c.layer_file(layer_idx, attn), *args)
        assert_close(out[c.LAYER_OUT_HIDDEN], want_h, TOL, f"layer {layer_idx} hidden_out")
        assert_close(out[c.LAYER_OUT_KEY], want_k, TOL, f"layer {layer_idx} key")
        assert_close(out[c.LAYER_OUT_VALUE], want_v, TOL, f"layer {layer_idx} value")
        if attn:
            w = out[c.LAYER_OUT_ATTN]
            assert w.shape == (2, 4, Q, P + Q)
            assert_close(w, want_w, TOL, f"layer {layer_idx} attn_weights")
            # A fully blocked row is uniform over the row (reference behaviour).
            assert np.allclose(w[0, :, -1], 1.0 / (P + Q), atol=1e-6)


def test_heads(tiny_pkg, tiny_model):
    text = text_model(tiny_model)
    hidden = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = {
            c.HEAD_NORM_FILE: tiny_model.lm_head(text.norm(hidden)),
            c.HEAD_LM_FILE: tiny_model.lm_head(hidden),
            c.HEAD_EMBED_FILE: hidden @ text.embed_tokens.weight.T,
        }
    for name, expected in want.items():
        got = run(tiny_pkg / name, hidden=hidden)[c.HEAD_OUT_LOGITS]
        assert got.shape == (2, 5, tiny_model.config.text_config.vocab_size)
        assert_close(got, expected, TOL, name)
    # The three lenses differ (head_lm must not secretly apply the norm, etc.).
    assert max_err(want[c.HEAD_NORM_FILE], want[c.HEAD_LM_FILE]) > 0.01


def test_float16_package_close_to_float32_pytorch(tiny_pkg16, tiny_model):
    text = text_model(tiny_model)
    g = torch.Generator().manual_seed(5)
    pixels = torch.randn(4, 3, 64, 64, generator=g)
    with torch.no_grad():
        want = tiny_model.model.get_video_features(pixels[None], return_dict=True).pooler_output[0]
    got = run(tiny_pkg16 / c.VISION_FILE, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    assert_close(got, want, TOL16, "fp16 vision")

    ids = torch.randint(0, 600, (1, 6), generator=g)
    got = run(tiny_pkg16 / c.EMBED_FILE, input_ids=ids)[c.EMBED_OUT]
    assert_close(got, text.embed_tokens(ids).detach(), TOL16, "fp16 embed")

    for layer_idx in range(4):
        for P in (0, 5):
            args = _layer_inputs(tiny_model, B=2, Q=7, P=P, seed=100 + layer_idx + P)
            want_h, want_k, want_v, want_w = hf_layer_forward(text.layers[layer_idx], text.config, *args)
            out = run_layer(tiny_pkg16 / c.layer_file(layer_idx, attn=True), *args)
            assert all(v.dtype == np.float32 for v in out.values())
            assert_close(out[c.LAYER_OUT_HIDDEN], want_h, TOL16, "fp16 hidden_out")
            assert_close(out[c.LAYER_OUT_KEY], want_k, TOL16, "fp16 key")
            assert_close(out[c.LAYER_OUT_VALUE], want_v, TOL16, "fp16 value")
            assert_close(out[c.LAYER_OUT_ATTN], want_w, TOL16, "fp16 attn_weights")

    hidden = torch.randn(1, 3, 64, generator=g)
    with torch.no_grad():
        want = tiny_model.lm_head(text.norm(hidden))
    assert_close(run(tiny_pkg16 / c.HEAD_NORM_FILE, hidden=hidden)[c.HEAD_OUT_LOGITS], want, TOL16, "fp16 head")

