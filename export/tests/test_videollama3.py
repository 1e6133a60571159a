"""The VideoLLaMA3 family: the committed package tests/fixtures/tiny-videollama3 (manifest, graphs,
goldens) against a fresh seed-0 tiny model and transformers' own VideoLLaMA3 code: the per-frame
prompt (`Time t s:` before each frame, `,` between frames) against HF VideoLlama3Processor's own
expansion, the frame patchify against the HF video processor's, the graphs and goldens against HF's
own forward, and the token groups (the per-frame text is in `video`, in no `frame[i]`)."""

import ast
import importlib.util
import textwrap
from dataclasses import replace
from pathlib import Path

import family_checks as fc
import numpy as np
import onnx
import pytest
import torch
import yaml
from conftest import REPO, assert_close, run
from family_checks import TOL
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import golden_generate as gg
from vidflow_export import manifest as mf
from vidflow_export import qwen2_5_vl as q
from vidflow_export import videollama3 as vl
from vidflow_export.hf import text_model, video_processor_settings
from vidflow_export.prompt import render, render_open

FIXTURE = REPO / "tests" / "fixtures" / "tiny-videollama3"


@pytest.fixture(scope="module")
def vl3_hf(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("videollama3_hf")
    vl.build_tiny(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(vl3_hf):
    return vl.load(vl3_hf)


@pytest.fixture(scope="module")
def manifest():
    return fc.read_manifest(FIXTURE)


@pytest.fixture(scope="module")
def tok(manifest):
    return Tokenizer.from_file(str(FIXTURE / manifest["tokenizer"]))


@pytest.fixture(scope="module")
def meta():
    return fc.read_meta(FIXTURE)


@pytest.fixture(scope="module")
def golden():
    return fc.read_golden(FIXTURE)


def seq_from_meta(golden, meta) -> gd.Sequence:
    """The golden's Sequence as golden.yaml describes it (the Rust tests' view): no frame suffix."""
    return fc.per_frame_sequence(golden, meta)


def grid(model, manifest):
    v = manifest["video"]
    return vl.grid_thw(model.config.vision_config, v["num_frames"], v["frame_height"], v["frame_width"])


# ---- manifest and prompt -------------------------------------------------------------------------------

PROMPT_YAML = """prompt:
  system: ''
  user_prefix: "<|im_start|>user\\n"
  video_placeholder: <|video_pad|>
  after_video: "\\n"
  question_prefix: 'Question: '
  options_header: "\\nOptions:\\n"
  option_format: ({label}) {text}
  option_separator: "\\n"
  option_labels: [A, B, C, D, E, F, G, H]
  instruction: "\\nAnswer with the option's letter from the given choices directly and only give the best option."
  assistant_prefix: "<|im_end|>\\n<|im_start|>assistant\\n"
  answer_prefix: ''
  frame_prefix: 'Time {t}s:'
  frame_separator: ','
special_tokens:"""


def test_manifest(manifest):
    text = (FIXTURE / c.MANIFEST_FILE).read_text()
    assert mf.dump_yaml(manifest) == text
    assert PROMPT_YAML in text
    assert list(manifest) == mf.MANIFEST_FIELDS  # family llama: no mrope section
    assert manifest["family"] == "llama" and manifest["name"] == "tiny-videollama3"
    v = manifest["video"]
    assert (v["num_frames"], v["frame_height"], v["frame_width"], v["grid_h"], v["grid_w"]) == (4, 64, 64, 4, 4)
    assert (v["resize_mode"], v["resize_filter"], v["image_mean"], v["image_std"]) == ("stretch", "bicubic",
                                                                                     [0.5] * 3, [0.5] * 3)
    assert "trailing_tokens" not in v
    assert manifest["special_tokens"]["bos_token_id"] is None
    # The frame fields: optional, last, in order, each non-empty when present.
    p = manifest["prompt"]
    assert list(p)[-2:] == ["frame_prefix", "frame_separator"]
    for bad in ({**p, "frame_suffix": ""}, {**{k: x for k, x in p.items() if k != "frame_prefix"},
                                             "frame_prefix": p["frame_prefix"]}):
        with pytest.raises(ValueError, match="prompt"):
            mf.check({**manifest, "prompt": bad})
    with_suffix = {k: x for k, x in p.items() if k != "frame_separator"}
    mf.check({**manifest, "prompt": {**with_suffix, "frame_suffix": "!", "frame_separator": ","}})
    with pytest.raises(ValueError, match="prompt"):  # out of manifest order
        mf.check({**manifest, "prompt": {**p, "frame_suffix": "!"}})
    with pytest.raises(ValueError, match="prompt"):
        mf.check({**manifest, "prompt": {**p, "frame_foo": "x"}})


def test_fresh_build_gives_the_committed_manifest_and_tokenizer(vl3_hf, model, tok):
    assert (FIXTURE / c.TOKENIZER_FILE).read_bytes() == (Path(vl3_hf) / c.TOKENIZER_FILE).read_bytes()
    rebuilt = vl.package_manifest(model, tok, video_processor_settings(vl3_hf), "tiny-videollama3", "float32")
    assert mf.dump_yaml(rebuilt) == (FIXTURE / c.MANIFEST_FILE).read_text()
    settings = video_processor_settings(vl3_hf)
    assert settings["use_token_compression"] is False and settings["temporal_patch_size"] == 1
    attn = text_model(model).layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.q_proj.bias.abs().max() > 0.05


def reference_prompt(question: str, options: list[str], num_frames: int) -> str:
    """The reference's VideoLLaMA3 conversation, written out here independently of prompt.py."""
    video = ",".join(f"Time {float(i):.1f}s:<|video_pad|>" for i in range(num_frames))
    body = f"Question: {question}\nOptions:\n" + "".join(f"({chr(65 + k)}) {o}\n" for k, o in enumerate(options))
    body += "Answer with the option's letter from the given choices directly and only give the best option."
    return f"<|im_start|>user\n{video}\n{body}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("frames", [1, 4, 8])
def test_render_is_the_reference_conversation(manifest, frames):
    p = manifest["prompt"]
    r = render(p, gd.QUESTION, gd.OPTIONS, num_frames=frames)
    assert r.text == reference_prompt(gd.QUESTION, gd.OPTIONS, frames)
    assert len(r.placeholders) == frames
    assert all(r.text[a:b] == "<|video_pad|>" for a, b in r.placeholders)
    a, b = r.video
    assert r.text[a:b].startswith("Time 0.0s:") and r.text[a:b].endswith("<|video_pad|>")
    assert b == r.placeholders[-1][1]
    assert r.text[:a] == "<|im_start|>user\n" and r.text[b:].startswith("\nQuestion: ")
    # Times given explicitly; `{i}` counts from 1.
    timed = render({**p, "frame_prefix": "F{i}@{t}:"}, "q", ["x", "y"], frame_times=[0.25, 1.5])
    assert "F1@0.2:<|video_pad|>,F2@1.5:<|video_pad|>\n" in timed.text
    with pytest.raises(ValueError):
        render(p, "q", ["x", "y"])  # a per-frame prompt needs its frames
    open_text = render_open(p, "Q?", num_frames=2)
    assert open_text == "<|im_start|>user\nTime 0.0s:<|video_pad|>,Time 1.0s:<|video_pad|>\nQ?<|im_end|>\n<|im_start|>assistant\n"


def test_other_families_render_as_before():
    """A spec without frame fields renders one placeholder, whatever the frame arguments."""
    spec = q.prompt_spec()
    base = render(spec, gd.QUESTION, gd.OPTIONS)
    assert base.text.count(q.VIDEO_PAD) == 1 and base.placeholders == [base.video]
    assert render(spec, gd.QUESTION, gd.OPTIONS, num_frames=8).text == base.text
    assert render_open(spec, "Q?", num_frames=8) == render_open(spec, "Q?")


def test_answer_letters_are_one_token(manifest, tok):
    text = render(manifest["prompt"], gd.QUESTION, gd.OPTIONS, num_frames=4).text
    prompt_ids = tok.encode(text, add_special_tokens=False).ids
    answers = []
    for label in manifest["prompt"]["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:len(prompt_ids)] == prompt_ids and len(ids) == len(prompt_ids) + 1, label
        answers.append(ids[-1])
    assert len(set(answers)) == len(answers)


# ---- the key check: HF VideoLlama3Processor's own token expansion ----------------------------------------


class StubVideoProcessor:
    """Stands in for VideoLlama3VideoProcessor (whose module needs torchvision, absent here): returns
    what its `_preprocess` returns for F pre-sampled frames without token compression (patches in its
    layout, `test_patchify_equals_the_processor_layout`; grid; merge size; an all-ones compression
    mask) plus the metadata of pre-sampled frames (no fps: HF falls back to fps = 1)."""

    def __init__(self, patch_size: int):
        self.patch_size = patch_size
        self.merge_size = vl.MERGE_SIZE

    def __call__(self, videos, **kwargs):
        from transformers import BatchFeature
        from transformers.video_utils import VideoMetadata

        video = torch.as_tensor(videos[0])
        F, _, H, W = video.shape
        p = self.patch_size
        return BatchFeature({
            "pixel_values_videos": vl.patchify(video, p),
            "video_grid_thw": torch.tensor([[F, H // p, W // p]]),
            "video_merge_sizes": torch.tensor([self.merge_size]),
            "video_compression_mask": torch.ones(F * (H // p // self.merge_size) * (W // p // self.merge_size),
                                                 dtype=torch.bool),
            "video_metadata": [VideoMetadata(total_num_frames=F, fps=None, frames_indices=list(range(F)))],
        })


def hf_processor(hf_dir: str):
    """transformers' own VideoLlama3Processor (its __call__, replace_video_token and the HF
    tokenizer of the tiny model) with the stub video processor; built without ProcessorMixin's
    sub-processor type checks, which want a real image and video processor."""
    from transformers import PreTrainedTokenizerFast
    from transformers.models.video_llama_3.processing_video_llama_3 import VideoLlama3Processor

    tokenizer = PreTrainedTokenizerFast.from_pretrained(hf_dir)
    proc = VideoLlama3Processor.__new__(VideoLlama3Processor)
    proc.tokenizer = tokenizer
    proc.video_processor = StubVideoProcessor(8)
    proc.chat_template = None
    proc.image_token, proc.video_token = vl.IMAGE_PAD, vl.VIDEO_PAD
    proc.image_token_id = tokenizer.convert_tokens_to_ids(vl.IMAGE_PAD)
    proc.video_token_id = tokenizer.convert_tokens_to_ids(vl.VIDEO_PAD)
    return proc


def hf_ids(proc, spec: dict, frames: int, user_text: str) -> list[int]:
    """input_ids of HF's processor on the reference conversation: one `<|video_pad|>` where the video
    goes (as the chat template writes it), expanded by the processor."""
    text = spec["user_prefix"] + vl.VIDEO_PAD + spec["after_video"] + user_text + spec["assistant_prefix"]
    pixels = torch.zeros(frames, 3, 64, 64)
    with _quiet():
        out = proc(text=[text], videos=[pixels])
    return out["input_ids"][0]


class _quiet:
    def __enter__(self):
        import logging

        self.logger = logging.getLogger("transformers.models.video_llama_3.processing_video_llama_3")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)  # the "Defaulting to fps=1" notice is the point here

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


@pytest.mark.parametrize("frames", [4, 8])
def test_expanded_ids_equal_the_hf_processor(vl3_hf, manifest, tok, frames):
    """vidflow's rendered per-frame prompt, tokenized and expanded (each placeholder to its frame's
    h*w tokens), is token for token what HF's VideoLlama3Processor gives for the same conversation
    (timestamps 0, 1, 2, ... s; no compression)."""
    m = {**manifest, "video": {**manifest["video"], "num_frames": frames}}
    proc = hf_processor(vl3_hf)
    p = m["prompt"]
    seq = gd.build_sequence(m, tok)
    body = render(p, gd.QUESTION, gd.OPTIONS, num_frames=frames).text
    user = body[body.index("Question: "):body.index(p["assistant_prefix"])]
    want = hf_ids(proc, p, frames, user)
    got = gg.expanded_input_ids(seq)
    assert got == want
    assert len(got) == seq.seq_len and got.count(manifest["special_tokens"]["video_token_id"]) == frames * 16
    # The open-ended prompt of generate.json likewise.
    _, open_seq = gg.build_open_sequence(m, tok, gg.QUESTION)
    assert gg.expanded_input_ids(open_seq) == hf_ids(proc, p, frames, gg.QUESTION)


def test_a_wrong_separator_is_not_the_processor(vl3_hf, manifest, tok):
    """The check above notices a missing `,`, another time format or text after each frame."""
    proc = hf_processor(vl3_hf)
    p = manifest["prompt"]
    want = hf_ids(proc, p, 4, gg.QUESTION)
    for wrong in ({**p, "frame_separator": "\n"}, {**p, "frame_prefix": "Time {i}s:"},
                  {**p, "frame_prefix": "Time{t}s:"}, {**p, "frame_suffix": ";"}):
        try:
            _, s = gg.build_open_sequence({**manifest, "prompt": wrong}, tok, gg.QUESTION)
        except ValueError:
            continue
        assert gg.expanded_input_ids(s) != want, wrong


# ---- vision ------------------------------------------------------------------------------------------


def hf_video_patchify():
    """transformers' own VideoLlama3VideoProcessor.patchify (pure torch), read from its source file:
    the processor module needs torchvision to import, which this environment lacks."""
    spec = importlib.util.find_spec("transformers.models.video_llama_3.video_processing_video_llama_3")
    source = open(spec.origin).read()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "VideoLlama3VideoProcessor":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "patchify":
                    scope = {"torch": torch}
                    exec(textwrap.dedent(ast.get_source_segment(source, fn)), scope)
                    return scope["patchify"]
    pytest.skip("VideoLlama3VideoProcessor.patchify not found in transformers")


def test_patchify_equals_the_processor_layout():
    frames = torch.randn(3, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    got = vl.patchify(frames, 8)
    assert got.shape == (3 * 4 * 6, 3 * 8 * 8)
    flat, gt, gh, gw = hf_video_patchify()(None, frames[None], patch_size=8, merge_size=2, temporal_patch_size=1)
    assert (gt, gh, gw) == (3, 4, 6)
    assert torch.equal(got, flat[0])
    # The same layout as Qwen2-VL's with one frame per temporal group.
    assert torch.equal(got, q.patchify(frames, 1, 8, 2))


def test_vision_graph_equals_get_video_features(model, manifest, golden):
    v = manifest["video"]
    path = FIXTURE / manifest["graphs"]["vision"]
    g = onnx.load(str(path))
    dims = [[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in (g.graph.input[0], g.graph.output[0])]
    # Fixed at the manifest's frame count: the vision rotary positions are constants of it.
    assert dims == [[4, 3, 64, 64], [4 * 16, 64]]
    pixels = torch.randn(v["num_frames"], 3, 64, 64, generator=torch.Generator().manual_seed(5))
    got = run(path, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    want = vl.video_features(model, pixels)
    assert got.shape == (4 * 16, 64)
    assert_close(got, want, TOL, "video_embeds")
    assert_close(run(path, pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS], golden["video_embeds"], TOL,
                 "golden video_embeds")
    # Frames are encoded one by one: changing the last frame moves only its 16 tokens.
    moved = pixels.clone()
    moved[-1] += 1.0
    diff = np.abs(run(path, pixel_values=moved)[c.VISION_OUT_EMBEDS] - got).max(axis=1)
    assert diff[:48].max() < 1e-5 and diff[48:].min() > 1e-3


# ---- text graphs and HF's own forward ----------------------------------------------------------------


def test_rope_is_token_index(model, manifest):
    """VideoLlama3Model passes no position ids to its Qwen2 language model: positions are token
    indices, the shared 1D rope graph."""
    pos = torch.randint(0, 400, (2, 7), generator=torch.Generator().manual_seed(0))
    fc.check_rope_graph(model, FIXTURE / manifest["graphs"]["rope"], pos)


@pytest.mark.parametrize("layer_idx,P,Q", [(1, 6, 9), (3, 0, 5)])
def test_layer_graph_equals_hf_layer(model, manifest, layer_idx, P, Q):
    fc.check_layer_graph(model, manifest, FIXTURE, layer_idx, P, Q)


def test_hf_forward_is_the_golden(model, manifest, meta, golden, tok):
    """HF's own forward (input_ids expanded as its processor does, pixel_values_videos, grid, merge
    sizes, no compression mask, no position ids) gives the golden's spliced input, every layer's
    hidden states and the last logits."""
    seq = gd.build_sequence(manifest, tok)
    assert seq.input_ids == golden["input_ids"][0].tolist()
    ids = torch.tensor([gg.expanded_input_ids(seq)])
    pixels = torch.from_numpy(golden["pixel_values"])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values_videos=vl.patchify(pixels, 8), video_grid_thw=grid(model, manifest),
                    video_merge_sizes=vl.merge_sizes(), output_hidden_states=True)
    fc.check_hf_prefill(model, manifest, golden, out)
    assert np.array_equal(golden["position_ids"], np.arange(meta["seq_len"])[None])


def test_package_graphs_reproduce_every_golden_case(manifest, meta, golden):
    """ONNX Runtime through the package's graphs gives each case's hidden states and logits, with the
    masks rebuilt from golden.yaml (frame_starts) and compared edge for edge first."""
    cos, sin = fc.golden_rope(FIXTURE, manifest, golden)
    ids = torch.from_numpy(golden["input_ids"])
    embeds = run(FIXTURE / manifest["graphs"]["embed"], input_ids=ids)[c.EMBED_OUT]
    video = run(FIXTURE / manifest["graphs"]["vision"], pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS]
    spliced = fc.splice_frames(embeds, video, meta["frame_starts"], meta["tokens_per_frame"])
    assert_close(spliced, golden["embeds"], TOL, "spliced embeds")
    fc.replay_golden_cases(FIXTURE, manifest, meta, golden, seq_from_meta(golden, meta), cos, sin)


# ---- token groups ------------------------------------------------------------------------------------


def test_groups(manifest, meta, golden, tok):
    """`video` runs from `Time 0.0s:` to the last frame's last row; the per-frame text is in `video`
    and `video.sep`, in no `frame[i]`; `frame[i]` is exactly frame i's 16 rows."""
    seq = gd.build_sequence(manifest, tok)
    assert seq.frame_starts == meta["frame_starts"] and seq.video_start == meta["video_start"]
    assert seq == seq_from_meta(golden, meta)
    F, n = 4, 16
    texts = fc.spliced_texts(manifest, tok, seq)
    video = seq.group("video")
    assert "".join(texts[k] for k in video if texts[k] is not None) == "Time 0.0s:,Time 1.0s:,Time 2.0s:,Time 3.0s:"
    assert texts[video[0] - 1] == "\n" and texts[video[-1] + 1] == "\n"  # user_prefix's and after_video's
    sep = seq.group("video.sep")
    assert sep == [k for k in video if texts[k] is not None]
    for i in range(F):
        rows = seq.group(f"frame[{i}]")
        assert rows == list(range(meta["frame_starts"][i], meta["frame_starts"][i] + n))
        assert all(texts[k] is None for k in rows) and not set(rows) & set(sep)
    assert sorted(sep + [k for i in range(F) for k in seq.frame(i)]) == video
    assert meta["prefix_len"] == meta["frame_starts"][2] + n // 2  # mid frame 2, as the other families
    # golden.yaml's frame_starts exist only for a per-frame prompt.
    other = yaml.safe_load((REPO / "tests" / "fixtures" / "tiny-qwen2_5_vl" / c.GOLDEN_DIR
                            / c.GOLDEN_YAML_FILE).read_text())
    assert "frame_starts" not in other


def test_wrong_groups_fail(model, manifest, meta, golden, tok):
    """Deliberately wrong groupings give other masks and other knockout results: the frame text
    counted inside the following frame (the reference's grouping), the video group without the
    text between frames, and the frames laid out back to back from video_start (as if no text
    separated them)."""
    seq = gd.build_sequence(manifest, tok)
    wrongs = {
        "text in frame": fc.text_in_frame(seq),  # from the end of the previous frame to this frame's end
        "video without text": fc.VideoWithoutText(**fc.sequence_fields(seq)),
        "frames back to back": replace(seq, frame_starts=None, video_end=None),
    }
    fc.check_wrong_groups_fail(model, manifest, golden, seq, wrongs)


# ---- goldens -------------------------------------------------------------------------------------------


def test_golden_shapes(manifest, meta, golden):
    fc.check_golden_shapes(manifest, meta, golden)
    S, D = meta["seq_len"], manifest["hidden_size"]
    F, N = manifest["video"]["num_frames"], 64
    assert list(meta)[:7] == ["num_layers", "seq_len", "video_start", "tokens_per_frame", "num_frames",
                              "frame_starts", "prefix_len"]
    assert (meta["num_frames"], meta["tokens_per_frame"]) == (F, 16)
    assert golden["pixel_values"].shape == (F, 3, 64, 64)
    assert golden["video_embeds"].shape == (N, D) and golden["embeds"].shape == (1, S, D)
    assert S == golden["input_ids"].shape[1] - F + N  # one placeholder per frame


def test_generate_golden_regenerates(vl3_hf, model):
    fc.check_generate_golden(vl3_hf, FIXTURE, model, "HF VideoLlama3ForConditionalGeneration.generate")
