"""(b) The layer wrapper equals the HF layer forward under a 4D mask; (c) extend with past K/V equals
the prefill rows (PyTorch wrapper and exported graph), and the check catches wrong K/V, rotary, mask."""

import pytest
import torch
from conftest import assert_close, hf_layer_forward, max_err, random_mask, run_layer

from vidflow_export import contract as c
from vidflow_export.hf import text_model
from vidflow_export.layer import wrap_layer

TOL = 1e-5


def _inputs(model, S, B=2, seed=0):
    text = text_model(model)
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, S, text.config.hidden_size, generator=g)
    with torch.no_grad():
        cos, sin = text.rotary_emb(hidden, torch.arange(S)[None].expand(B, -1))
    mask = random_mask(g, B, S, 0, fully_blocked_rows=[(B - 1, S - 1)])
    return hidden, cos, sin, mask


def _empty(cfg, B):
    return torch.zeros(B, cfg.num_key_value_heads, 0, cfg.head_dim)


@pytest.mark.parametrize("layer_idx", [0, 3])
@pytest.mark.parametrize("P", [0, 4])
def test_wrapper_equals_hf_layer(tiny_model, layer_idx, P):
    text = text_model(tiny_model)
    cfg = text.config
    g = torch.Generator().manual_seed(layer_idx + P)
    B, Q = 2, 8
    hidden = torch.randn(B, Q, cfg.hidden_size, generator=g)
    with torch.no_grad():
        cos, sin = text.rotary_emb(hidden, (torch.arange(Q) + P)[None].expand(B, -1))
    pk = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    pv = torch.randn(B, cfg.num_key_value_heads, P, cfg.head_dim, generator=g)
    mask = random_mask(g, B, Q, P, fully_blocked_rows=[(0, 2)])
    wrapper = wrap_layer(text.layers[layer_idx], cfg, with_attn=True)
    with torch.no_grad():
        got = wrapper(hidden, cos, sin, pk, pv, mask)
    want = hf_layer_forward(text.layers[layer_idx], cfg, hidden, cos, sin, pk, pv, mask)
    for name, a, e in zip(c.LAYER_ATTN_OUTPUTS, got, want):
        assert_close(a, e, TOL, name)


def _prefill_then_extend(layer_fn, cfg, hidden, cos, sin, mask, P):
    """Full prefill (P=0), then rows P.. with the prefill's K/V of rows ..P as past."""
    B = hidden.shape[0]
    full_h, full_k, full_v = layer_fn(hidden, cos, sin, _empty(cfg, B), _empty(cfg, B), mask)[:3]
    full_k, full_v = torch.as_tensor(full_k), torch.as_tensor(full_v)
    ext = layer_fn(hidden[:, P:], cos[:, P:], sin[:, P:], full_k[:, :, :P], full_v[:, :, :P], mask[:, :, P:])
    return (full_h, full_k, full_v), ext


def _torch_layer(layer):
    def fn(*args):
        with torch.no_grad():
            return layer(*args)
    return fn


def _onnx_layer(path):
    def fn(*args):
        out = run_layer(path, *args)
        return [torch.from_numpy(out[n]) for n in c.LAYER_OUTPUTS]
    return fn


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("P", [1, 7, 13])
def test_extend_equals_prefill_rows(tiny_model, tiny_pkg, backend, P):
    text = text_model(tiny_model)
    cfg = text.config
    S = 16
    hidden, cos, sin, mask = _inputs(tiny_model, S, seed=P)
    layer_idx = 1
    fn = (_torch_layer(wrap_layer(text.layers[layer_idx], cfg)) if backend == "torch"
          else _onnx_layer(tiny_pkg / c.layer_file(layer_idx)))
    (full_h, full_k, full_v), (ext_h, ext_k, ext_v) = _prefill_then_extend(fn, cfg, hidden, cos, sin, mask, P)
    assert_close(ext_h, full_h[:, P:], 1e-5, "extend hidden vs prefill rows")
    assert_close(ext_k, full_k[:, :, P:], 1e-5, "extend key vs prefill rows")
    assert_close(ext_v, full_v[:, :, P:], 1e-5, "extend value vs prefill rows")


def test_extend_check_detects_wrong_kv_rotary_and_mask(tiny_model, tiny_pkg):
    """The comparisons above fail for a swapped K/V slot, a shifted rotary table or a wrong mask."""
    text = text_model(tiny_model)
    cfg = text.config
    S, P = 16, 9
    hidden, cos, sin, mask = _inputs(tiny_model, S, B=1, seed=42)
    mask = random_mask(torch.Generator().manual_seed(1), 1, S, 0, p_block=0.0)  # plain causal
    fn = _onnx_layer(tiny_pkg / c.layer_file(2))
    full_h, full_k, full_v = fn(hidden, cos, sin, _empty(cfg, 1), _empty(cfg, 1), mask)
    rows = hidden[:, P:], cos[:, P:], sin[:, P:]
    good = fn(*rows, full_k[:, :, :P], full_v[:, :, :P], mask[:, :, P:])[0]
    assert max_err(good, full_h[:, P:]) < 1e-5

    swapped = full_k[:, :, :P].clone()
    swapped[:, :, [0, P - 1]] = swapped[:, :, [P - 1, 0]]
    bad = {
        "K and V exchanged": fn(*rows, full_v[:, :, :P], full_k[:, :, :P], mask[:, :, P:])[0],
        "past K rows swapped": fn(*rows, swapped, full_v[:, :, :P], mask[:, :, P:])[0],
        "rotary shifted by one": fn(hidden[:, P:], cos[:, P - 1:-1], sin[:, P - 1:-1],
                                    full_k[:, :, :P], full_v[:, :, :P], mask[:, :, P:])[0],
        "past keys not readable": fn(*rows, full_k[:, :, :P], full_v[:, :, :P],
                                     torch.where(torch.arange(S) < P, c.MASK_BLOCKED, mask[:, :, P:]))[0],
    }
    for what, out in bad.items():
        assert max_err(out, full_h[:, P:]) > 1e-3, f"{what} went unnoticed"
