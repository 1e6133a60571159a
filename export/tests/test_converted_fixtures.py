"""The committed test packages of the paper's converted checkpoint layouts, tests/fixtures/tiny-pllava and
tests/fixtures/tiny-internvl (`export/make_fixture.sh pllava internvl`): ONNX
Runtime through the committed package reproduces the committed PyTorch goldens (computed with the
converter's reference-structure model, golden.py's `Converted`), and a fresh regeneration from the
seed-0 reference-layout checkpoint gives the committed golden files."""

import shutil

import numpy as np
import pytest
import yaml
from conftest import REPO, assert_close, max_err, run, run_layer
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import internvl, pllava
from vidflow_export.manifest import read as read_manifest

TOL = 1e-4
CONVERTERS = {"pllava": pllava, "internvl": internvl}


def fixture_dir(family):
    return REPO / "tests" / "fixtures" / f"tiny-{family}"


@pytest.fixture(scope="module", params=sorted(CONVERTERS))
def fx(request):
    d = fixture_dir(request.param)
    manifest = read_manifest(str(d / c.MANIFEST_FILE))
    with open(d / c.GOLDEN_DIR / c.GOLDEN_YAML_FILE) as f:
        meta = yaml.safe_load(f)
    golden = load_file(str(d / c.GOLDEN_DIR / c.GOLDEN_TENSORS_FILE))
    return request.param, d, manifest, meta, golden


def additive(blocked):
    return np.where(blocked.astype(bool), np.float32(c.MASK_BLOCKED), np.float32(0)).astype(np.float32)


def run_case(d, manifest, hidden, cos, sin, blocked):
    """ORT through every layer graph of the package (no past); blocked [L,B,S,S] -> states [L+1,B,S,D]."""
    B = hidden.shape[0]
    states = [hidden]
    empty = np.zeros((B, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
    for layer in range(manifest["num_layers"]):
        out = run_layer(d / manifest["graphs"]["layers"][layer], states[-1], cos, sin, empty, empty,
                        additive(blocked[layer])[:, None])
        states.append(out[c.LAYER_OUT_HIDDEN])
    return np.stack(states)


def last_logits(d, manifest, states):
    return run(d / manifest["graphs"]["head_norm"], hidden=states[-1][:, -1:])[c.HEAD_OUT_LOGITS][:, 0]


def test_golden_files_and_shapes(fx):
    family, d, manifest, meta, golden = fx
    assert manifest["name"] == f"tiny-{family}" and manifest["family"] == "llama"
    assert [case["name"] for case in meta["cases"]] == list(c.GOLDEN_CASES)
    L, S, D = manifest["num_layers"], meta["seq_len"], manifest["hidden_size"]
    N = manifest["video"]["num_frames"] * meta["tokens_per_frame"]
    assert golden["position_ids"].shape == (1, S) and (golden["position_ids"][0] == np.arange(S)).all()
    assert golden["video_embeds"].shape == (N, D) and golden["embeds"].shape == (1, S, D)
    assert golden["prefill.hidden"].shape == (L + 1, 1, S, D)
    assert golden["batch2.hidden"].shape == (L + 1, 2, S, D)
    assert golden["extend.hidden"].shape == (L + 1, 1, S - meta["prefix_len"], D)
    tok = Tokenizer.from_file(str(d / manifest["tokenizer"]))
    assert gd.build_sequence(manifest, tok).input_ids == golden["input_ids"][0].tolist()
    assert np.array_equal(golden["pixel_values"], gd.synthetic_frames(manifest))


def test_input_graphs_reproduce_golden_inputs(fx):
    _, d, manifest, meta, golden = fx
    g = manifest["graphs"]
    video = run(d / g["vision"], pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS]
    assert_close(video, golden["video_embeds"], TOL, "video_embeds")
    text = run(d / g["embed"], input_ids=golden["input_ids"])[c.EMBED_OUT]
    v = meta["video_start"]
    assert_close(np.concatenate((text[:, :v], video[None], text[:, v + 1:]), axis=1), golden["embeds"], TOL, "embeds")
    rope = run(d / g["rope"], position_ids=golden["position_ids"])
    assert_close(rope[c.ROPE_OUT_COS], golden["cos"], 1e-5, "cos")
    assert_close(rope[c.ROPE_OUT_SIN], golden["sin"], 1e-5, "sin")


@pytest.mark.parametrize("name", ["prefill", "knockout"])
def test_layer_graphs_reproduce_golden_cases(fx, name):
    _, d, manifest, _, golden = fx
    states = run_case(d, manifest, golden["embeds"], golden["cos"], golden["sin"], golden[f"{name}.blocked"])
    for layer in range(states.shape[0]):
        assert_close(states[layer], golden[f"{name}.hidden"][layer], TOL, f"{name} hidden {layer}")
    assert_close(last_logits(d, manifest, states), golden[f"{name}.logits_last"], TOL, f"{name} logits_last")


def test_knockout_is_visible_in_the_golden(fx):
    """The knockout's blocks move the last logits far beyond the tolerance (the golden is not trivially
    mask-independent)."""
    _, _, _, _, golden = fx
    assert max_err(golden["knockout.logits_last"], golden["prefill.logits_last"]) > 10 * TOL


def test_fixture_regenerates_identically(fx, tmp_path):
    """The seed-0 reference-layout checkpoint + the committed package give the committed golden files
    again: golden.yaml byte for byte, integer tensors exactly, float tensors within the fp32 graph
    contract (1e-4; on the machine that wrote them they are byte-identical, but other processors'
    kernels may round differently)."""
    family, d, manifest, meta, golden = fx
    ckpt, pkg = tmp_path / "ckpt", tmp_path / "pkg"
    CONVERTERS[family].write_random_checkpoint(str(ckpt), seed=0)
    shutil.copytree(d, pkg, ignore=shutil.ignore_patterns(c.GOLDEN_DIR))
    assert gd.generate(str(ckpt), str(pkg)) == meta
    yaml_file = f"{c.GOLDEN_DIR}/{c.GOLDEN_YAML_FILE}"
    assert (pkg / yaml_file).read_bytes() == (d / yaml_file).read_bytes()
    fresh = load_file(str(pkg / c.GOLDEN_DIR / c.GOLDEN_TENSORS_FILE))
    assert set(fresh) == set(golden)
    for name, value in fresh.items():
        assert value.shape == golden[name].shape and value.dtype == golden[name].dtype, name
        if value.dtype == np.float32:
            assert_close(value, golden[name], TOL, name)
        else:
            assert (value == golden[name]).all(), name
