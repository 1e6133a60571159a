"""`attention="fused"`: the layer graph with a com.microsoft MultiHeadAttention core has the same I/O
and the same outputs as the default (eager) graph, including rows with every key blocked (uniform
weights over the row), past K/V and B > 1."""

import onnx
import pytest
import torch
from conftest import assert_close, random_mask, run_layer

from vidflow_export import contract as c
from vidflow_export import graphs
from vidflow_export.hf import text_model
from vidflow_export.layer import wrap_layer

TOL = 1e-5
LAYER = 1


@pytest.fixture(scope="module")
def layer_graphs(tiny_model, tmp_path_factory):
    text = text_model(tiny_model)
    out = tmp_path_factory.mktemp("fused")
    paths = {}
    for mode in ("eager", "fused"):
        paths[mode] = out / f"layer_{mode}.onnx"
        graphs.export_layer(text.layers[LAYER], text.config, str(paths[mode]), False, attention=mode)
    return paths


def _inputs(cfg, B, Q, P, seed, **mask_kw):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, Q, cfg.hidden_size, generator=g)
    pos = torch.arange(P, P + Q, dtype=torch.float32)
    inv = 1.0 / (10000 ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
    angles = torch.cat([pos[:, None] * inv] * 2, dim=-1).expand(B, -1, -1)
    pk = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    pv = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    mask = random_mask(g, B, Q, P, **mask_kw)
    return hidden, angles.cos(), angles.sin(), pk, pv, mask


def test_fused_graph_has_one_attention_node_and_the_contract_io(layer_graphs):
    m = onnx.load(str(layer_graphs["fused"]))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("MultiHeadAttention") == 1 and "Softmax" not in ops
    assert [i.name for i in m.graph.input] == list(c.LAYER_INPUTS)
    assert [o.name for o in m.graph.output] == list(c.LAYER_OUTPUTS)
    eager = onnx.load(str(layer_graphs["eager"]))
    assert "MultiHeadAttention" not in [n.op_type for n in eager.graph.node]
    assert {o.domain for o in eager.opset_import} == {""}


@pytest.mark.parametrize(
    "B,Q,P,mask_kw",
    [
        (1, 24, 0, {"p_block": 0.0}),  # (a) plain causal
        (2, 24, 0, {"fully_blocked_rows": [(0, 0), (0, 5), (1, 23)]}),  # (b) random, fully blocked rows
        (2, 6, 11, {"fully_blocked_rows": [(1, 2)]}),  # (c) past K/V
        (1, 1, 20, {}),  # one-token extend
    ],
)
def test_fused_equals_eager(tiny_model, layer_graphs, B, Q, P, mask_kw):
    cfg = text_model(tiny_model).config
    args = _inputs(cfg, B, Q, P, seed=B * 100 + Q + P, **mask_kw)
    want = run_layer(layer_graphs["eager"], *args)
    got = run_layer(layer_graphs["fused"], *args)
    for name in c.LAYER_OUTPUTS:
        assert got[name].shape == want[name].shape
        assert_close(got[name], want[name], TOL, f"{name} fused vs eager")


def test_torch_forward_is_the_same(tiny_model):
    text = text_model(tiny_model)
    args = _inputs(text.config, 2, 7, 3, seed=3, fully_blocked_rows=[(0, 1)])
    with torch.no_grad():
        want = wrap_layer(text.layers[LAYER], text.config)(*args)
        got = wrap_layer(text.layers[LAYER], text.config, attention="fused")(*args)
    for name, a, e in zip(c.LAYER_OUTPUTS, got, want):
        assert_close(a, e, TOL, name)


def test_fused_refuses_attention_weights_and_half(tiny_model):
    text = text_model(tiny_model)
    with pytest.raises(ValueError, match="attention-weights"):
        wrap_layer(text.layers[LAYER], text.config, with_attn=True, attention="fused")
    with pytest.raises(ValueError, match="float32 only"):
        wrap_layer(graphs.to_dtype(text.layers[LAYER], torch.float16), text.config, attention="fused")
    with pytest.raises(ValueError, match="expected one of"):
        wrap_layer(text.layers[LAYER], text.config, attention="flash")


def test_export_layers_keeps_the_attn_variant_eager(tiny_model, tmp_path):
    text = text_model(tiny_model)
    graphs.export_layers(text, text.config, str(tmp_path), [0], attention="fused")
    plain = [n.op_type for n in onnx.load(str(tmp_path / c.layer_file(0))).graph.node]
    attn = [n.op_type for n in onnx.load(str(tmp_path / c.layer_file(0, True))).graph.node]
    assert "MultiHeadAttention" in plain
    assert "MultiHeadAttention" not in attn and "Softmax" in attn
