"""transformers' native InternVL family (`InternVLForConditionalGeneration`): the committed package
tests/fixtures/tiny-internvl_hf (manifest, graphs, goldens) against a fresh seed-0 tiny model and
transformers' own InternVL code: the per-frame prompt (`Frame{i}: <img>` before each frame's tokens,
`</img>` after, `\\n` between frames) against HF InternVLProcessor's own video expansion, the graphs
and goldens against HF's own forward, and the token groups (the per-frame text is in `video`, in no
`frame[i]`)."""

from dataclasses import replace
from pathlib import Path

import family_checks as fc
import numpy as np
import onnx
import pytest
import torch
from conftest import REPO, assert_close, run
from family_checks import TOL
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import golden_generate as gg
from vidflow_export import internvl_hf as iv
from vidflow_export import manifest as mf
from vidflow_export.hf import architecture, text_model, video_processor_settings
from vidflow_export.prompt import render, render_open

FIXTURE = REPO / "tests" / "fixtures" / "tiny-internvl_hf"
N = 16  # tokens per frame: 64 px / patch 8 = 8x8 patches, pixel shuffle 0.5 -> 4x4


@pytest.fixture(scope="module")
def iv_hf(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("internvl_hf")
    iv.build_tiny(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(iv_hf):
    return iv.load(iv_hf)


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
    """The golden's Sequence as golden.yaml describes it (the Rust tests' view): the video group ends
    with the last frame's `</img>`, one position after its last row."""
    return fc.per_frame_sequence(golden, meta, after_last_frame=1)


# ---- manifest and prompt -------------------------------------------------------------------------------

PROMPT_YAML = """prompt:
  system: "<|im_start|>system\\n你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。<|im_end|>\\n"
  user_prefix: "<|im_start|>user\\n"
  video_placeholder: <IMG_CONTEXT>
  after_video: "\\n"
  question_prefix: ''
  options_header: "\\n"
  option_format: '{label}. {text}'
  option_separator: "\\n"
  option_labels: [A, B, C, D, E, F, G, H]
  instruction: "\\nAnswer with the option letter only."
  assistant_prefix: "<|im_end|>\\n<|im_start|>assistant\\n"
  answer_prefix: ''
  frame_prefix: 'Frame{i}: <img>'
  frame_suffix: </img>
  frame_separator: "\\n"
special_tokens:"""


def test_manifest(manifest):
    text = (FIXTURE / c.MANIFEST_FILE).read_text()
    assert mf.dump_yaml(manifest) == text
    assert PROMPT_YAML in text
    assert list(manifest) == mf.MANIFEST_FIELDS  # family llama: no mrope section
    assert manifest["family"] == "llama" and manifest["name"] == "tiny-internvl_hf"
    v = manifest["video"]
    assert (v["num_frames"], v["frame_height"], v["frame_width"], v["grid_h"], v["grid_w"]) == (4, 64, 64, 4, 4)
    assert (v["resize_mode"], v["resize_filter"], v["image_mean"], v["image_std"]) == (
        "stretch", "bicubic", iv.IMAGENET_MEAN, iv.IMAGENET_STD)
    assert "trailing_tokens" not in v
    assert manifest["special_tokens"]["bos_token_id"] is None
    assert list(manifest["prompt"])[-3:] == ["frame_prefix", "frame_suffix", "frame_separator"]


def test_fresh_build_gives_the_committed_manifest_and_tokenizer(iv_hf, model, tok):
    assert architecture(iv_hf) == iv.ARCHITECTURE
    assert (FIXTURE / c.TOKENIZER_FILE).read_bytes() == (Path(iv_hf) / c.TOKENIZER_FILE).read_bytes()
    rebuilt = iv.package_manifest(model, tok, video_processor_settings(iv_hf), "tiny-internvl_hf", "float32")
    assert mf.dump_yaml(rebuilt) == (FIXTURE / c.MANIFEST_FILE).read_text()
    cfg = model.config
    assert cfg.image_seq_length == N and cfg.downsample_ratio == 0.5
    assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (-1, "default")
    assert cfg.text_config.model_type == "qwen2"
    attn = text_model(model).layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.q_proj.bias.abs().max() > 0.05
    # A config whose image_seq_length is not the tokens per tile is refused.
    bad = type(cfg).from_dict({**cfg.to_dict(), "image_seq_length": 256})
    with pytest.raises(ValueError, match="image_seq_length"):
        iv.check_model(bad)


def reference_prompt(question: str, options: list[str], num_frames: int) -> str:
    """The InternVL3 conversation, written out here independently of prompt.py: the default system
    message, the video as InternVLProcessor writes it (before expansion of `<IMG_CONTEXT>`), the
    TVBench-style question."""
    system = ("<|im_start|>system\n你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位"
              "联合开发的多模态大语言模型。<|im_end|>\n")
    video = "\n".join(f"Frame{i + 1}: <img><IMG_CONTEXT></img>" for i in range(num_frames))
    body = question + "\n" + "\n".join(f"{chr(65 + k)}. {o}" for k, o in enumerate(options))
    body += "\nAnswer with the option letter only."
    return f"{system}<|im_start|>user\n{video}\n{body}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("frames", [1, 4, 8])
def test_render_is_the_reference_conversation(manifest, frames):
    p = manifest["prompt"]
    r = render(p, gd.QUESTION, gd.OPTIONS, num_frames=frames)
    assert r.text == reference_prompt(gd.QUESTION, gd.OPTIONS, frames)
    assert len(r.placeholders) == frames
    assert all(r.text[a:b] == "<IMG_CONTEXT>" for a, b in r.placeholders)
    a, b = r.video
    assert r.text[a:b].startswith("Frame1: <img>") and r.text[a:b].endswith("<IMG_CONTEXT></img>")
    assert b == r.placeholders[-1][1] + len("</img>")
    assert r.text[:a].endswith("<|im_start|>user\n") and r.text[b:].startswith("\n" + gd.QUESTION)
    open_text = render_open(p, "Q?", num_frames=2)
    assert open_text.endswith("<|im_start|>user\nFrame1: <img><IMG_CONTEXT></img>\nFrame2: <img><IMG_CONTEXT></img>\n"
                              "Q?<|im_end|>\n<|im_start|>assistant\n")


def test_answer_letters_are_one_token(manifest, tok):
    text = render(manifest["prompt"], gd.QUESTION, gd.OPTIONS, num_frames=4).text
    prompt_ids = tok.encode(text, add_special_tokens=False).ids
    answers = []
    for label in manifest["prompt"]["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:len(prompt_ids)] == prompt_ids and len(ids) == len(prompt_ids) + 1, label
        answers.append(ids[-1])
    assert len(set(answers)) == len(answers)


# ---- the key check: HF InternVLProcessor's own video expansion ------------------------------------------

# HF's chat template of the InternVL `-hf` checkpoints (transformers' convert_internvl_weights_to_hf.py):
# a video content item is written `<video>\n`, which the processor replaces by the frames. It adds no
# system turn; the system message is passed as the first message.
HF_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)


class StubVideoProcessor:
    """Stands in for InternVLVideoProcessor (whose module needs torchvision, absent here): returns what
    its `_preprocess` returns for one video of pre-sampled frames already at the tile size (resize the
    identity): `pixel_values_videos` [1,F,3,H,W]."""

    def __call__(self, videos, **kwargs):
        from transformers import BatchFeature

        return BatchFeature({"pixel_values_videos": torch.as_tensor(videos[0])[None]})


def hf_processor(hf_dir: str, image_seq_length: int = N):
    """transformers' own InternVLProcessor (its __init__'s token attributes from the tiny model's HF
    tokenizer config, its __call__, replace_video_token and the tokenizer) with the stub video
    processor; ProcessorMixin.__init__'s sub-processor type checks, which want a real image and
    video processor, are skipped."""
    from transformers import PreTrainedTokenizerFast
    from transformers.models.internvl.processing_internvl import InternVLProcessor
    from transformers.processing_utils import ProcessorMixin

    tokenizer = PreTrainedTokenizerFast.from_pretrained(hf_dir)

    def bare_init(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kw):
        self.tokenizer, self.video_processor, self.chat_template = tokenizer, video_processor, chat_template

    original = ProcessorMixin.__init__
    ProcessorMixin.__init__ = bare_init
    try:
        proc = InternVLProcessor(tokenizer=tokenizer, video_processor=StubVideoProcessor(),
                                 image_seq_length=image_seq_length, chat_template=HF_CHAT_TEMPLATE)
    finally:
        ProcessorMixin.__init__ = original
    assert (proc.image_token, proc.video_token) == (iv.IMG_CONTEXT, iv.VIDEO)
    assert (proc.start_image_token, proc.end_image_token) == (iv.IMG_START, iv.IMG_END)
    return proc


def hf_text(proc, user_text: str) -> str:
    """HF's chat template on the reference conversation: InternVL's system message, then the video and
    the user text in one user turn."""
    messages = [{"role": "system", "content": iv.SYSTEM_MESSAGE},
                {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": user_text}]}]
    return proc.tokenizer.apply_chat_template(messages, chat_template=HF_CHAT_TEMPLATE, tokenize=False,
                                              add_generation_prompt=True)


def hf_inputs(proc, frames, user_text: str):
    """The processor's input_ids and pixel_values for `frames` [F,3,H,W] (already normalized)."""
    out = proc(text=[hf_text(proc, user_text)], videos=[frames])
    return list(out["input_ids"][0]), out["pixel_values"]


def user_text(manifest, frames: int) -> str:
    """The user text after the video (the question, options and instruction) of the rendered prompt."""
    p = manifest["prompt"]
    body = render(p, gd.QUESTION, gd.OPTIONS, num_frames=frames).text
    start = body.index(p["after_video"] + gd.QUESTION) + len(p["after_video"])
    return body[start:body.index(p["assistant_prefix"])]


@pytest.mark.parametrize("frames", [4, 8])
def test_expanded_ids_equal_the_hf_processor(iv_hf, manifest, tok, frames):
    """vidflow's rendered per-frame prompt, tokenized and expanded (each placeholder to its frame's
    h*w tokens), is token for token what HF's InternVLProcessor gives for the same conversation through
    HF's chat template; the processor's pixel_values are the frames themselves."""
    m = {**manifest, "video": {**manifest["video"], "num_frames": frames}}
    proc = hf_processor(iv_hf)
    seq = gd.build_sequence(m, tok)
    assert render(m["prompt"], gd.QUESTION, gd.OPTIONS, num_frames=frames).text == hf_text(
        proc, user_text(m, frames)).replace(iv.VIDEO, "\n".join(f"Frame{i + 1}: <img><IMG_CONTEXT></img>"
                                                                for i in range(frames)))
    pixels = torch.randn(frames, 3, 64, 64, generator=torch.Generator().manual_seed(frames))
    want, pixel_values = hf_inputs(proc, pixels, user_text(m, frames))
    got = gg.expanded_input_ids(seq)
    assert got == want
    assert torch.equal(pixel_values, pixels)
    assert len(got) == seq.seq_len and got.count(manifest["special_tokens"]["video_token_id"]) == frames * N
    # The open-ended prompt of generate.json likewise.
    _, open_seq = gg.build_open_sequence(m, tok, gg.QUESTION)
    assert gg.expanded_input_ids(open_seq) == hf_inputs(proc, pixels, gg.QUESTION)[0]


def test_a_wrong_frame_text_is_not_the_processor(iv_hf, manifest, tok):
    """The check above notices a missing `</img>`, a missing `<img>`, another separator, another frame
    numbering or a time instead of the frame number."""
    proc = hf_processor(iv_hf)
    p = manifest["prompt"]
    want = hf_inputs(proc, torch.zeros(4, 3, 64, 64), gg.QUESTION)[0]
    _, right = gg.build_open_sequence(manifest, tok, gg.QUESTION)
    assert gg.expanded_input_ids(right) == want
    without_suffix = {k: x for k, x in p.items() if k != "frame_suffix"}
    wrongs = [without_suffix, {**p, "frame_prefix": "Frame{i}: "}, {**p, "frame_separator": ","},
              {**without_suffix, "frame_separator": "</img>\n"},  # `</img>` after all frames but the last
              {**without_suffix, "frame_separator": "</img>"},
              {**p, "frame_prefix": "Frame{t}: <img>"}, {**p, "frame_prefix": "Frame{i}:<img>"},
              {**p, "frame_prefix": "Frame {i}: <img>"}]
    for wrong in wrongs:
        try:
            _, s = gg.build_open_sequence({**manifest, "prompt": wrong}, tok, gg.QUESTION)
        except ValueError:
            continue
        assert gg.expanded_input_ids(s) != want, wrong


# ---- vision ------------------------------------------------------------------------------------------


def test_vision_graph_equals_get_image_features(model, manifest, golden):
    path = FIXTURE / manifest["graphs"]["vision"]
    g = onnx.load(str(path))
    dims = [[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in (g.graph.input[0], g.graph.output[0])]
    assert dims[0] == ["F", 3, 64, 64] and dims[1] == ["N", 64]
    # The frame axis is free: each frame is one image through the model's own get_image_features.
    for frames in (4, 3, 8):
        pixels = torch.randn(frames, 3, 64, 64, generator=torch.Generator().manual_seed(frames))
        got = run(path, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
        with torch.no_grad():
            want = model.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
        assert want.shape == (frames, N, 64)
        assert_close(got, want.flatten(0, 1), TOL, f"video_embeds ({frames} frames)")
        assert_close(got, iv.video_features(model, pixels), TOL, "video_features")
    assert_close(run(path, pixel_values=golden["pixel_values"])[c.VISION_OUT_EMBEDS], golden["video_embeds"], TOL,
                 "golden video_embeds")
    # Frames are encoded one by one: changing the last frame moves only its 16 tokens.
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    moved = pixels.clone()
    moved[-1] += 1.0
    base = run(path, pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    diff = np.abs(run(path, pixel_values=moved)[c.VISION_OUT_EMBEDS] - base).max(axis=1)
    assert diff[:3 * N].max() < 1e-5 and diff[3 * N:].min() > 1e-3


# ---- text graphs and HF's own forward ----------------------------------------------------------------


def test_rope_is_token_index(model, manifest):
    """InternVLModel passes no position ids of its own to its Qwen2 language model: positions are
    token indices, the shared 1D rope graph."""
    pos = torch.randint(0, 400, (2, 7), generator=torch.Generator().manual_seed(0))
    fc.check_rope_graph(model, FIXTURE / manifest["graphs"]["rope"], pos)


@pytest.mark.parametrize("layer_idx,P,Q", [(1, 6, 9), (3, 0, 5)])
def test_layer_graph_equals_hf_layer(model, manifest, layer_idx, P, Q):
    fc.check_layer_graph(model, manifest, FIXTURE, layer_idx, P, Q)


def test_hf_forward_is_the_golden(iv_hf, model, manifest, meta, golden, tok):
    """HF's own forward on the HF processor's inputs (input_ids expanded by InternVLProcessor,
    pixel_values, no position ids) gives the golden's spliced input, every layer's hidden states and
    the last logits."""
    seq = gd.build_sequence(manifest, tok)
    assert seq.input_ids == golden["input_ids"][0].tolist()
    pixels = torch.from_numpy(golden["pixel_values"])
    ids, pixel_values = hf_inputs(hf_processor(iv_hf), pixels, user_text(manifest, 4))
    assert ids == gg.expanded_input_ids(seq)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, output_hidden_states=True)
    fc.check_hf_prefill(model, manifest, golden, out)
    assert np.array_equal(golden["position_ids"], np.arange(meta["seq_len"])[None])


def test_package_graphs_equal_hf_forward(iv_hf, model, manifest, golden, tok):
    """ONNX Runtime through the package's graphs (vision, embed, rope, layers, head) on the golden's
    ids and frames gives HF's own full forward's logits at every position."""
    seq = gd.build_sequence(manifest, tok)
    pixels = torch.from_numpy(golden["pixel_values"])
    ids = gg.expanded_input_ids(seq)
    with torch.no_grad():
        want = model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits
    embeds = run(FIXTURE / manifest["graphs"]["embed"], input_ids=torch.tensor([seq.input_ids]))[c.EMBED_OUT]
    video = run(FIXTURE / manifest["graphs"]["vision"], pixel_values=pixels)[c.VISION_OUT_EMBEDS]
    spliced = fc.splice_frames(embeds, video, seq.frame_starts, N)
    h = fc.ort_causal_prefill(FIXTURE, manifest, spliced, np.arange(spliced.shape[1])[None])
    logits = run(FIXTURE / manifest["graphs"]["head_norm"], hidden=h)[c.HEAD_OUT_LOGITS]
    assert_close(logits, want, TOL, "logits (every position)")


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
    """`video` runs from `Frame1: <img>` to the last frame's `</img>`; the per-frame text is in `video`
    and `video.sep`, in no `frame[i]`; `frame[i]` is exactly frame i's 16 rows."""
    seq = gd.build_sequence(manifest, tok)
    assert seq.frame_starts == meta["frame_starts"] and seq.video_start == meta["video_start"]
    assert seq == seq_from_meta(golden, meta)
    texts = fc.spliced_texts(manifest, tok, seq)
    video = seq.group("video")
    assert "".join(texts[k] for k in video if texts[k] is not None) == "\n".join(
        f"Frame{i}: <img></img>" for i in range(1, 5))
    assert texts[video[0]] == "Frame" and texts[video[-1]] == "</img>"
    assert texts[video[0] - 1] == "\n" and texts[video[-1] + 1] == "\n"  # user_prefix's and after_video's
    sep = seq.group("video.sep")
    assert sep == [k for k in video if texts[k] is not None]
    for i in range(4):
        rows = seq.group(f"frame[{i}]")
        assert rows == list(range(meta["frame_starts"][i], meta["frame_starts"][i] + N))
        assert all(texts[k] is None for k in rows) and not set(rows) & set(sep)
        assert texts[rows[0] - 1] == "<img>" and texts[rows[-1] + 1] == "</img>"
    assert sorted(sep + [k for i in range(4) for k in seq.frame(i)]) == video
    assert meta["prefix_len"] == meta["frame_starts"][2] + N // 2  # mid frame 2, as the other families


def test_wrong_groups_fail(model, manifest, meta, golden, tok):
    """Deliberately wrong groupings give other masks and other knockout results: the frame text
    (`Frame{i}: <img>` before, `</img>` after) counted inside its frame, the video group without the
    last frame's `</img>`, the video group without the text between frames, and the frames laid out
    back to back from video_start (as if no text separated them)."""
    seq = gd.build_sequence(manifest, tok)
    wrongs = {
        # from the end of the previous frame's `</img>` (or video_start) to its own `</img>`
        "text in frame": fc.text_in_frame(seq, suffix_tokens=1),
        "video without the last </img>": replace(seq, video_end=seq.video_end - 1),
        "video without text": fc.VideoWithoutText(**fc.sequence_fields(seq)),
        "frames back to back": replace(seq, frame_starts=None, video_end=None),
    }
    fc.check_wrong_groups_fail(model, manifest, golden, seq, wrongs)


# ---- goldens -------------------------------------------------------------------------------------------


def test_golden_shapes(manifest, meta, golden):
    fc.check_golden_shapes(manifest, meta, golden)
    S, D, F = meta["seq_len"], manifest["hidden_size"], manifest["video"]["num_frames"]
    assert list(meta)[:7] == ["num_layers", "seq_len", "video_start", "tokens_per_frame", "num_frames",
                              "frame_starts", "prefix_len"]
    assert (meta["num_frames"], meta["tokens_per_frame"]) == (F, N)
    assert golden["pixel_values"].shape == (F, 3, 64, 64)
    assert golden["video_embeds"].shape == (F * N, D) and golden["embeds"].shape == (1, S, D)
    assert S == golden["input_ids"].shape[1] - F + F * N  # one placeholder per frame


def test_generate_golden_regenerates(iv_hf, model):
    committed = fc.check_generate_golden(iv_hf, FIXTURE, model, "HF InternVLForConditionalGeneration.generate")
    assert "pixel_values" in committed["cases"][0]["reference"]
