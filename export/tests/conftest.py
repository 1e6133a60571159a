"""Shared fixtures: a freshly built tiny model (seed 0) exported in float32 and float16."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vidflow_export import contract as c

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO / "tests" / "fixtures" / "tiny"
# The package name the committed fixture is exported with (export/make_fixture.sh).
FIXTURE_NAME = "tiny-llava-next-video"

torch.set_num_threads(2)


def max_err(actual, expected) -> float:
    """Largest elementwise error scaled as |a - e| / (1 + |e|) (the Rust tests' measure)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape}"
    return float((np.abs(a - e) / (1.0 + np.abs(e))).max())


def assert_close(actual, expected, tol: float, what: str = "") -> None:
    err = max_err(actual, expected)
    assert err <= tol, f"{what}: max error {err:.3e} > {tol:.1e}"


_SESSIONS: dict = {}


def session(path) -> ort.InferenceSession:
    path = str(path)
    if path not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        _SESSIONS[path] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


def run(path, **inputs) -> dict:
    """Runs an ONNX graph; inputs are torch tensors or numpy arrays; returns name -> numpy array."""
    s = session(path)
    feed = {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in inputs.items()}
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feed)))


def run_layer(path, hidden, cos, sin, past_key, past_value, mask) -> dict:
    return run(path, **{
        c.LAYER_IN_HIDDEN: hidden,
        c.LAYER_IN_COS: cos,
        c.LAYER_IN_SIN: sin,
        c.LAYER_IN_PAST_KEY: past_key,
        c.LAYER_IN_PAST_VALUE: past_value,
        c.LAYER_IN_MASK: mask,
    })


def random_mask(g: torch.Generator, B: int, Q: int, P: int, fully_blocked_rows=(), p_block: float = 0.3):
    """[B,1,Q,P+Q] additive: causal (row i = position P+i) plus random blocked edges, with some rows
    fully blocked; the diagonal stays open elsewhere so most rows keep a key."""
    K = P + Q
    q = torch.arange(Q)[:, None] + P
    k = torch.arange(K)[None, :]
    blocked = (k > q).expand(B, Q, K).clone()
    blocked |= torch.rand(B, Q, K, generator=g) < p_block
    blocked[:, torch.arange(Q), torch.arange(Q) + P] = False
    for b, row in fully_blocked_rows:
        blocked[b, row, :] = True
    mask = torch.where(blocked, torch.tensor(c.MASK_BLOCKED), torch.tensor(0.0))
    return mask[:, None].float()


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> str:
    from vidflow_export.tiny import build_tiny

    out = tmp_path_factory.mktemp("tiny_hf")
    build_tiny(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="session")
def tiny_model(tiny_hf):
    from vidflow_export.hf import load_video_llm

    return load_video_llm(tiny_hf)


@pytest.fixture(scope="session")
def tiny_pkg(tiny_hf, tmp_path_factory) -> Path:
    from vidflow_export.export import export_package

    out = tmp_path_factory.mktemp("tiny_pkg")
    export_package(tiny_hf, str(out), dtype="float32", name=FIXTURE_NAME)
    return out


@pytest.fixture(scope="session")
def tiny_pkg16(tiny_hf, tmp_path_factory) -> Path:
    from vidflow_export.export import export_package

    out = tmp_path_factory.mktemp("tiny_pkg16")
    export_package(tiny_hf, str(out), dtype="float16", name=FIXTURE_NAME)
    return out


@torch.no_grad()
def hf_layer_forward(layer, config, hidden, cos, sin, past_key, past_value, mask):
    """The HF decoder layer's own forward (eager attention) with past K/V in a DynamicCache.

    Returns (hidden_out, key, value, attn_weights); key/value are the computed rows' post-rotary K/V
    as the HF attention stored them in the cache.
    """
    from transformers import DynamicCache

    idx = layer.self_attn.layer_idx
    P = past_key.shape[2]
    cache = DynamicCache(config=config)
    if P:
        cache.update(past_key, past_value, idx)
    captured = {}
    hook = layer.self_attn.register_forward_hook(lambda mod, args, out: captured.__setitem__("w", out[1]))
    try:
        out = layer(hidden, attention_mask=mask, past_key_values=cache, use_cache=True, position_embeddings=(cos, sin))
    finally:
        hook.remove()
    return out, cache.layers[idx].keys[:, :, P:], cache.layers[idx].values[:, :, P:], captured["w"]
