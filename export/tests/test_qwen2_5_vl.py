"""The Qwen2.5-VL family: the committed package tests/fixtures/tiny-qwen2_5_vl (manifest, graphs,
goldens) against a fresh seed-0 tiny model, the frame patchify against the HF processor's layout, and
the M-RoPE position rule against transformers' own forward (qwen2_5_vl.mrope_positions)."""

import ast
import importlib.util
import json
import textwrap
from pathlib import Path

import family_checks as fc
import numpy as np
import onnx
import pytest
import torch
from conftest import REPO, assert_close, max_err, run
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import manifest as mf
from vidflow_export import qwen2_5_vl as q
from vidflow_export.export import export_package
from vidflow_export.hf import text_model, video_processor_settings
from vidflow_export.prompt import render

FIXTURE = REPO / "tests" / "fixtures" / "tiny-qwen2_5_vl"
LLAMA_FIXTURE = REPO / "tests" / "fixtures" / "tiny"
TOL = 1e-4
# A wrong position rule must move the prefill hidden states by far more than the graph contract.
WRONG = 1e-2


@pytest.fixture(scope="module")
def qwen_hf(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("qwen_hf")
    q.build_tiny(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(qwen_hf):
    return q.load(qwen_hf)


@pytest.fixture(scope="module")
def manifest():
    return fc.read_manifest(FIXTURE)


@pytest.fixture(scope="module")
def meta():
    return fc.read_meta(FIXTURE)


@pytest.fixture(scope="module")
def golden():
    return fc.read_golden(FIXTURE)


def expanded_ids(golden, meta, manifest) -> torch.Tensor:
    """input_ids [1,S] with the placeholder expanded to the video tokens, as HF's processor does."""
    ids = golden["input_ids"][0].tolist()
    v, n = meta["video_start"], meta["num_frames"] * meta["tokens_per_frame"]
    return torch.tensor([ids[:v] + [manifest["special_tokens"]["video_token_id"]] * n + ids[v + 1:]])


def grid(model, manifest):
    v = manifest["video"]
    return q.grid_thw(model.config.vision_config, v["num_frames"], v["frame_height"], v["frame_width"])


def ort_prefill(manifest, embeds, positions):
    """The package's rope graph and every layer graph (plain causal) on [1,S,D] -> last hidden [1,S,D]."""
    return fc.ort_causal_prefill(FIXTURE, manifest, embeds, positions)


# ---- manifest and prompt -------------------------------------------------------------------------------


def test_manifest_round_trip_and_mrope_section(manifest):
    text = (FIXTURE / c.MANIFEST_FILE).read_text()
    assert mf.dump_yaml(manifest) == text
    assert list(manifest) == mf.MANIFEST_FIELDS + ["mrope"]
    assert manifest["family"] == "qwen2_5_vl" and manifest["name"] == "tiny-qwen2_5_vl"
    assert manifest["mrope"] == {"temporal_patch_size": 2, "tokens_per_second": 2, "seconds_per_group": 1.0,
                                 "sections": [2, 3, 3]}
    assert isinstance(manifest["mrope"]["tokens_per_second"], int)
    assert text.rstrip().endswith("mrope:\n  temporal_patch_size: 2\n  tokens_per_second: 2\n  seconds_per_group: 1.0\n"
                                  "  sections: [2, 3, 3]")
    v = manifest["video"]
    assert (v["num_frames"], v["frame_height"], v["frame_width"], v["grid_h"], v["grid_w"]) == (4, 64, 64, 4, 4)
    assert (v["resize_mode"], v["resize_filter"], v["sampling"]) == ("stretch", "bicubic", "segment_middle")
    assert manifest["special_tokens"]["bos_token_id"] is None

    # The check accepts `mrope` for qwen2_5_vl only, exactly its four fields in order.
    missing = {k: v for k, v in manifest.items() if k != "mrope"}
    with pytest.raises(ValueError, match="top level"):
        mf.check(missing)
    for bad in ({"sections": [2, 3, 3], "temporal_patch_size": 2, "tokens_per_second": 2, "seconds_per_group": 1.0},
                {"temporal_patch_size": 2, "tokens_per_second": 2, "seconds_per_group": 1.0}):
        with pytest.raises(ValueError, match="mrope"):
            mf.check({**manifest, "mrope": bad})
    with pytest.raises(ValueError, match="rotary dims"):
        mf.check({**manifest, "mrope": {**manifest["mrope"], "sections": [2, 3, 4]}})
    with pytest.raises(ValueError, match="temporal_patch_size"):
        mf.check({**manifest, "mrope": {**manifest["mrope"], "temporal_patch_size": 0}})
    llama = mf.read(str(LLAMA_FIXTURE / c.MANIFEST_FILE))
    with pytest.raises(ValueError, match="top level"):
        mf.check({**llama, "mrope": manifest["mrope"]})
    with pytest.raises(ValueError, match="family"):
        mf.check({**manifest, "family": "qwen2_vl"})


def test_fresh_build_gives_the_committed_manifest_and_tokenizer(qwen_hf, model, manifest):
    assert (FIXTURE / c.TOKENIZER_FILE).read_bytes() == (Path(qwen_hf) / c.TOKENIZER_FILE).read_bytes()
    tok = Tokenizer.from_file(str(FIXTURE / c.TOKENIZER_FILE))
    rebuilt = q.package_manifest(model, tok, video_processor_settings(qwen_hf), "tiny-qwen2_5_vl", "float32")
    assert mf.dump_yaml(rebuilt) == (FIXTURE / c.MANIFEST_FILE).read_text()
    # q/k/v carry biases (Qwen2), o_proj none: the extend-form layer takes them with the Linear modules.
    attn = text_model(model).layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.k_proj.bias is not None and attn.v_proj.bias is not None
    assert attn.o_proj.bias is None and attn.q_proj.bias.abs().max() > 0.05


def test_prompt_tokens(manifest, meta, golden):
    tok = Tokenizer.from_file(str(FIXTURE / manifest["tokenizer"]))
    p, special = manifest["prompt"], manifest["special_tokens"]
    assert p["user_prefix"].endswith(q.VISION_START) and p["after_video"].startswith(q.VISION_END)
    assert tok.encode(p["video_placeholder"], add_special_tokens=False).ids == [special["video_token_id"]]
    assert tok.id_to_token(special["eos_token_id"]) == q.IM_END
    assert tok.id_to_token(special["pad_token_id"]) == q.ENDOFTEXT
    seq = gd.build_sequence(manifest, tok)
    assert seq.input_ids == golden["input_ids"][0].tolist() and seq.video_start == meta["video_start"]
    # Every option label is one token right after the prompt (answer_prefix is empty).
    text = render(p, gd.QUESTION, gd.OPTIONS).text
    prompt_ids = tok.encode(text, add_special_tokens=False).ids
    answers = []
    for label in p["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:len(prompt_ids)] == prompt_ids and len(ids) == len(prompt_ids) + 1, label
        assert tok.decode(ids[-1:]) == label
        answers.append(ids[-1])
    assert len(set(answers)) == len(answers)


def test_unknown_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"]}))
    with pytest.raises(ValueError, match="FooForCausalLM.*LlavaNextVideoForConditionalGeneration.*Qwen2_5_VL"):
        export_package(str(tmp_path), str(tmp_path / "pkg"))


# ---- vision ------------------------------------------------------------------------------------------


def patchify_loops(frames: np.ndarray, tp: int, p: int, m: int) -> np.ndarray:
    """Written from the Qwen2-VL processors' patchify, with loops: per temporal group, per 2x2-merge
    block (raster), per patch in the block (raster), the patch's (C, tp, p, p) pixels."""
    F, C, H, W = frames.shape
    rows = []
    for t in range(F // tp):
        for br in range(H // p // m):
            for bc in range(W // p // m):
                for i in range(m):
                    for j in range(m):
                        y, x = (br * m + i) * p, (bc * m + j) * p
                        patch = frames[t * tp:(t + 1) * tp, :, y:y + p, x:x + p]  # [tp,C,p,p]
                        rows.append(patch.transpose(1, 0, 2, 3).reshape(-1))
    return np.stack(rows)


def hf_patchify():
    """transformers' own Qwen2VLVideoProcessor.patchify (pure torch), read from its source file:
    the processor module needs torchvision to import, which this environment lacks."""
    spec = importlib.util.find_spec("transformers.models.qwen2_vl.video_processing_qwen2_vl")
    source = open(spec.origin).read()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "Qwen2VLVideoProcessor":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "patchify":
                    scope = {"torch": torch}
                    exec(textwrap.dedent(ast.get_source_segment(source, fn)), scope)
                    return scope["patchify"]
    pytest.skip("Qwen2VLVideoProcessor.patchify not found in transformers")


def test_patchify_equals_the_processor_layout():
    frames = torch.randn(6, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    got = q.patchify(frames, 2, 8, 2)
    assert got.shape == (3 * 4 * 6, 3 * 2 * 8 * 8)
    assert np.array_equal(got.numpy(), patchify_loops(frames.numpy(), 2, 8, 2))
    flat, gt, gh, gw = hf_patchify()(None, frames[None], patch_size=8, merge_size=2, temporal_patch_size=2)
    assert (gt, gh, gw) == (3, 4, 6)
    assert torch.equal(got, flat[0])


def test_vision_graph_equals_get_video_features(model, manifest, golden):
    v = manifest["video"]
    path = FIXTURE / manifest["graphs"]["vision"]
    g = onnx.load(str(path))
    dims = [[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in (g.graph.input[0], g.graph.output[0])]
    assert dims == [["F", 3, 64, 64], ["N", 64]]
    pixels = torch.randn(v["num_frames"] * 2, 3, v["frame_height"], v["frame_width"],
                         generator=torch.Generator().manual_seed(5))
    got = run(path, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    want = q.video_features(model, pixels, v["num_frames"])
    assert got.shape == (4 * 16, 64)
    assert_close(got, want, TOL, "video_embeds")
    assert_close(run(path, pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS], golden["video_embeds"], TOL,
                 "golden video_embeds")
    # Built for exactly 8 input frames: another count is an error, not a silent wrong answer.
    with pytest.raises(Exception):
        run(path, pixel_values=pixels[:4])
    # The windowed block really splits each 4x4 group: 4 windows of 2x2 merged tokens (16 patches).
    from transformers.vision_utils import get_vision_window_index

    vcfg = model.config.vision_config
    _, cu = get_vision_window_index(grid(model, manifest), vcfg.spatial_merge_size, vcfg.window_size, vcfg.patch_size)
    assert cu.tolist() == list(range(0, 257, 16))
    assert vcfg.fullatt_block_indexes == [1] and vcfg.depth == 2
    # Frames matter per group: changing the last input frame moves only the last group's tokens.
    moved = pixels.clone()
    moved[-1] += 1.0
    diff = np.abs(run(path, pixel_values=moved)[c.VISION_OUT_EMBEDS] - got).max(axis=1)
    assert diff[:48].max() < 1e-5 and diff[48:].min() > 1e-3


# ---- rope and layers -----------------------------------------------------------------------------------


def test_rope_graph_equals_rotary_module(model, manifest):
    path = FIXTURE / manifest["graphs"]["rope"]
    g = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim]
    assert g.graph.input[0].name == c.ROPE_IN_POSITIONS and dims == [3, "B", "T"]
    pos = torch.randint(0, 400, (3, 2, 7), generator=torch.Generator().manual_seed(0))
    out = fc.check_rope_graph(model, path, pos)
    assert out[c.ROPE_OUT_COS].shape == (2, 7, 16)
    # Independent of HF: frequency pairs 0-1 rotate by t, 2-4 by h, 5-7 by w ([2, 3, 3]).
    inv = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    axis = np.repeat([0, 1, 2], [2, 3, 3])
    angles = pos.numpy()[axis].transpose(1, 2, 0) * inv  # [B,T,8]
    angles = np.concatenate((angles, angles), axis=-1)
    assert_close(out[c.ROPE_OUT_COS], np.cos(angles), TOL, "cos vs formula")
    assert_close(out[c.ROPE_OUT_SIN], np.sin(angles), TOL, "sin vs formula")


@pytest.mark.parametrize("layer_idx,P,Q", [(1, 6, 9), (3, 0, 5)])
def test_layer_graph_equals_hf_layer(model, manifest, layer_idx, P, Q):
    fc.check_layer_graph(model, manifest, FIXTURE, layer_idx, P, Q, position_axes=(3,))


# ---- positions ---------------------------------------------------------------------------------------


def test_fixture_positions_follow_the_rule_and_differ_from_hf_5_23(model, manifest, meta, golden):
    pos = golden["position_ids"]
    S, s = meta["seq_len"], meta["video_start"]
    assert pos.shape == (3, 1, S) and pos.dtype == np.int64
    assert np.array_equal(pos[:, 0], q.manifest_positions(manifest, S, s))
    assert (pos[:, 0, :s] == np.arange(s)).all()
    video = pos[:, 0, s:s + 64].reshape(3, 4, 4, 4)  # axis, group, row, column
    assert (video[0] == s + 2 * np.arange(4)[:, None, None]).all()  # floor(g * 2 tokens/s * 1 s)
    assert (video[1] == s + np.arange(4)[None, :, None]).all()
    assert (video[2] == s + np.arange(4)[None, None, :]).all()
    after = pos[:, 0, s + 64:]
    assert (after == s + 7 + np.arange(S - s - 64)).all()  # max vision position s+6, then +1
    # transformers 5.23's helper: the same text and video positions, but the text after the video
    # starts at s + max(grid_h, grid_w) = s + 4 instead of s + 7.
    hf = q.hf_rope_index(model, expanded_ids(golden, meta, manifest), 4, 64, 64, 1.0).numpy()
    assert np.array_equal(hf[:, :, :s + 64], pos[:, :, :s + 64])
    assert (hf[:, 0, s + 64:] == s + 4 + np.arange(S - s - 64)).all()


def test_hf_forward_with_our_positions_is_the_golden(model, manifest, meta, golden):
    """The golden prefill is the HF model's own forward given these positions (and the HF forward
    with its own 5.23 positions is not)."""
    ids = expanded_ids(golden, meta, manifest)
    flat = q.patchify(torch.from_numpy(golden["pixel_values"]), 2, 8, 2)
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values_videos=flat, video_grid_thw=grid(model, manifest),
                    position_ids=torch.from_numpy(golden["position_ids"]), output_hidden_states=True)
        own = model(input_ids=ids, pixel_values_videos=flat, video_grid_thw=grid(model, manifest),
                    mm_token_type_ids=(ids == model.config.video_token_id).int() * 2,
                    second_per_grid_ts=torch.tensor([1.0]))
    fc.check_hf_prefill(model, manifest, golden, out)
    assert max_err(own.logits[:, -1], golden["prefill.logits_last"]) > WRONG


@pytest.mark.parametrize("seconds", [0.5, 0.375, 0.25])
def test_rules_agree_where_the_temporal_span_is_below_the_grid(model, manifest, meta, golden, seconds):
    """Time steps of 1, 0.75 (fractional: t = 0, 0, 1, 2 after flooring) and 0.5 positions per group
    keep the temporal span below max(grid) = 4, so both rules agree, and HF's full forward
    (position_ids=None: its own helper) equals the HF layers run with our positions."""
    S, s = meta["seq_len"], meta["video_start"]
    ids = expanded_ids(golden, meta, manifest)
    ours = q.mrope_positions(S, s, 4, 4, 4, 2, seconds)
    assert np.array_equal(q.hf_rope_index(model, ids, 4, 64, 64, seconds)[:, 0].numpy(), ours)
    pixels = torch.from_numpy(golden["pixel_values"])
    embeds = torch.from_numpy(golden["embeds"])
    positions = torch.from_numpy(ours)[:, None]
    with torch.no_grad():
        cos, sin = text_model(model).rotary_emb(embeds, positions)
        states, _, _ = gd.run_layers(model, embeds, cos, sin, gd.causal_blocked(manifest["num_layers"], 1, S))
        want = gd.lenses(model, states[-1])[0]
        got = model(input_ids=ids, pixel_values_videos=q.patchify(pixels, 2, 8, 2),
                    video_grid_thw=grid(model, manifest),
                    mm_token_type_ids=(ids == model.config.video_token_id).int() * 2,
                    second_per_grid_ts=torch.tensor([seconds]), output_hidden_states=True)
    for layer in range(manifest["num_layers"]):
        assert_close(got.hidden_states[layer], states[layer], TOL, f"hidden {layer}")
    assert_close(got.logits, want, TOL, "logits")


def test_package_prefill_and_wrong_rules(manifest, meta, golden):
    """The package's graphs reproduce the golden prefill with the golden positions; positions with
    the t and h axes exchanged, or the text after the video placed by transformers 5.23's rule,
    change the prefill hidden states far beyond the tolerance."""
    want = golden["prefill.hidden"][-1]
    pos = golden["position_ids"]
    assert_close(ort_prefill(manifest, golden["embeds"], pos), want, TOL, "prefill with the golden positions")
    swapped = pos[[1, 0, 2]]
    assert not np.array_equal(swapped, pos)
    assert max_err(ort_prefill(manifest, golden["embeds"], swapped), want) > WRONG
    s = meta["video_start"]
    hf_rule = pos.copy()
    hf_rule[:, :, s + 64:] -= 3  # text after the video from s + max(grid_h, grid_w) = s + 4, not s + 7
    assert max_err(ort_prefill(manifest, golden["embeds"], hf_rule), want) > WRONG
    # A uniform shift of every position changes nothing (relative rotary), as a sanity check.
    assert_close(ort_prefill(manifest, golden["embeds"], pos + 5), want, TOL, "uniform shift")


def test_package_graphs_reproduce_every_golden_case(manifest, meta, golden):
    """ONNX Runtime through the package's layer and head graphs gives each case's hidden states and
    logits (masks from golden.yaml's block rules; extend with the stored past K/V)."""
    cos, sin = fc.golden_rope(FIXTURE, manifest, golden)
    seq = gd.Sequence(golden["input_ids"][0].tolist(), meta["video_start"], meta["num_frames"],
                      meta["tokens_per_frame"], meta["seq_len"])
    fc.replay_golden_cases(FIXTURE, manifest, meta, golden, seq, cos, sin)


def test_golden_shapes(manifest, meta, golden):
    fc.check_golden_shapes(manifest, meta, golden)
    L, S, D = manifest["num_layers"], meta["seq_len"], manifest["hidden_size"]
    F, N = manifest["video"]["num_frames"], 64
    assert (meta["num_frames"], meta["tokens_per_frame"]) == (F, 16)
    assert golden["pixel_values"].shape == (F * 2, 3, 64, 64)
    assert golden["video_embeds"].shape == (N, D) and golden["embeds"].shape == (1, S, D)
    assert golden["cos"].shape == (1, S, 16) and golden["prefill.hidden"].shape == (L + 1, 1, S, D)
    assert S == golden["input_ids"].shape[1] - 1 + N  # the golden pixels: one per input frame
