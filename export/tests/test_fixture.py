"""(e) The committed test package tests/fixtures/tiny: its golden files are consistent with its own
ONNX graphs (ONNX Runtime reproduces every golden tensor), with its masks' group-level description,
with the HF model's full forward, and with a fresh regeneration."""

import os

import numpy as np
import pytest
import torch
import yaml
from conftest import FIXTURE_DIR, FIXTURE_NAME, assert_close, max_err, run, run_layer
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export.manifest import read as read_manifest

TOL = 1e-4


@pytest.fixture(scope="module")
def manifest():
    return read_manifest(str(FIXTURE_DIR / c.MANIFEST_FILE))


@pytest.fixture(scope="module")
def meta():
    with open(FIXTURE_DIR / c.GOLDEN_DIR / c.GOLDEN_YAML_FILE) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def golden():
    return load_file(str(FIXTURE_DIR / c.GOLDEN_DIR / c.GOLDEN_TENSORS_FILE))


def additive(blocked):
    return np.where(blocked.astype(bool), np.float32(c.MASK_BLOCKED), np.float32(0)).astype(np.float32)


def run_case(manifest, hidden, cos, sin, blocked, past=None):
    """ORT through every layer graph; blocked [L,B,Q,K]; returns hidden states [L+1,B,Q,D], K/V."""
    L = manifest["num_layers"]
    B = hidden.shape[0]
    states, keys, values = [hidden], [], []
    for layer in range(L):
        if past is None:
            pk = np.zeros((B, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
            pv = pk
        else:
            pk, pv = past[0][layer], past[1][layer]
        out = run_layer(FIXTURE_DIR / manifest["graphs"]["layers"][layer], states[-1], cos, sin, pk, pv,
                        additive(blocked[layer])[:, None])
        states.append(out[c.LAYER_OUT_HIDDEN])
        keys.append(out[c.LAYER_OUT_KEY])
        values.append(out[c.LAYER_OUT_VALUE])
    return np.stack(states), np.stack(keys), np.stack(values)


def head(manifest, name, hidden):
    return run(FIXTURE_DIR / manifest["graphs"][name], hidden=hidden)[c.HEAD_OUT_LOGITS]


def test_package_files_and_manifest(manifest, meta):
    assert manifest["name"] == FIXTURE_NAME and manifest["dtype"] == "float32"
    g = manifest["graphs"]
    for rel in [g["vision"], g["embed"], g["rope"], *g["layers"], *g["layers_attn"], g["head_norm"],
                g["head_lm"], g["head_embed"], manifest["tokenizer"]]:
        assert (FIXTURE_DIR / rel).is_file(), rel
    assert meta["num_layers"] == manifest["num_layers"]
    assert meta["num_frames"] == manifest["video"]["num_frames"]
    assert meta["tokens_per_frame"] == manifest["video"]["grid_h"] * manifest["video"]["grid_w"]
    assert [case["name"] for case in meta["cases"]] == list(c.GOLDEN_CASES)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(FIXTURE_DIR) for f in fs)
    assert total < 8 * 2**20, f"fixture is {total} bytes"


def test_golden_tensor_shapes(manifest, meta, golden):
    L, S, D, V = manifest["num_layers"], meta["seq_len"], manifest["hidden_size"], manifest["vocab_size"]
    R, Hkv, Dh = manifest["rope_dim"], manifest["num_kv_heads"], manifest["head_dim"]
    F, v = manifest["video"]["num_frames"], manifest["video"]
    N = F * meta["tokens_per_frame"]
    T = golden["input_ids"].shape[1]
    P = meta["prefix_len"]
    expect = {
        "input_ids": ((1, T), np.int64),
        "pixel_values": ((F, 3, v["frame_height"], v["frame_width"]), np.float32),
        "video_embeds": ((N, D), np.float32),
        "embeds": ((1, S, D), np.float32),
        "position_ids": ((1, S), np.int64),
        "cos": ((1, S, R), np.float32),
        "sin": ((1, S, R), np.float32),
        "prefill.lens_norm": ((L, V), np.float32),
        "prefill.lens_lm": ((L, V), np.float32),
        "prefill.lens_embed": ((L, V), np.float32),
        "extend.past_key": ((L, 1, Hkv, P, Dh), np.float32),
        "extend.past_value": ((L, 1, Hkv, P, Dh), np.float32),
    }
    for case in meta["cases"]:
        B, Q = case["batch"], (S - P if case["name"] == "extend" else S)
        expect[f"{case['name']}.blocked"] = ((L, B, Q, S), np.uint8)
        expect[f"{case['name']}.hidden"] = ((L + 1, B, Q, D), np.float32)
        expect[f"{case['name']}.logits_last"] = ((B, V), np.float32)
    assert set(golden) == set(expect)
    for name, (shape, dtype) in expect.items():
        assert golden[name].shape == shape and golden[name].dtype == dtype, name
    assert S == T - 1 + N
    assert golden["input_ids"][0, meta["video_start"]] == manifest["special_tokens"]["video_token_id"]
    assert (golden["position_ids"][0] == np.arange(S)).all()


def test_prompt_tokenizes_to_golden_input_ids(manifest, golden):
    tok = Tokenizer.from_file(str(FIXTURE_DIR / manifest["tokenizer"]))
    seq = gd.build_sequence(manifest, tok)
    assert seq.input_ids == golden["input_ids"][0].tolist()
    assert golden["input_ids"][0, 0] == manifest["special_tokens"]["bos_token_id"]


def test_masks_equal_their_group_description(manifest, meta, golden):
    seq = gd.Sequence(golden["input_ids"][0].tolist(), meta["video_start"], meta["num_frames"],
                      meta["tokens_per_frame"], meta["seq_len"])
    P = meta["prefix_len"]
    for case in meta["cases"]:
        rebuilt = gd.case_blocked(meta["num_layers"], case["batch"], seq, case["blocks"])
        if case["name"] == "extend":
            rebuilt = rebuilt[:, :, P:]
        assert (rebuilt == golden[f"{case['name']}.blocked"]).all(), case["name"]
    assert (golden["knockout.blocked"] != golden["prefill.blocked"]).any()
    assert (golden["batch2.blocked"][:, 0] != golden["batch2.blocked"][:, 1]).any()


def test_input_graphs_reproduce_golden_inputs(manifest, meta, golden):
    g = manifest["graphs"]
    video = run(FIXTURE_DIR / g["vision"], pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS]
    assert_close(video, golden["video_embeds"], TOL, "video_embeds")
    text = run(FIXTURE_DIR / g["embed"], input_ids=golden["input_ids"])[c.EMBED_OUT]
    v = meta["video_start"]
    embeds = np.concatenate((text[:, :v], video[None], text[:, v + 1:]), axis=1)
    assert_close(embeds, golden["embeds"], TOL, "spliced embeds")
    rope = run(FIXTURE_DIR / g["rope"], position_ids=golden["position_ids"])
    assert_close(rope[c.ROPE_OUT_COS], golden["cos"], 1e-5, "cos")
    assert_close(rope[c.ROPE_OUT_SIN], golden["sin"], 1e-5, "sin")


@pytest.mark.parametrize("name", ["prefill", "knockout", "batch2"])
def test_layer_graphs_reproduce_golden_cases(manifest, golden, name):
    blocked = golden[f"{name}.blocked"]
    B = blocked.shape[1]
    rep = lambda x: np.repeat(x, B, axis=0)  # noqa: E731
    states, _, _ = run_case(manifest, rep(golden["embeds"]), rep(golden["cos"]), rep(golden["sin"]), blocked)
    for layer in range(states.shape[0]):
        assert_close(states[layer], golden[f"{name}.hidden"][layer], TOL, f"{name} hidden {layer}")
    logits = head(manifest, "head_norm", states[-1][:, -1:])[:, 0]
    assert_close(logits, golden[f"{name}.logits_last"], TOL, f"{name} logits_last")
    if name == "prefill":
        last = states[1:, 0, -1][None]  # [1,L,D]
        for graph, lens in (("head_norm", "lens_norm"), ("head_lm", "lens_lm"), ("head_embed", "lens_embed")):
            assert_close(head(manifest, graph, last)[0], golden[f"prefill.{lens}"], TOL, lens)


def test_layer_graphs_reproduce_golden_extend(manifest, meta, golden):
    P = meta["prefix_len"]
    past = (golden["extend.past_key"], golden["extend.past_value"])
    states, _, _ = run_case(manifest, golden["embeds"][:, P:], golden["cos"][:, P:], golden["sin"][:, P:],
                            golden["extend.blocked"], past)
    for layer in range(states.shape[0]):
        assert_close(states[layer], golden["extend.hidden"][layer], TOL, f"extend hidden {layer}")
    logits = head(manifest, "head_norm", states[-1][:, -1:])[:, 0]
    assert_close(logits, golden["extend.logits_last"], TOL, "extend logits_last")
    # The past K/V are the knockout prefill's, as the ONNX graphs compute them too.
    _, keys, values = run_case(manifest, golden["embeds"], golden["cos"], golden["sin"], golden["knockout.blocked"])
    assert_close(keys[:, :, :, :P], golden["extend.past_key"], TOL, "past_key")
    assert_close(values[:, :, :, :P], golden["extend.past_value"], TOL, "past_value")


def test_golden_detects_wrong_mask_rotary_and_kv(manifest, meta, golden):
    """Wrong inputs move the last-position logits far beyond the tolerance."""
    want = golden["knockout.logits_last"]
    blocked = golden["knockout.blocked"]

    def logits(states):
        return head(manifest, "head_norm", states[-1][:, -1:])[:, 0]

    emb, cos, sin = golden["embeds"], golden["cos"], golden["sin"]
    causal, _, _ = run_case(manifest, emb, cos, sin, golden["prefill.blocked"])
    assert max_err(logits(causal), want) > 10 * TOL, "missing knockout went unnoticed"
    # Rotary is relative: shifting every position by the same amount changes nothing, so the wrong
    # tables here shift only the positions from the video on (an off-by-one at the splice).
    pos = golden["position_ids"].copy()
    pos[:, meta["video_start"]:] += 1
    rot = run(FIXTURE_DIR / manifest["graphs"]["rope"], position_ids=pos)
    shifted, _, _ = run_case(manifest, emb, rot[c.ROPE_OUT_COS], rot[c.ROPE_OUT_SIN], blocked)
    assert max_err(logits(shifted), want) > 10 * TOL, "rotary off by one from the video on went unnoticed"
    uniform = run(FIXTURE_DIR / manifest["graphs"]["rope"], position_ids=golden["position_ids"] + 1)
    same, _, _ = run_case(manifest, emb, uniform[c.ROPE_OUT_COS], uniform[c.ROPE_OUT_SIN], blocked)
    assert max_err(logits(same), want) < TOL, "a uniform position shift must not matter (relative rotary)"
    exchanged, _, _ = run_case(manifest, emb, sin, cos, blocked)
    assert max_err(logits(exchanged), want) > 10 * TOL, "cos/sin exchanged went unnoticed"
    P = meta["prefix_len"]
    pk = golden["extend.past_key"].copy()
    pk[:, :, :, [0, P - 1]] = pk[:, :, :, [P - 1, 0]]
    swapped, _, _ = run_case(manifest, emb[:, P:], cos[:, P:], sin[:, P:], golden["extend.blocked"],
                             (pk, golden["extend.past_value"]))
    assert max_err(logits(swapped), want) > 10 * TOL, "swapped past K rows went unnoticed"


def test_hf_full_forward_matches_golden_prefill(tiny_model, manifest, meta, golden):
    """The layer-by-layer reference equals the HF model's own forward (processor-style expanded
    video tokens, pixel_values_videos, default causal mask); tiny_model is the same seed-0 model."""
    ids = golden["input_ids"][0].tolist()
    v = meta["video_start"]
    n = meta["num_frames"] * meta["tokens_per_frame"]
    expanded = torch.tensor([ids[:v] + [ids[v]] * n + ids[v + 1:]])
    with torch.no_grad():
        out = tiny_model(input_ids=expanded, pixel_values_videos=torch.from_numpy(golden["pixel_values"])[None])
    assert_close(out.logits[:, -1], golden["prefill.logits_last"], TOL, "HF forward logits")


def test_fixture_regenerates_identically(tiny_hf, tiny_pkg, meta, golden):
    """The session's fresh build (seed 0) + export + golden equals the committed fixture: text files
    byte for byte (no arithmetic in them), golden tensors within the fp32 graph contract (1e-4), as
    they were computed by another processor's kernels."""
    for rel in (c.MANIFEST_FILE, c.TOKENIZER_FILE):
        assert (tiny_pkg / rel).read_bytes() == (FIXTURE_DIR / rel).read_bytes(), rel
    fresh_meta = gd.generate(tiny_hf, str(tiny_pkg))
    assert fresh_meta == meta
    fresh = load_file(str(tiny_pkg / c.GOLDEN_DIR / c.GOLDEN_TENSORS_FILE))
    assert set(fresh) == set(golden)
    for name, value in fresh.items():
        if value.dtype == np.float32:
            assert_close(value, golden[name], TOL, name)
        else:
            assert (value == golden[name]).all(), name
