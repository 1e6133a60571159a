"""The LLaVA-OneVision family: the committed package tests/fixtures/tiny-llava_onevision (manifest,
graphs, goldens) against a fresh seed-0 tiny model, the trailing newline embedding
(`video.trailing_tokens`) in the vision graph and the golden sequence, and the package's prefill
against the HF model's own full forward on the processor-expanded input."""

import json
from pathlib import Path

import family_checks as fc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import REPO, assert_close, max_err, run
from onnx import numpy_helper
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import llava_onevision as lo
from vidflow_export import manifest as mf
from vidflow_export.export import export_package
from vidflow_export.hf import text_model, video_processor_settings
from vidflow_export.prompt import render

FIXTURE = REPO / "tests" / "fixtures" / "tiny-llava_onevision"
OTHER_FIXTURES = [REPO / "tests" / "fixtures" / "tiny", REPO / "tests" / "fixtures" / "tiny-qwen2_5_vl"]
TOL = 1e-4
# A misplaced or missing newline must move the last logits by far more than the graph contract.
WRONG = 1e-2
FRAMES, HW, TRAILING = 4, 16, 1
N_VIDEO = FRAMES * HW + TRAILING


@pytest.fixture(scope="module")
def ov_hf(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("llava_onevision_hf")
    lo.build_tiny(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(ov_hf):
    return lo.load(ov_hf)


@pytest.fixture(scope="module")
def manifest():
    return fc.read_manifest(FIXTURE)


@pytest.fixture(scope="module")
def meta():
    return fc.read_meta(FIXTURE)


@pytest.fixture(scope="module")
def golden():
    return fc.read_golden(FIXTURE)


def golden_sequence(golden, meta) -> gd.Sequence:
    return gd.Sequence(golden["input_ids"][0].tolist(), meta["video_start"], meta["num_frames"],
                       meta["tokens_per_frame"], meta["seq_len"], meta["trailing_tokens"])


def expanded_ids(golden, meta, manifest) -> torch.Tensor:
    """input_ids [1,S] with the placeholder expanded as HF's LlavaOnevisionProcessor does
    (`replace_video_token`: num_frames * pooled_h * pooled_w + 1 video tokens)."""
    ids = golden["input_ids"][0].tolist()
    v = meta["video_start"]
    n = meta["num_frames"] * meta["tokens_per_frame"] + 1
    return torch.tensor([ids[:v] + [manifest["special_tokens"]["video_token_id"]] * n + ids[v + 1:]])


def ort_last_logits(manifest, embeds: np.ndarray) -> np.ndarray:
    """The package's rope graph (token-index positions), every layer graph (plain causal) and
    head_norm on [1,S,D] -> logits at the last position [1,V]."""
    positions = np.arange(embeds.shape[1], dtype=np.int64)[None]
    h = fc.ort_causal_prefill(FIXTURE, manifest, embeds, positions)
    return run(FIXTURE / manifest["graphs"]["head_norm"], hidden=h[:, -1:])[c.HEAD_OUT_LOGITS][:, 0]


def splice(text_embeds: np.ndarray, video_start: int, video: np.ndarray) -> np.ndarray:
    """[1,T,D] text embeddings with the placeholder row at `video_start` replaced by `video` [N,D]."""
    return np.concatenate((text_embeds[:, :video_start], video[None], text_embeds[:, video_start + 1:]), axis=1)


# ---- manifest and prompt -------------------------------------------------------------------------------


def test_manifest_round_trip_and_trailing_tokens(manifest):
    text = (FIXTURE / c.MANIFEST_FILE).read_text()
    assert mf.dump_yaml(manifest) == text
    assert list(manifest) == mf.MANIFEST_FIELDS
    assert manifest["family"] == "llama" and manifest["name"] == "tiny-llava_onevision"
    v = manifest["video"]
    assert list(v) == mf.VIDEO_FIELDS + ["trailing_tokens"] and v["trailing_tokens"] == TRAILING
    assert "  sampling: segment_middle\n  trailing_tokens: 1\nprompt:\n" in text
    assert (v["num_frames"], v["frame_height"], v["frame_width"], v["grid_h"], v["grid_w"]) == (4, 64, 64, 4, 4)
    assert (v["resize_mode"], v["resize_filter"], v["image_mean"], v["image_std"]) == \
        ("stretch", "bicubic", [0.5] * 3, [0.5] * 3)
    assert manifest["special_tokens"]["bos_token_id"] is None

    # trailing_tokens: only as the video section's last field, only an integer > 0.
    def video(**changes):
        return {**manifest, "video": {**{k: x for k, x in v.items() if k != "trailing_tokens"}, **changes}}

    mf.check(video())  # absent = 0
    for bad in (0, -1, True, 1.0, "1", None):
        with pytest.raises(ValueError, match="trailing_tokens"):
            mf.check(video(trailing_tokens=bad))
    first = {"trailing_tokens": 1, **{k: x for k, x in v.items() if k != "trailing_tokens"}}
    keys = list(video()["video"])
    middle = dict([*[(k, v[k]) for k in keys[:10]], ("trailing_tokens", 1), *[(k, v[k]) for k in keys[10:]]])
    for misplaced in (first, middle):
        with pytest.raises(ValueError, match="video"):
            mf.check({**manifest, "video": misplaced})
    with pytest.raises(ValueError, match="video"):
        mf.check(video(trailing_tokens=1, extra=1))
    # The other fixtures carry no trailing_tokens, in model.yaml or golden.yaml.
    for other in OTHER_FIXTURES:
        m = mf.read(str(other / c.MANIFEST_FILE))
        assert "trailing_tokens" not in m["video"]
        assert "trailing_tokens" not in (other / c.GOLDEN_DIR / c.GOLDEN_YAML_FILE).read_text()


def test_fresh_build_gives_the_committed_manifest_and_tokenizer(ov_hf, model, manifest):
    assert (FIXTURE / c.TOKENIZER_FILE).read_bytes() == (Path(ov_hf) / c.TOKENIZER_FILE).read_bytes()
    tok = Tokenizer.from_file(str(FIXTURE / c.TOKENIZER_FILE))
    rebuilt = lo.package_manifest(model, tok, video_processor_settings(ov_hf), "tiny-llava_onevision", "float32")
    assert mf.dump_yaml(rebuilt) == (FIXTURE / c.MANIFEST_FILE).read_text()
    cfg = model.config
    assert json.loads((Path(ov_hf) / "config.json").read_text())["architectures"] == [lo.ARCHITECTURE]
    assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (-1, "full")
    assert cfg.vision_config.model_type == "siglip_vision_model" and not cfg.vision_config.vision_use_head
    assert cfg.text_config.model_type == "qwen2" and not cfg.tie_word_embeddings
    # q/k/v carry biases (Qwen2), o_proj none: the extend-form layer takes them with the Linear modules.
    attn = text_model(model).layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.k_proj.bias is not None and attn.v_proj.bias is not None
    assert attn.o_proj.bias is None and attn.q_proj.bias.abs().max() > 0.05
    assert model.model.multi_modal_projector.linear_1.bias.abs().max() > 0.05
    # The newline is as large as a typical video embedding.
    feats = lo.video_features(model, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    ratio = float(model.model.image_newline.detach().norm() / feats[:-1].norm(dim=-1).mean())
    assert 0.5 < ratio < 2


def test_unknown_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"]}))
    with pytest.raises(ValueError, match="FooForCausalLM.*LlavaOnevisionForConditionalGeneration"):
        export_package(str(tmp_path), str(tmp_path / "pkg"))


def conv_qwen_prompt(question: str, options: list[str]) -> str:
    """Written from the LLaVA-NeXT repo's conv_qwen (SeparatorStyle.CHATML, sep `<|im_end|>`) with
    lmms-eval's llava_onevision user message (visual token, "\\n", the TVBench text)."""
    system, sep = "<|im_start|>system\nYou are a helpful assistant.", "<|im_end|>"
    user = "<video>\n" + question + "\n" + "\n".join(f"{'ABCDEFGH'[i]}. {o}" for i, o in enumerate(options)) \
        + "\nAnswer with the option letter only."
    return system + sep + "\n" + "<|im_start|>user" + "\n" + user + sep + "\n" + "<|im_start|>assistant" + "\n"


def test_prompt_tokens(manifest, meta, golden):
    tok = Tokenizer.from_file(str(FIXTURE / manifest["tokenizer"]))
    p, special = manifest["prompt"], manifest["special_tokens"]
    text = render(p, gd.QUESTION, gd.OPTIONS).text
    assert text == conv_qwen_prompt(gd.QUESTION, gd.OPTIONS)
    assert tok.encode(p["video_placeholder"], add_special_tokens=False).ids == [special["video_token_id"]]
    assert tok.id_to_token(special["eos_token_id"]) == lo.IM_END
    assert tok.id_to_token(special["pad_token_id"]) == lo.ENDOFTEXT
    seq = gd.build_sequence(manifest, tok)
    assert seq.input_ids == golden["input_ids"][0].tolist() and seq.video_start == meta["video_start"]
    assert seq.trailing_tokens == TRAILING and seq.seq_len == len(seq.input_ids) - 1 + N_VIDEO
    # Every option label is one token right after the prompt (answer_prefix is empty).
    prompt_ids = tok.encode(text, add_special_tokens=False).ids
    answers = []
    for label in p["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:len(prompt_ids)] == prompt_ids and len(ids) == len(prompt_ids) + 1, label
        assert tok.decode(ids[-1:]) == label
        answers.append(ids[-1])
    assert len(set(answers)) == len(answers)


# ---- vision ------------------------------------------------------------------------------------------


def test_vision_graph_equals_get_video_features(model, manifest, golden):
    path = FIXTURE / manifest["graphs"]["vision"]
    g = onnx.load(str(path))
    dims = [[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in (g.graph.input[0], g.graph.output[0])]
    assert dims == [["F", 3, 64, 64], ["N", 64]]
    newline = model.model.image_newline.detach().numpy()
    gen = torch.Generator().manual_seed(5)
    for F in (4, 2):  # the frame axis is dynamic
        pixels = torch.randn(F, 3, 64, 64, generator=gen)
        got = run(path, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
        want = lo.video_features(model, pixels)
        assert got.shape == (F * HW + TRAILING, 64)
        assert_close(got, want, TOL, f"video_embeds F={F}")
        assert_close(got[-1], newline, TOL, f"newline row F={F}")
    assert_close(run(path, pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS], golden["video_embeds"], TOL,
                 "golden video_embeds")
    # Frames matter per frame: changing the last frame moves only its 16 tokens, not the newline.
    moved = pixels.clone()
    moved[-1] += 1.0
    diff = np.abs(run(path, pixel_values=moved)[c.VISION_OUT_EMBEDS] - got).max(axis=1)
    assert diff[:HW].max() < 1e-5 and diff[HW:2 * HW].min() > 1e-3 and diff[-1] == 0
    # Changing the graph's image_newline changes only the last row.
    inits = [i for i in g.graph.initializer
             if numpy_helper.to_array(i).size == newline.size and np.array_equal(numpy_helper.to_array(i).ravel(), newline)]
    assert len(inits) == 1
    init = inits[0]
    changed = numpy_helper.to_array(init) + 0.5
    init.CopyFrom(numpy_helper.from_array(changed.astype(np.float32), init.name))
    sess = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {c.VISION_IN_PIXELS: pixels.numpy()})[0]
    assert np.array_equal(out[:-1], got[:-1])
    assert_close(out[-1], newline + 0.5, TOL, "changed newline")


# ---- rope and layers -----------------------------------------------------------------------------------


def test_rope_graph_equals_rotary_module(model, manifest):
    path = FIXTURE / manifest["graphs"]["rope"]
    g = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim]
    assert g.graph.input[0].name == c.ROPE_IN_POSITIONS and dims == ["B", "T"]
    pos = torch.randint(0, 500, (2, 7), generator=torch.Generator().manual_seed(0))
    out = fc.check_rope_graph(model, path, pos)
    # Independent of HF: plain RoPE, theta 10000, head_dim 16.
    inv = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    angles = pos.numpy()[..., None] * inv
    angles = np.concatenate((angles, angles), axis=-1)
    assert_close(out[c.ROPE_OUT_COS], np.cos(angles), TOL, "cos vs formula")
    assert_close(out[c.ROPE_OUT_SIN], np.sin(angles), TOL, "sin vs formula")


@pytest.mark.parametrize("layer_idx,P,Q", [(1, 6, 9), (3, 0, 5)])
def test_layer_graph_equals_hf_layer(model, manifest, layer_idx, P, Q):
    fc.check_layer_graph(model, manifest, FIXTURE, layer_idx, P, Q)


# ---- the golden sequence and prefill -------------------------------------------------------------------


def test_golden_token_layout(manifest, meta, golden):
    """video = the 64 frame tokens and the newline after them; frame[i] = frame i's 16 tokens; the
    newline is in `video` (so video -> last blocks it) but in no frame (cross-frame leaves it)."""
    seq = golden_sequence(golden, meta)
    s, S = meta["video_start"], meta["seq_len"]
    assert meta["trailing_tokens"] == TRAILING and S == golden["input_ids"].shape[1] - 1 + N_VIDEO
    newline = s + FRAMES * HW
    assert seq.group("video") == list(range(s, newline + 1))
    assert [seq.group(f"frame[{i}]") for i in range(FRAMES)] == [list(range(s + i * HW, s + (i + 1) * HW))
                                                                  for i in range(FRAMES)]
    assert all(newline not in seq.group(f"frame[{i}]") for i in range(FRAMES))
    # The embeddings: the golden video embeddings at s..newline, the newline last.
    assert np.array_equal(golden["embeds"][0, s:newline + 1], golden["video_embeds"])
    knock = golden["knockout.blocked"][:, 0]  # [L,S,S]
    for layer in (1, 2):
        assert knock[layer, S - 1, s:newline + 1].all()  # video -> last, newline included
        assert not knock[layer, newline, :newline + 1].any()  # the newline still reads every frame
        assert knock[layer, s + HW, s:s + HW].all()  # frame 1 does not read frame 0
    for layer in (0, 3):  # outside the block layers only causality
        assert not knock[layer, S - 1].any()


def test_package_graphs_reproduce_every_golden_case(manifest, meta, golden):
    """ONNX Runtime through the package's layer and head graphs gives each case's hidden states and
    logits (masks from golden.yaml's block rules; extend with the stored past K/V)."""
    assert np.array_equal(golden["position_ids"], np.arange(meta["seq_len"])[None])
    cos, sin = fc.golden_rope(FIXTURE, manifest, golden)
    fc.replay_golden_cases(FIXTURE, manifest, meta, golden, golden_sequence(golden, meta), cos, sin)


def test_package_prefill_is_the_hf_forward_and_the_newline_goes_last(model, manifest, meta, golden):
    """The package's graphs (embed, vision, splice at the placeholder, rope, layers, head_norm) on
    the golden prompt and frames give the HF model's own full forward (input_ids expanded as the
    processor does, pixel_values_videos) within 1e-4 in the last logits; so does the golden prefill.
    The newline spliced before the frames instead, or dropped, is far off."""
    ids = golden["input_ids"]
    pixels = golden["pixel_values"]
    s = meta["video_start"]
    text = run(FIXTURE / manifest["graphs"]["embed"], input_ids=ids)[c.EMBED_OUT]
    video = run(FIXTURE / manifest["graphs"]["vision"], pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    assert video.shape == (N_VIDEO, manifest["hidden_size"])
    expanded = expanded_ids(golden, meta, manifest)
    with torch.no_grad():
        hf = model(input_ids=expanded, pixel_values_videos=torch.from_numpy(pixels)[None], output_hidden_states=True)
        # HF itself wants the newline's video token: F*h*w placeholders alone are refused.
        with pytest.raises(Exception, match="Video features and video tokens do not match"):
            model(input_ids=torch.cat((expanded[:, :s], expanded[:, s + 1:]), dim=1),
                  pixel_values_videos=torch.from_numpy(pixels)[None])
    want = hf.logits[:, -1].numpy()
    assert hf.logits.shape[1] == meta["seq_len"]
    ours = ort_last_logits(manifest, splice(text, s, video))
    assert_close(ours, want, TOL, "package prefill vs HF forward")
    assert_close(golden["prefill.logits_last"], want, TOL, "golden prefill vs HF forward")
    for layer in range(manifest["num_layers"]):  # HF's last entry is after the final norm
        assert_close(hf.hidden_states[layer], golden["prefill.hidden"][layer], TOL, f"hidden {layer}")

    newline_first = np.concatenate((video[-1:], video[:-1]))
    assert max_err(ort_last_logits(manifest, splice(text, s, newline_first)), want) > WRONG
    assert max_err(ort_last_logits(manifest, splice(text, s, video[:-1])), want) > WRONG


def test_golden_shapes(manifest, meta, golden):
    fc.check_golden_shapes(manifest, meta, golden)
    L, S, D, P = manifest["num_layers"], meta["seq_len"], manifest["hidden_size"], meta["prefix_len"]
    assert list(meta)[:7] == ["num_layers", "seq_len", "video_start", "tokens_per_frame", "num_frames",
                              "trailing_tokens", "prefix_len"]
    assert (meta["num_frames"], meta["tokens_per_frame"]) == (FRAMES, HW)
    assert golden["pixel_values"].shape == (FRAMES, 3, 64, 64)
    assert golden["video_embeds"].shape == (N_VIDEO, D) and golden["embeds"].shape == (1, S, D)
    assert golden["cos"].shape == (1, S, 16) and golden["prefill.hidden"].shape == (L + 1, 1, S, D)
    assert P == meta["video_start"] + 2 * HW + HW // 2
