"""The Qwen2.5-VL family (`Qwen2_5_VLForConditionalGeneration`, manifest family `qwen2_5_vl`).

What differs from the LLaVA-NeXT-Video path, in one place:

- the prompt: Qwen2.5-VL's chat template around lmms-eval's TVBench question format (`prompt_spec`);
- the tiny random-weight model and its tokenizer (`build_tiny`);
- the vision graph: plain normalized frames [G*tp,3,H,W] in, patchified here exactly as the HF
  Qwen2-VL video processor lays them out (`patchify`), then the model's own `get_video_features`
  (windowed and full-attention blocks, 2x2 patch merger) on a constant `video_grid_thw`;
- the rope graph: position_ids [3,B,T] (t, h, w) through the model's own rotary module, which applies
  the `mrope_section` split;
- the position rule (`mrope_positions`), the manifest's `mrope` section, and the golden's video
  features (`video_features`).

The decoder layers are the shared extend-form `layer.ExtendLayer` (Qwen2's q/k/v biases come with the
HF `q_proj`/`k_proj`/`v_proj` Linear modules), and the embedding and head graphs are the shared ones.

Terms: a *group* is `temporal_patch_size` consecutive input frames that the vision tower merges into
one temporal token group; the manifest's `video.num_frames` counts groups (the prompt's `frame[i]`).
"""

import copy
import math
import os

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from . import contract as c
from . import graphs, manifest
from . import tiny
from .hf import load_eager, start_export, text_model
from .manifest import CLIP_MEAN, CLIP_STD
from .tokenizer import ENDOFTEXT, IM_END, IM_START

ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
FAMILY = "qwen2_5_vl"

# Special tokens of the Qwen2.5-VL tokenizer that prompts and configs use (ENDOFTEXT, IM_START, IM_END:
# tokenizer.py's ChatML ones).
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"
IMAGE_PAD = "<|image_pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD]

# The tiny model: 64x64 frames, 8x8 patches -> 8x8 patches per frame, 4x4 tokens per group after the
# 2x2 merge; 4 groups of 2 input frames; 1 s between groups (2 frames/s sampled, as Qwen's default fps).
TINY_GROUPS = 4
TINY_FRAME = 64
TINY_FPS = 2.0
# Defaults for an HF directory whose processor settings fix neither (a real Qwen2.5-VL checkpoint):
# 8 groups (16 frames) of 448x448 frames (16x16 tokens per group).
DEFAULT_GROUPS = 8
DEFAULT_FRAME = 448
DEFAULT_FPS = 2.0
# Qwen's processors normalise with manifest.CLIP_MEAN / _STD (transformers' OPENAI_CLIP_MEAN / _STD).


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = VIDEO_PAD) -> dict:
    """The manifest's prompt spec (keys in manifest order).

    The turn structure is Qwen2.5-VL-Instruct's chat template with the video first in the user turn
    (`<|vision_start|><|video_pad|><|vision_end|>` then the text), as lmms-eval's Qwen2.5-VL model
    builds its messages, with lmms-eval's default system text. The user text is lmms-eval's TVBench
    task format (lmms_eval/tasks/tvbench/utils.py `tvbench_doc_to_text`, _default_template_yaml; the
    task sets no Qwen-specific prompt): the question, one line `A. text` per option, then the default
    post_prompt "Answer with the option letter only." on its own line. The model answers with the
    letter itself, so `answer_prefix` is empty (a letter after "assistant\\n" is one token)."""
    return {
        "system": f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n",
        "user_prefix": f"{IM_START}user\n{VISION_START}",
        "video_placeholder": video_placeholder,
        "after_video": VISION_END,
        "question_prefix": "",
        "options_header": "\n",
        "option_format": "{label}. {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\nAnswer with the option letter only.",
        "assistant_prefix": f"{IM_END}\n{IM_START}assistant\n",
        "answer_prefix": "",
    }


# ---- the tiny model ------------------------------------------------------------------------------------


def tiny_config(vocab_size: int, ids: dict):
    """Text: hidden 64, 4 layers, 4 heads / 2 KV heads (head_dim 16), M-RoPE sections [2,3,3].
    Vision: 2 blocks (block 0 windowed, block 1 full attention), hidden 32, patch 8, 2x2 merge,
    2 frames per group; window 32 px = 2x2 merged tokens, so a 4x4 group splits into 4 windows."""
    from transformers import Qwen2_5_VLConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=None,
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=8,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=32,
        out_hidden_size=64,
        tokens_per_second=2,
        fullatt_block_indexes=[1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
    )


def tiny_processor_settings() -> dict:
    """HF Qwen2-VL video processor settings of the tiny model: a fixed 64x64 frame (min = max
    pixels), CLIP normalisation, bicubic, 8 input frames (4 groups) sampled at 2 frames/s."""
    pixels = TINY_FRAME * TINY_FRAME
    return tiny.processor_settings("Qwen2VLVideoProcessor", {"shortest_edge": pixels, "longest_edge": pixels},
                                   CLIP_MEAN, CLIP_STD, patch_size=8, temporal_patch_size=2, merge_size=2,
                                   num_frames=TINY_GROUPS * 2, fps=TINY_FPS)


def build_tiny(out_dir: str, seed: int = 0):
    """Writes the tiny Qwen2.5-VL, its tokenizer and video processor settings to `out_dir`."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    # The merger's RMSNorm is `ln_q`.
    tok, model = tiny.chatml_model(Qwen2_5_VLForConditionalGeneration, tiny_config, prompt_spec(), SPECIAL_TOKENS,
                                   seed, norm_names=("norm", "ln_q"))
    tiny.save_chatml(out_dir, model, tok, tiny_processor_settings(), {"video_token": VIDEO_PAD, "image_token": IMAGE_PAD})
    return model


def load(hf_dir: str):
    """Loads a Qwen2_5_VLForConditionalGeneration (hf.load_eager)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    return load_eager(Qwen2_5_VLForConditionalGeneration, hf_dir)


# ---- frames -> the vision tower's input ----------------------------------------------------------------


def patchify(pixel_values: torch.Tensor, temporal_patch_size: int, patch_size: int, merge_size: int) -> torch.Tensor:
    """[G*tp,C,H,W] frames -> [G*gh*gw, C*tp*p*p] patches in the HF Qwen2-VL processor's layout
    (gh, gw in patches): groups of tp consecutive frames; within a group, 2x2-merge blocks in raster
    order, the patches of a block in raster order; each patch flattened as (C, tp, p, p)."""
    F, C, H, W = pixel_values.shape
    tp, p, m = temporal_patch_size, patch_size, merge_size
    gh, gw = H // p, W // p
    x = pixel_values.reshape(F // tp, tp, C, gh // m, m, p, gw // m, m, p)
    # (group, t, C, block row, row in block, y, block col, col in block, x)
    #   -> (group, block row, block col, row in block, col in block, C, t, y, x)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape((F // tp) * gh * gw, C * tp * p * p)


def grid_thw(vision_config, groups: int, height: int, width: int) -> torch.Tensor:
    """`video_grid_thw` [[groups, H/p, W/p]] of one video (in patches, before the merge)."""
    p = vision_config.patch_size
    return torch.tensor([[groups, height // p, width // p]], dtype=torch.int64)


def check_frame_size(vision_config, height: int, width: int) -> None:
    factor = vision_config.patch_size * vision_config.spatial_merge_size
    if height % factor or width % factor or height <= 0 or width <= 0:
        raise ValueError(f"frame {height}x{width}: both sides must be positive multiples of patch_size x "
                         f"spatial_merge_size = {factor}")


@torch.no_grad()
def video_features(model, pixel_values: torch.Tensor, groups: int) -> torch.Tensor:
    """The golden's video embeddings: frames [G*tp,3,H,W] -> [G*gh*gw, D] through `patchify` and
    the HF model's own get_video_features."""
    vcfg = model.config.vision_config
    flat = patchify(pixel_values, vcfg.temporal_patch_size, vcfg.patch_size, vcfg.spatial_merge_size)
    grid = grid_thw(vcfg, groups, pixel_values.shape[2], pixel_values.shape[3])
    return model.model.get_video_features(flat, grid, return_dict=True).pooler_output[0]


class VisionGraph(nn.Module):
    """pixel_values [G*tp,3,H,W] -> video_embeds [G*gh*gw, D] (gh, gw after the merge), in the
    order the HF model places video tokens (group, row, column).

    Only for the fixed G, H, W it is built with: the grid, the attention windows, the window
    permutation and the split points are constants of the traced graph. Its axes stay symbolic
    (contract.VISION_AXES, which the runtime's graph check expects), but another frame count or size
    gives wrong results or a runtime error."""

    def __init__(self, model, groups: int, height: int, width: int, dtype=torch.float32):
        super().__init__()
        vcfg = model.config.vision_config
        check_frame_size(vcfg, height, width)
        # A shallow copy of the multimodal model that holds only the vision tower (in `dtype`).
        shell = copy.copy(model.model)
        shell._modules = {"visual": graphs.to_dtype(model.model._modules["visual"], dtype)}
        shell._parameters = {}
        shell._buffers = {}
        self.model = shell
        self.temporal_patch_size = vcfg.temporal_patch_size
        self.patch_size = vcfg.patch_size
        self.merge_size = vcfg.spatial_merge_size
        self.register_buffer("grid_thw", grid_thw(vcfg, groups, height, width), persistent=False)

    def forward(self, pixel_values):
        flat = patchify(pixel_values, self.temporal_patch_size, self.patch_size, self.merge_size)
        out = self.model.get_video_features(flat, self.grid_thw, return_dict=True)
        return out.pooler_output[0].float()


# ---- positions ---------------------------------------------------------------------------------------


def mrope_positions(seq_len: int, video_start: int | None, groups: int, grid_h: int, grid_w: int,
                    tokens_per_second: float, seconds_per_group: float) -> np.ndarray:
    """[3, seq_len] int64 (t, h, w) positions of a sequence whose video tokens (groups x grid_h x
    grid_w, group-major, then row, then column) start at `video_start` (None: text only).

    The rule of the original Qwen2.5-VL code (transformers <= 5.2 `get_rope_index`):
    - text before the video: t = h = w = index;
    - the video token of group g, row r, column c: (s + floor(g * tokens_per_second *
      seconds_per_group), s + r, s + c), s = the number of tokens before the video;
    - text after the video: one more than the largest vision position, on all three axes, then +1
      per token.
    transformers 5.23's helper instead starts the text after a video at s + max(grid_h, grid_w)
    (`hf_rope_index`), which differs once the temporal span reaches the grid size.
    The product is taken in float64 as tokens_per_second * seconds_per_group first, then times g
    (as the runtime does); the original code multiplies in float32, equal for the usual values."""
    pos = np.zeros((3, seq_len), dtype=np.int64)
    if video_start is None:
        pos[:] = np.arange(seq_len)
        return pos
    s = video_start
    n = groups * grid_h * grid_w
    if s + n > seq_len:
        raise ValueError(f"video tokens {s}..{s + n} run past the sequence of {seq_len}")
    pos[:, :s] = np.arange(s)
    step = float(tokens_per_second) * float(seconds_per_group)
    g, r, col = np.meshgrid(np.arange(groups), np.arange(grid_h), np.arange(grid_w), indexing="ij")
    pos[0, s:s + n] = s + np.array([math.floor(x * step) for x in g.ravel()], dtype=np.int64)
    pos[1, s:s + n] = s + r.ravel()
    pos[2, s:s + n] = s + col.ravel()
    top = int(pos[:, s:s + n].max()) if n else s - 1
    pos[:, s + n:] = top + 1 + np.arange(seq_len - s - n)
    return pos


def manifest_positions(m: dict, seq_len: int, video_start: int | None) -> np.ndarray:
    """`mrope_positions` with the manifest's grid and `mrope` numbers."""
    v, r = m["video"], m["mrope"]
    return mrope_positions(seq_len, video_start, v["num_frames"], v["grid_h"], v["grid_w"],
                           r["tokens_per_second"], r["seconds_per_group"])


@torch.no_grad()
def hf_rope_index(model, input_ids: torch.Tensor, groups: int, height: int, width: int,
                  seconds_per_group: float) -> torch.Tensor:
    """transformers' own helper (`Qwen2_5_VLModel.get_rope_index`) on `input_ids` [1,S] whose video
    tokens are already expanded: [3,1,S]. For comparisons only (see `mrope_positions`)."""
    video_id = model.config.video_token_id
    mm_token_type_ids = (input_ids == video_id).to(torch.int32) * 2  # text 0, image 1, video 2
    grid = grid_thw(model.config.vision_config, groups, height, width)
    pos, _ = model.model.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, video_grid_thw=grid,
                                        second_per_grid_ts=torch.tensor([float(seconds_per_group)]))
    return pos


# ---- manifest -----------------------------------------------------------------------------------------


def _number(x):
    """An int when integral (YAML `2`, not `2.0`), else a float."""
    x = float(x)
    return int(x) if x.is_integer() else x


def frame_size(processor: dict, vision_config) -> tuple[int, int]:
    """The fixed frame size: the processor's when it pins one (size height/width, or equal min and
    max pixels of a square frame), else DEFAULT_FRAME square."""
    size = processor.get("size") or {}
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    lo = size.get("shortest_edge", processor.get("min_pixels"))
    hi = size.get("longest_edge", processor.get("max_pixels"))
    if lo is not None and lo == hi and math.isqrt(int(lo)) ** 2 == int(lo):
        side = math.isqrt(int(lo))
        return side, side
    return DEFAULT_FRAME, DEFAULT_FRAME


def video_section(model_config, processor: dict, groups: int, height: int, width: int) -> dict:
    vcfg = model_config.vision_config
    check_frame_size(vcfg, height, width)
    tokens = vcfg.patch_size * vcfg.spatial_merge_size
    return manifest.video_spec(processor, groups, height, width, height // tokens, width // tokens, CLIP_MEAN, CLIP_STD)


def mrope_section(model_config, seconds_per_group: float) -> dict:
    vcfg = model_config.vision_config
    sections = model_config.text_config.rope_parameters["mrope_section"]
    return {
        "temporal_patch_size": int(vcfg.temporal_patch_size),
        "tokens_per_second": _number(vcfg.tokens_per_second),
        "seconds_per_group": float(seconds_per_group),
        "sections": [int(x) for x in sections],
    }


def special_ids(tok: Tokenizer, model) -> dict:
    """Video placeholder from the config; no BOS (Qwen prepends none); EOS `<|im_end|>` (the end of
    a turn); pad `<|endoftext|>`."""
    return manifest.chatml_special_ids(tok, model.config.video_token_id, eos=IM_END, pad=ENDOFTEXT)


# ---- export -------------------------------------------------------------------------------------------


def export_graphs(model, out_dir: str, groups: int, height: int, width: int, dtype=torch.float32,
                  attention: str = "eager") -> None:
    """Every graph of a Qwen2.5-VL package (float32 master weights in `model`)."""
    vcfg = model.config.vision_config
    pixels = torch.randn(groups * vcfg.temporal_patch_size, 3, height, width,
                         generator=torch.Generator().manual_seed(0))
    graphs.export_vision(VisionGraph(model, groups, height, width, graphs.vision_dtype(dtype)), pixels,
                         os.path.join(out_dir, c.VISION_FILE))
    graphs.export_text(model, out_dir, dtype, attention, mrope=True)


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager", frame_hw: tuple[int, int] | None = None,
                   seconds_per_group: float | None = None) -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest.

    `frames`: temporal groups per video (the manifest's video.num_frames; default: the processor's
    num_frames / temporal_patch_size, else DEFAULT_GROUPS). `frame_hw`: the fixed frame size
    (default `frame_size`). `seconds_per_group`: default temporal_patch_size / the processor's fps
    (HF's second_per_grid_ts for a video sampled at that rate; Qwen's default fps is 2)."""
    model, tok, processor = start_export(hf_dir, out_dir, dtype, attention, load)
    m = package_manifest(model, tok, processor, manifest.package_name(name, hf_dir), dtype, frames, frame_hw,
                         seconds_per_group)
    v = m["video"]
    export_graphs(model, out_dir, v["num_frames"], v["frame_height"], v["frame_width"], graphs.DTYPES[dtype], attention)
    manifest.finish_package(hf_dir, out_dir, m)
    return m


def package_manifest(model, tok: Tokenizer, processor: dict, name: str, dtype: str, frames: int | None = None,
                     frame_hw: tuple[int, int] | None = None, seconds_per_group: float | None = None) -> dict:
    """The checked manifest of `export_package` (same defaults), without exporting anything."""
    vcfg = model.config.vision_config
    ids = special_ids(tok, model)
    placeholder = manifest.checked_placeholder(tok, ids, text_model(model).config.vocab_size)
    tp = int(vcfg.temporal_patch_size)
    groups = frames or (int(processor["num_frames"]) // tp if processor.get("num_frames") else DEFAULT_GROUPS)
    height, width = frame_hw or frame_size(processor, vcfg)
    if seconds_per_group is None:
        seconds_per_group = tp / float(processor.get("fps", DEFAULT_FPS))
    return manifest.assemble(
        text_model(model).config,
        name=name,
        dtype=dtype,
        family=FAMILY,
        video=video_section(model.config, processor, groups, height, width),
        prompt=prompt_spec(placeholder),
        special_ids=ids,
        mrope=mrope_section(model.config, seconds_per_group),
    )
