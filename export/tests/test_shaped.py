"""`shaped`: the random-weight model with a real model's layer shape, built here at tiny dimensions.

The package must have the asked decoder shape (manifest fields and the weights inside the layer
graph), its layer graph must run in ONNX Runtime and equal the HF layer it was exported from, and
the bench prompt must reach the asked sequence length as vidflow itself lays it out (the release
binary's `vidflow plan`, when it is built).
"""

import json
import subprocess

import onnx
import pytest
import torch

from vidflow_export import contract as c
from vidflow_export.hf import load_video_llm, text_model
from vidflow_export.manifest import read as read_manifest
from vidflow_export.shaped import build_shaped, export_shaped

from conftest import REPO, assert_close, run_layer

SHAPE = {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 6, "intermediate_size": 160}


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    out = tmp_path_factory.mktemp("shaped") / "pkg"
    r = export_shaped(str(out), num_layers=2, dtype="float32", frames=2, grid=3, seq_len=120, **SHAPE)
    return out, r


def test_the_package_has_the_asked_shape(shaped):
    out, r = shaped
    m = read_manifest(str(out / c.MANIFEST_FILE))
    assert (m["hidden_size"], m["num_heads"], m["num_kv_heads"], m["head_dim"], m["intermediate_size"]) == (
        96, 6, 6, 16, 160)
    assert m["num_layers"] == 2 and len(m["graphs"]["layers"]) == 2
    assert (m["video"]["num_frames"], m["video"]["grid_h"], m["video"]["grid_w"]) == (2, 3, 3)
    # The MLP weights inside the layer graph have the asked sizes (a real 7B: 4096 x 11008).
    g = onnx.load(str(out / c.layer_file(0)))
    shapes = {tuple(t.dims) for t in g.graph.initializer}
    assert (96, 160) in shapes or (160, 96) in shapes, sorted(shapes)


def test_the_layer_graph_equals_the_hf_layer(shaped, tmp_path):
    out, _ = shaped
    # Rebuild the same seeded HF model and run its layer 0 next to the exported graph.
    build_shaped(str(tmp_path / "hf"), num_layers=2, frames=2, grid=3, **SHAPE)
    model = load_video_llm(str(tmp_path / "hf"))
    text = text_model(model)
    g = torch.Generator().manual_seed(3)
    q, d, hkv, dh = 7, 96, 6, 16
    hidden = torch.randn(1, q, d, generator=g)
    cos, sin = text.rotary_emb(hidden, torch.arange(q)[None])
    mask = torch.triu(torch.full((q, q), torch.finfo(torch.float32).min), diagonal=1)[None, None]
    with torch.no_grad():
        want = text.layers[0](hidden, attention_mask=mask, position_embeddings=(cos, sin))
    want = want[0] if isinstance(want, tuple) else want
    empty = torch.zeros(1, hkv, 0, dh)
    got = run_layer(out / c.layer_file(0), hidden, cos, sin, empty, empty, mask)[c.LAYER_OUT_HIDDEN]
    assert_close(got, want.numpy(), 1e-4, "layer 0")


def test_the_bench_prompt_reaches_the_sequence_length(shaped):
    out, r = shaped
    prompt = json.loads((out / "bench_prompt.json").read_text())
    assert prompt == r["prompt"]
    assert prompt["seq_len"] == 120
    vidflow = REPO / "target" / "release" / "vidflow"
    if not vidflow.exists():
        pytest.skip(f"{vidflow} is not built")
    args = [str(vidflow), "plan", "--model", str(out), "--config", "random:0.5", "--json",
            "--question", prompt["question"], "--answer", str(prompt["answer"])]
    for o in prompt["options"]:
        args += ["--option", o]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["seq_len"] == 120, {k: v for k, v in report.items() if k != "layers"}
